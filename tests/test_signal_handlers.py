"""Python signal handlers replay where they ran in the recording.

A program installs handlers for SIGUSR1 (prints, reads the clock) and SIGTERM
(raises SystemExit); the test sends it signals at random moments while the
main thread computes (the handler runs between two bytecodes), sleeps (inside
an external call) or waits in Thread.join (inside a lock wait) while another
thread makes external calls. The replay gets no signal at all and must print
the same lines, in the same places, and exit the same way.
"""
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import TIMEOUT, Run, _kill_group, assert_same_run, retrace_cmd
from test_fatal_signals import run_signalled

PROGRAM = textwrap.dedent("""\
    import os, signal, sys, threading, time

    seen = 0
    stop = False

    def on_usr1(signum, frame):
        global seen
        seen += 1
        print(f"signal {seen} at {time.monotonic()}", flush=True)

    def on_term(signum, frame):
        global stop
        stop = True
        raise SystemExit(f"terminated after {seen} signals")

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    assert signal.getsignal(signal.SIGUSR1) is on_usr1

    def ticker():
        while not stop:
            time.sleep(0.002)
            os.urandom(4)

    how = sys.argv[1]
    print("ready", flush=True)
    if how == "join":
        worker = threading.Thread(target=ticker)
        worker.start()
        worker.join()
    n = 0
    while True:
        n += 1
        if how == "sleep":
            time.sleep(0.003)
        elif n % 3000 == 0:
            time.monotonic()
""")


@pytest.mark.parametrize("how", ["busy", "sleep", "join"])
def test_handlers_replay_in_place(world, how):
    prog = world.root / "signals.py"
    prog.write_text(PROGRAM)
    trace = world.new_trace("signals")
    cmd = [str(c) for c in retrace_cmd("record", "-o", trace, prog, how)]
    proc = subprocess.Popen(cmd, cwd=world.work, env=world.record_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        printed = [proc.stdout.readline()]
        assert printed == [b"ready\n"]
        for i in range(1, 6):
            time.sleep(random.uniform(0.01, 0.06))
            proc.send_signal(signal.SIGUSR1)
            printed.append(proc.stdout.readline())
            assert printed[-1].startswith(f"signal {i} at ".encode()), printed
        time.sleep(random.uniform(0.01, 0.06))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        _kill_group(proc)
    rec = Run(cmd, proc.returncode, b"".join(printed) + out, err, 0.0)
    assert rec.code == 1 and rec.err == b"terminated after 5 signals\n", rec.describe()
    assert world.inspect(trace)["events"].get("signal.handler") == 6
    for attempt in (1, 2):
        assert_same_run(rec, world.replay(trace), f"replay {attempt}")


FLAG_PROGRAM = textwrap.dedent("""\
    import signal, time

    stop = False

    def on_usr1(signum, frame):
        global stop
        stop = True

    signal.signal(signal.SIGUSR1, on_usr1)
    print("ready", flush=True)
    n = 0
    while not stop:
        n += 1
        if n % 5000 == 0:
            time.monotonic()
    print(f"stopped after {n} rounds")
""")


def test_flag_set_between_bytecodes_is_read_where_replay_reads_it(world):
    """gunicorn's workers stop on a flag their SIGTERM handler sets. Here the
    loop tests the flag between two external calls: the handler, which
    would run between two bytecodes, waits for the next external call, so
    the loop stops after the same round in the recording and the replay."""
    prog = world.root / "flag.py"
    prog.write_text(FLAG_PROGRAM)
    for attempt in range(3):
        trace = world.new_trace(f"flag-{attempt}")
        cmd = [str(c) for c in retrace_cmd("record", "-o", trace, prog)]
        proc = subprocess.Popen(cmd, cwd=world.work, env=world.record_env(),
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(random.uniform(0.01, 0.05))
            proc.send_signal(signal.SIGUSR1)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            _kill_group(proc)
        rec = Run(cmd, proc.returncode, b"ready\n" + out, err, 0.0)
        rounds = int(out.split()[2])
        assert rec.code == 0 and rounds % 5000 == 0, rec.describe()
        assert_same_run(rec, world.replay(trace), f"replay of recording {attempt}")


def test_keyboard_interrupt_reaches_a_loop_without_external_calls(world):
    """A deferred handler waits at most 50 ms for an external call: Ctrl-C
    still interrupts a loop that makes none."""
    prog = world.root / "spin.py"
    prog.write_text(textwrap.dedent("""\
        def spin():
            n = 0
            while n < 10**8:
                n += 1

        print("ready", flush=True)
        try:
            spin()
            print("never interrupted")
        except KeyboardInterrupt:
            print("interrupted")
    """))
    trace = world.new_trace("spin")
    cmd = [str(c) for c in retrace_cmd("record", "-o", trace, prog)]
    proc = subprocess.Popen(cmd, cwd=world.work, env=world.record_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        _kill_group(proc)
    assert (proc.returncode, out) == (0, b"interrupted\n"), err.decode()


def test_ctrl_c_ends_the_recorded_program_as_it_ends_a_plain_one(world):
    """Ctrl-C in a sleep: the same traceback (no frame of Retrace's in it) and
    the same death by SIGINT, plain, recorded and replayed."""
    prog = world.root / "sleeper.py"
    prog.write_text('import time\nprint("ready", flush=True)\nwhile True:\n    time.sleep(0.01)\n')
    trace = world.new_trace("sleeper")

    def interrupted(cmd):
        proc = subprocess.Popen([str(c) for c in cmd], cwd=world.work, env=world.record_env(),
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(0.2)     # in the loop, not still returning from print
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            _kill_group(proc)
        return proc.returncode, err

    plain = interrupted([sys.executable, prog])
    recorded = interrupted(retrace_cmd("record", "-o", trace, prog))
    assert plain[0] == -signal.SIGINT and plain[1].endswith(b"KeyboardInterrupt\n"), plain
    assert recorded == plain
    replayed = run_signalled(retrace_cmd("replay", trace), cwd=world.work, env=world.replay_env())
    assert (replayed.code, replayed.err) == plain, replayed.describe()
