"""A recorded process killed by a fatal signal keeps its trace up to the signal.

The writer thread writes every 100 ms; a process that dies between two writes
would lose what was appended since the last one. While recording, handlers
for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM, SIGHUP and SIGQUIT
(csrc/stream.c, "fatal signals") write the pending records, then let the
signal kill the process as it would have.

The programs here kill themselves right after their last external call, well
within one flush interval, so only the signal handler can save those records.
Recordings and replays that die from a signal are expected here, so these
tests run their commands with `run_signalled` instead of conftest's `run`.
"""
import os
import re
import resource
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import PY, TIMEOUT, _kill_group, retrace_cmd, retrace_lines, run, Run

LINES = 6
# AddressSanitizer (make test-asan) installs its own SIGSEGV, SIGBUS and
# SIGFPE handlers, which retrace leaves alone.
ASAN = "asan" in os.environ.get("LD_PRELOAD", "")

DYING = textwrap.dedent("""\
    import ctypes, os, random, signal, sys, time

    how = sys.argv[1]
    for i in range(int(sys.argv[2])):
        print(f"value {i}:", repr(time.time()), os.urandom(4).hex(), repr(random.random()),
              flush=True)
    if how == "segv":
        ctypes.string_at(0)
    elif how == "abort":
        os.abort()
    else:
        os.kill(os.getpid(), getattr(signal, how))
    print("still alive", flush=True)
""")

# how the program dies -> the signal it dies from
HOW = {
    "SIGTERM": signal.SIGTERM,
    "segv": signal.SIGSEGV,      # a real fault: reading address 0
    "abort": signal.SIGABRT,     # abort(3)
    "SIGHUP": signal.SIGHUP,
    "SIGQUIT": signal.SIGQUIT,
    "SIGBUS": signal.SIGBUS,
    "SIGFPE": signal.SIGFPE,
    "SIGILL": signal.SIGILL,
}


def _no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_signalled(cmd, *, cwd, env, preexec=_no_core_dumps):
    """Like conftest.run, but a child killed by a signal is a result, not a
    failure (returncode -signum). Core dumps are off: they are not tested."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, preexec_fn=preexec,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate(timeout=30)
        pytest.fail(f"hang: no exit within {TIMEOUT:.0f} s: {' '.join(cmd)}", pytrace=False)
    return Run(cmd, proc.returncode, out, err, 0.0)


def write_program(world, name, text):
    path = world.root / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("how", HOW)
def test_trace_keeps_records_before_fatal_signal(world, how):
    signum = HOW[how]
    if ASAN and signum in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE):
        pytest.skip("AddressSanitizer handles this signal")
    prog = write_program(world, "dying.py", DYING)
    trace = world.new_trace(how)
    rec = run_signalled(retrace_cmd("record", "-o", trace, prog, how, LINES),
                        cwd=world.work, env=world.record_env())

    # It died the way it would have without retrace, after all its output.
    assert rec.code == -signum, rec.describe()
    lines = rec.out.splitlines()
    assert len(lines) == LINES and b"still alive" not in rec.out, rec.describe()
    assert retrace_lines(rec.err) == [], rec.describe()

    # Every call made before the signal is in the trace, which ends cleanly
    # (no chunk cut short) but without the end of the run.
    info = world.inspect(trace)
    assert info["complete"] is False
    assert info["truncated_at"] is None
    assert info["exit_code"] is None
    assert info["events"].get("time.time") == LINES, info["events"]
    assert info["events"].get("posix.urandom") == LINES, info["events"]

    # Replay gives back the recorded values, then stops where the recording
    # stops. A segfault is the program's own code and runs again in replay, so
    # the replay dies from it, as the recording did. Sending a signal is an
    # external call (os.kill, os.abort): replay never sends one, it reports
    # that the recording ends there.
    rep = run_signalled(retrace_cmd("replay", trace), cwd=world.work, env=world.replay_env())
    assert rep.out == rec.out, rep.describe()
    if how == "segv":
        assert rep.code == -signum, rep.describe()
    else:
        assert rep.code == 3, rep.describe()
        assert b"the recording ends" in rep.err, rep.describe()
        assert re.search(rb"actual: +(posix\.kill|posix\.abort)", rep.err), rep.describe()


def test_program_handler_for_sigterm_is_kept(world):
    """signal.signal() replaces retrace's handler; the program's runs."""
    prog = write_program(world, "own_handler.py", textwrap.dedent("""\
        import os, signal, sys, time

        def on_term(signum, frame):
            print("handled:", signal.Signals(signum).name, flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, on_term)
        print("time:", repr(time.time()), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print("not reached")
    """))
    trace = world.new_trace("own_handler")
    rec = run(retrace_cmd("record", "-o", trace, prog), cwd=world.work, env=world.record_env())
    assert rec.code == 7, rec.describe()
    assert rec.out.splitlines()[-1] == b"handled: SIGTERM", rec.describe()
    info = world.inspect(trace)
    assert info["complete"] is True
    assert info["exit_code"] == 7


def test_ignored_signal_stays_ignored(world):
    """A signal ignored when the program starts (nohup) is not caught."""
    prog = write_program(world, "ignores_hup.py", textwrap.dedent("""\
        import os, signal, time
        print("time:", repr(time.time()), flush=True)
        os.kill(os.getpid(), signal.SIGHUP)
        print("survived SIGHUP", flush=True)
    """))

    def ignore_hup():
        _no_core_dumps()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    trace = world.new_trace("ignores_hup")
    rec = run_signalled(retrace_cmd("record", "-o", trace, prog), cwd=world.work,
                        env=world.record_env(), preexec=ignore_hup)
    assert rec.code == 0, rec.describe()
    assert rec.out.splitlines()[-1] == b"survived SIGHUP", rec.describe()
    assert world.inspect(trace)["complete"] is True


def test_handlers_are_installed_and_removed(world):
    """/proc/self/status SigCgt: the handlers exist only while recording, and
    a handler the program installs meanwhile survives the end of recording."""
    code = textwrap.dedent("""\
        import os, signal, sys
        from retrace import _engine

        def caught():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return int(line.split()[1], 16)

        before = caught()
        _engine.start_recording(sys.argv[1], _engine.encode({}))
        during = caught()
        signal.signal(signal.SIGHUP, lambda *a: print("program's SIGHUP handler"))
        assert _engine.stop() is None
        after = caught()
        print(before, during, after, flush=True)
        os.kill(os.getpid(), signal.SIGHUP)
    """)
    env = world.record_env(PYTHONFAULTHANDLER=None)
    result = run([PY, "-c", code, world.new_trace("sigcgt")], cwd=world.work, env=env)
    assert result.code == 0, result.describe()
    first, second = result.out.splitlines()
    before, during, after = map(int, first.split())
    assert second == b"program's SIGHUP handler"

    def bit(sig):
        return 1 << (sig - 1)

    fatal = [signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
             signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    for sig in fatal:
        assert during & bit(sig), f"{sig.name} not caught while recording"
    assert not before & bit(signal.SIGTERM)
    # SIGINT is Python's before, during and after.
    assert before & bit(signal.SIGINT) and during & bit(signal.SIGINT)
    # (glibc may have added its own real-time signal handlers meanwhile.)
    mask = sum(bit(sig) for sig in fatal)
    assert after & mask == (before | bit(signal.SIGHUP)) & mask


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13, 0.3])
def test_signal_while_the_writer_is_busy(world, delay):
    """SIGTERM at any moment, with large incompressible records keeping the
    writer thread busy: the trace stays readable (at worst the last chunk is cut short,
    never corrupt) and replays up to where it ends."""
    prog = write_program(world, "busy.py", textwrap.dedent("""\
        import os, time
        print("ready:", repr(time.time()), flush=True)
        while True:   # about 20 MB/s: the writer keeps up (nothing dropped)
            os.urandom(20000)
            time.sleep(0.001)
    """))
    trace = world.new_trace("busy")
    proc = subprocess.Popen([str(c) for c in retrace_cmd("record", "-o", trace, prog)],
                            cwd=world.work, env=world.record_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"ready:")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        _kill_group(proc)
    assert proc.returncode == -signal.SIGTERM, err

    info = world.inspect(trace)   # fails on a corrupt trace
    assert info["complete"] is False
    assert info["events"].get("time.time") == 1   # the "ready:" line

    rep = run_signalled(retrace_cmd("replay", trace), cwd=world.work, env=world.replay_env())
    assert rep.code == 3, rep.describe()
    assert b"the recording ends before this call" in rep.err, rep.describe()
