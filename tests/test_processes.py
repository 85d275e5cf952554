"""fork, multiprocessing and subprocess: children are external in replay.

A replay of the parent starts no process at all; a forked child's own trace
replays with `retrace replay TRACE --pid PID` (or by naming TRACE.PID)."""
import glob

from conftest import PY, assert_same_run, retrace_cmd, run


def record(world, name, *args):
    trace = world.new_trace(name)
    rec = run(retrace_cmd("record", "-o", trace, world.programs / f"{name}.py", *args),
              cwd=world.work, env=world.record_env())
    return rec, trace


def child_traces(trace):
    return sorted(glob.glob(f"{trace}.*"))


def test_fork_parent_and_child_replay(world):
    rec, trace = record(world, "proc_fork")
    assert rec.code == 0, rec.describe()
    children = child_traces(trace)
    assert len(children) == 1, children
    child_pid = children[0].rsplit(".", 1)[1]
    # the parent's replay prints what the parent printed, and forks nothing
    parent_lines = [line for line in rec.out.splitlines() if not line.startswith(b"child:")]
    for _ in range(2):
        replay = world.replay(trace)
        assert replay.code == 0, replay.describe()
        assert replay.out.splitlines() == parent_lines, replay.describe()
        assert b"child exit status: 3" in replay.out
    # the child's replay: the parent's part up to the fork, then the child's
    child_lines = [line for line in rec.out.splitlines() if line.startswith(b"child:")]
    for replay in (world.retrace("replay", trace, "--pid", child_pid),
                   world.retrace("replay", children[0])):
        assert replay.code == 3, replay.describe()
        assert replay.out.splitlines() == [parent_lines[0], *child_lines], replay.describe()
    info = world.inspect(children[0])
    assert info["complete"] is True and info["exit_code"] == 3


def test_subprocess_replays_without_running_anything(world):
    marker = world.root / "ran"
    rec, trace = record(world, "proc_subprocess", marker)
    assert rec.code == 0 and marker.exists(), rec.describe()
    marker.unlink()
    for _ in range(2):
        assert_same_run(rec, world.replay(trace))
    assert not marker.exists(), "replay ran the recorded subprocess"


def test_subprocess_output_differs_between_recordings(world):
    first, _ = record(world, "proc_subprocess", world.root / "a")
    second, _ = record(world, "proc_subprocess", world.root / "b")
    assert first.out != second.out


def test_multiprocessing_fork(world):
    rec, trace = record(world, "proc_multiprocessing")
    assert rec.code == 0, rec.describe()
    assert len(child_traces(trace)) == 3
    for _ in range(2):
        assert_same_run(rec, world.replay(trace))
    plain = run([PY, world.programs / "proc_multiprocessing.py"], cwd=world.work,
                env=world.record_env())
    assert plain.out != rec.out      # pids and random draws differ: a real test
