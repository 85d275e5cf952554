"""`retrace check`: is the recorded failure fixed in the current code?"""
from conftest import World, retrace_cmd, run

PROGRAM = """\
import os
import random


def ratio(values):
    return sum(values) / len(values)


batch = [random.randint(1, 9) for _ in range(random.randint(1, 3))]
print("pid", os.getpid(), "batch", batch)
print("mean", ratio([v for v in batch if v > 100]))
"""
FIX = PROGRAM.replace("    return sum(values) / len(values)",
                      "    return sum(values) / len(values) if values else 0.0")


def recorded_crash(tmp_path, source=PROGRAM):
    world = World(tmp_path)
    program = world.work / "prog.py"
    program.write_text(source)
    trace = tmp_path / "t.retrace"
    rec = run(retrace_cmd("record", "-o", trace, program), cwd=world.work,
              env=world.record_env())
    return world, program, trace, rec


def check(world, trace):
    return world.retrace("check", trace)


def test_unchanged_code_reproduces(tmp_path):
    world, program, trace, rec = recorded_crash(tmp_path)
    assert rec.code == 1 and b"ZeroDivisionError" in rec.err, rec.describe()
    result = check(world, trace)
    assert result.code == 1, result.describe()
    assert result.out == rec.out, result.describe()
    assert b"retrace check: REPRODUCED" in result.err, result.describe()
    assert b"prog.py:6 in ratio" in result.err, result.describe()


def test_fixed_code_is_fixed(tmp_path):
    world, program, trace, rec = recorded_crash(tmp_path)
    program.write_text(FIX)
    result = check(world, trace)
    assert result.code == 0, result.describe()
    assert b"retrace check: FIXED" in result.err, result.describe()
    assert b"exited with status 0" in result.err, result.describe()
    assert result.out.startswith(rec.out), result.describe()   # same recorded inputs
    assert b"mean 0.0" in result.out, result.describe()


def test_fix_that_asks_for_more_inputs_is_fixed(tmp_path):
    world, program, trace, rec = recorded_crash(tmp_path)
    program.write_text(FIX + "print('checked at', os.getcwd())\n")
    result = check(world, trace)
    assert result.code == 0, result.describe()
    assert b"asked for posix.getcwd" in result.err, result.describe()


def test_change_before_the_crash_diverges(tmp_path):
    world, program, trace, rec = recorded_crash(tmp_path)
    program.write_text(PROGRAM.replace('print("pid", os.getpid(),', 'print("pid", os.getppid(),'))
    result = check(world, trace)
    assert result.code == 3, result.describe()
    assert b"retrace check: DIVERGED before the recorded crash point" in result.err
    assert b"posix.getppid" in result.err and b"prog.py" in result.err, result.describe()


def test_successful_recording_has_nothing_to_check(tmp_path):
    world, program, trace, rec = recorded_crash(tmp_path, FIX)
    assert rec.code == 0, rec.describe()
    result = check(world, trace)
    assert result.code == 4, result.describe()
    assert b"NOTHING TO CHECK" in result.err, result.describe()
