"""Recording must never break the program it records: a full disk or an
unwritable trace path costs the recording, not the run."""
import contextlib
import subprocess

import pytest

from conftest import PY, TRACEBACK, retrace_cmd, retrace_lines, run


@contextlib.contextmanager
def tiny_disk(path, size):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_keeps_the_program_running(world):
    program = world.programs / "busy_clock.py"
    plain = run([PY, program, "10", "2000"], cwd=world.work, env=world.record_env())
    # About 170 KB of trace per batch: the disk fills after a few chunks.
    with tiny_disk(world.root / "disk", size="1m") as disk:
        trace = disk / "full.retrace"
        recorded = run([*retrace_cmd("record", "-o", trace, program, "10", "2000")],
                       cwd=world.work, env=world.record_env())
        # The program ran to the end, with its own output and status.
        assert recorded.code == plain.code == 0, recorded.describe()
        assert recorded.out.splitlines()[0] == plain.out.splitlines()[0]
        assert len(recorded.out.splitlines()) == len(plain.out.splitlines())
        assert TRACEBACK not in recorded.err, recorded.describe()
        messages = retrace_lines(recorded.err)
        assert any("recording stopped" in m and "No space left" in m for m in messages), \
            recorded.describe()
        # What reached the disk is a readable, honest prefix.
        summary = world.inspect(trace)
        assert summary["complete"] is False
        assert 0 < summary["events"].get("time.time", 0) < 10 * 2000
        replayed = world.replay(trace)
        assert replayed.code == 3, replayed.describe()
        assert replayed.out == b"", replayed.describe()
        assert b"the recording ends" in replayed.err, replayed.describe()


def test_unwritable_trace_path_is_refused_before_the_program_runs(world):
    program = world.programs / "busy_clock.py"
    trace = world.root / "no-such-dir" / "x.retrace"
    result = run(retrace_cmd("record", "-o", trace, program, "1", "10"), cwd=world.work,
                 env=world.record_env())
    assert result.code == 2, result.describe()
    assert result.out == b"", result.describe()
    assert result.err.startswith(b"retrace: error: cannot record to"), result.describe()
    assert b"No such file or directory" in result.err, result.describe()


def test_hook_with_unwritable_path_runs_the_program_unrecorded(world, installed_hook):
    program = world.programs / "busy_clock.py"
    plain = run([PY, program, "1", "10"], cwd=world.work, env=world.record_env())
    trace = world.root / "no-such-dir" / "x.retrace"
    result = run([PY, program, "1", "10"], cwd=world.work,
                 env=world.record_env(RETRACE_RECORDING=trace))
    assert result.code == plain.code == 0, result.describe()
    assert result.out.splitlines()[0] == plain.out.splitlines()[0]
    assert retrace_lines(result.err) and "not recording" in retrace_lines(result.err)[0]
    assert not trace.exists()
