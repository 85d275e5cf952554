"""Traces that are missing, empty, foreign, truncated, corrupt, cut short by
SIGKILL, or that no longer match the program's source.

Whatever the damage: a clear "retrace: ..." message, a non-zero status, never
a Python traceback from retrace itself, never a signal, never a hang, and
never output the recorded run did not print.
"""
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import (REPO, TIMEOUT, TRACEBACK, World, assert_error_exit, assert_prefix,
                      retrace_cmd, retrace_lines, run)

COMMANDS = ["replay", "inspect"]
CUT_SHORT = re.compile(r"recording ends|ends early|ended early|truncat|incomplete|cut short",
                       re.I)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One good recording of the clock program, shared by the tests below."""
    world = World(tmp_path_factory.mktemp("bad-input"))
    rec = world.case("clock").record()
    assert rec.code == 0, rec.describe()
    assert TRACEBACK not in rec.err
    return world, rec


def damaged(world, name, data):
    path = world.traces / name
    path.write_bytes(data)
    return path


# -- not a trace at all -----------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_file(recorded, command):
    world, _ = recorded
    result = world.retrace(command, world.traces / "no-such.retrace")
    assert_error_exit(result, r"no-such\.retrace", r"no such file|not found|does not exist")


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_file(recorded, command):
    world, rec = recorded
    result = world.retrace(command, damaged(world, "empty.retrace", b""))
    assert_error_exit(result, r"empty")


@pytest.mark.parametrize("command", COMMANDS)
def test_text_file(recorded, command):
    world, rec = recorded
    text = b"This is a plain text file.\nIt is not a recording.\n" * 20
    result = world.retrace(command, damaged(world, "text.retrace", text))
    assert_error_exit(result, r"not a (retrace )?(trace|recording)|magic|format")


@pytest.mark.parametrize("command", COMMANDS)
def test_random_bytes(recorded, command):
    world, rec = recorded
    result = world.retrace(command, damaged(world, "noise.retrace", os.urandom(5000)))
    assert_error_exit(result)


@pytest.mark.parametrize("command", COMMANDS)
def test_directory(recorded, command):
    world, _ = recorded
    assert_error_exit(world.retrace(command, world.elsewhere))


# -- a good trace, damaged --------------------------------------------------


def resolve(offset, size):
    """An offset given as an int (from the start; negative: from the end) or
    a float (fraction of the size)."""
    pos = int(size * offset) if isinstance(offset, float) else offset % size
    return min(max(pos, 0), size - 1)


def assert_stops_cleanly(rec, result, allowed):
    """A replay of damaged data: a status allowed by the predicate, a retrace
    message, no traceback, and only output the recording also printed."""
    assert allowed(result.code), result.describe()
    assert TRACEBACK not in result.err, result.describe()
    assert_prefix(result.out, rec.out)
    messages = retrace_lines(result.err)
    assert messages, "no line starting with 'retrace:' on stderr\n" + result.describe()
    return "\n".join(messages)


TRUNCATE_AT = [1, 4, 8, 12, 16, 32, 64, 0.1, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.9,
               -64, -16, -4, -1]


@pytest.mark.parametrize("offset", TRUNCATE_AT, ids=str)
def test_truncated_trace(recorded, offset):
    world, rec = recorded
    data = rec.trace.read_bytes()
    cut = resolve(offset, len(data))
    path = damaged(world, f"cut-{cut}.retrace", data[:cut])
    result = world.replay(path)
    message = assert_stops_cleanly(rec, result, allowed=lambda code: code != 0)
    # Either refused outright, or replayed the readable prefix and said why it stopped.
    assert (result.code == 2 and "retrace: error:" in message) or CUT_SHORT.search(message), \
        result.describe()
    info = world.retrace("inspect", path, "--json")
    assert TRACEBACK not in info.err, info.describe()
    if info.code == 0:
        assert json.loads(info.out)["complete"] is False, info.describe()
    else:
        assert_error_exit(info)


FLIP_AT = [0, 3, 7, 9, 13, 21, 40, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
           0.95, -9, -1]


@pytest.mark.parametrize("offset", FLIP_AT, ids=str)
def test_bit_flip(recorded, offset):
    world, rec = recorded
    data = bytearray(rec.trace.read_bytes())
    pos = resolve(offset, len(data))
    data[pos] ^= 1 << (pos % 8)
    path = damaged(world, f"flip-{pos}.retrace", bytes(data))
    result = world.replay(path)
    message = assert_stops_cleanly(rec, result, allowed=lambda code: code in (2, 3))
    if result.code == 2:
        assert "retrace: error:" in message, result.describe()
        if pos >= 16:  # past any magic number: corruption must say where
            assert re.search(r"(offset|byte)\s*\d+", message, re.I), result.describe()
    else:
        assert "retrace: replay diverged" in message, result.describe()
    info = world.retrace("inspect", path, "--json")
    assert TRACEBACK not in info.err, info.describe()
    assert info.code in (0, 2), info.describe()


def read_lines(proc, count, deadline):
    """Read the child's stdout until it printed `count` lines."""
    out = b""
    fd = proc.stdout.fileno()
    while out.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out


def test_recording_killed_by_sigkill(tmp_path):
    world = World(tmp_path)
    trace = world.new_trace("ticker")
    cmd = retrace_cmd("record", "-o", trace, "--", world.programs / "ticker.py")
    proc = subprocess.Popen([str(c) for c in cmd], cwd=world.work, env=world.record_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out = read_lines(proc, 20, time.monotonic() + TIMEOUT)
        assert out.count(b"\n") >= 20, "the ticker did not start under record"
        time.sleep(2)  # longer than any sensible flush interval
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    recorded_out = out + rest
    assert proc.returncode == -signal.SIGKILL

    info = world.inspect(trace)
    assert info["complete"] is False
    assert info["exit_code"] is None

    result = world.replay(trace)
    assert result.code != 0, result.describe()
    assert TRACEBACK not in result.err, result.describe()
    assert_prefix(result.out, recorded_out)
    assert result.out.count(b"\n") >= 20, (
        "the lines printed 2 s before the kill were not in the trace\n" + result.describe())
    assert CUT_SHORT.search("\n".join(retrace_lines(result.err))), result.describe()


# -- the program changed since it was recorded --------------------------------


MAIN = """\
import time
import helper
print("a:", time.time())
print("b:", helper.value())
print("c:", time.monotonic())
print("done")
"""
HELPER = """\
import os


def value():
    return os.getpid()
"""


def test_changed_call_diverges(tmp_path):
    world = World(tmp_path)
    main, helper = world.work / "main_prog.py", world.work / "helper.py"
    main.write_text(MAIN)
    helper.write_text(HELPER)
    rec = run(retrace_cmd("record", "-o", tmp_path / "t.retrace", "--", main),
              cwd=world.work, env=world.record_env())
    assert rec.code == 0, rec.describe()
    main.write_text(MAIN.replace("time.monotonic()", "time.perf_counter()"))
    helper.write_text(HELPER + "# edited after recording\n")
    result = world.replay(tmp_path / "t.retrace")
    assert result.code == 3, result.describe()
    assert TRACEBACK not in result.err, result.describe()
    assert_prefix(result.out, rec.out)
    err = result.err.decode()
    assert re.search(r"^retrace: replay diverged", err, re.M), result.describe()
    for needle in ("expected", "actual", "monotonic", "perf_counter",
                   "main_prog.py", "helper.py"):
        assert needle in err, f"{needle!r} not in the divergence message\n{result.describe()}"
    assert re.search(r"\bevent\b\D{0,20}\d+", err, re.I), "no event index\n" + result.describe()
    assert re.search(r"main_prog\.py\D{0,12}\b5\b", err), "no stack at line 5\n" + result.describe()


def test_appended_call_diverges(world):
    rec = world.case("clock").record()
    assert rec.code == 0, rec.describe()
    script = world.programs / "clock.py"
    script.write_text(script.read_text() + "import time; print(time.time())\n")
    result = world.replay(rec.trace)
    assert result.code == 3, result.describe()
    assert TRACEBACK not in result.err, result.describe()
    assert_prefix(result.out, rec.out)
    err = result.err.decode()
    assert re.search(r"^retrace: replay diverged", err, re.M), result.describe()
    for needle in ("expected", "actual", "time", "clock.py"):
        assert needle in err, f"{needle!r} not in the divergence message\n{result.describe()}"


def test_changed_output_diverges(tmp_path):
    """Output is checked: a replay that prints something else stops."""
    world = World(tmp_path)
    main = world.work / "main_prog.py"
    main.write_text("import time\nprint('start', time.time(), flush=True)\n"
                    "print('total', 6 * 7, flush=True)\n")
    rec = run(retrace_cmd("record", "-o", tmp_path / "t.retrace", "--", main),
              cwd=world.work, env=world.record_env())
    assert rec.code == 0, rec.describe()
    main.write_text(main.read_text().replace("6 * 7", "6 * 9"))
    result = world.replay(tmp_path / "t.retrace")
    assert result.code == 3, result.describe()
    assert_prefix(result.out, rec.out)
    assert b"total 54" not in result.out, result.describe()
    err = result.err.decode()
    assert "writes other output than the recorded run" in err, result.describe()
    assert re.search(r"actual: +b'[^']*\b54\b", err) and "main_prog.py" in err, result.describe()


def test_swallowed_divergence_still_fails_the_replay(tmp_path):
    """A program that catches everything cannot hide a divergence and carry on."""
    world = World(tmp_path)
    main = world.work / "main_prog.py"
    main.write_text("import time\nprint('start', time.time())\nprint('done')\n")
    rec = run(retrace_cmd("record", "-o", tmp_path / "t.retrace", "--", main),
              cwd=world.work, env=world.record_env())
    assert rec.code == 0, rec.describe()
    main.write_text("import time\nprint('start', time.time())\n"
                    "try:\n    time.monotonic()\nexcept BaseException:\n    pass\n"
                    "print('done')\n")
    result = world.replay(tmp_path / "t.retrace")
    assert result.code == 3, result.describe()
    err = result.err.decode()
    # the report is about the first divergence, not the end of the run
    assert "actual:   time.monotonic" in err, result.describe()
    assert "main_prog.py" in err, result.describe()


# -- another Python -----------------------------------------------------------


def test_inspect_reports_the_recording_python(recorded):
    world, rec = recorded
    version = world.inspect(rec.trace)["python"]
    assert re.search(r"(?<![\d.])" + re.escape(platform.python_version()) + r"(?!\d)", version)


def other_python_with_retrace():
    """A sibling venv of the repo (.venv-3.X, as `make test` builds them) of
    another major.minor that can import the engine."""
    mine = "%d.%d" % sys.version_info[:2]
    for venv in sorted(REPO.glob(".venv-3.*")):
        python = venv / "bin" / "python"
        if venv.name == ".venv-" + mine or not python.exists():
            continue
        probe = subprocess.run([str(python), "-c", "import retrace._engine"],
                               capture_output=True, timeout=TIMEOUT)
        if probe.returncode == 0:
            return python
    return None


def test_other_python_version_refused(recorded):
    python = other_python_with_retrace()
    if python is None:
        pytest.skip("no venv of another Python version with retrace installed")
    world, rec = recorded
    result = run([python, "-m", "retrace", "replay", rec.trace], cwd=world.work,
                 env=world.replay_env())
    assert_error_exit(result, re.escape("%d.%d" % sys.version_info[:2]))
