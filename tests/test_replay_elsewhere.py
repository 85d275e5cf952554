"""Replay on another machine: the program's code lives at another path."""
import shutil

from conftest import World, retrace_cmd, run

MAIN = """\
import time
import helper
print("clock:", time.time(), "pid:", helper.pid())
raise SystemExit(4)
"""
HELPER = "import os\n\n\ndef pid():\n    return os.getpid()\n"


def recorded_elsewhere(tmp_path):
    """Record a program in prod/app, then move its code to laptop/code."""
    world = World(tmp_path)
    prod, laptop = tmp_path / "prod" / "app", tmp_path / "laptop" / "code"
    prod.mkdir(parents=True)
    (prod / "svc.py").write_text(MAIN)
    (prod / "helper.py").write_text(HELPER)
    trace = tmp_path / "t.retrace"
    rec = run(retrace_cmd("record", "-o", trace, "svc.py"), cwd=prod, env=world.record_env())
    assert rec.code == 4, rec.describe()
    shutil.copytree(prod, laptop)
    shutil.rmtree(tmp_path / "prod")
    return world, rec, trace, laptop


def test_replay_from_a_checkout_found_by_checksum(tmp_path):
    world, rec, trace, laptop = recorded_elsewhere(tmp_path)
    rep = world.retrace("replay", trace, cwd=laptop)
    assert (rep.code, rep.out) == (rec.code, rec.out), rep.describe()
    assert b"same checksum" in rep.err, rep.describe()


def test_replay_with_map(tmp_path):
    world, rec, trace, laptop = recorded_elsewhere(tmp_path)
    mapping = f"{tmp_path / 'prod' / 'app'}={laptop}"
    rep = world.retrace("replay", trace, "--map", mapping, cwd=world.elsewhere)
    assert (rep.code, rep.out, rep.err) == (rec.code, rec.out, rec.err), rep.describe()
    # an edited helper at the local path is named in the divergence report
    (laptop / "helper.py").write_text(HELPER.replace("os.getpid()", "os.getppid()"))
    rep = world.retrace("replay", trace, "--map", mapping, cwd=world.elsewhere)
    assert rep.code == 3, rep.describe()
    assert str(laptop / "helper.py").encode() in rep.err, rep.describe()


def test_missing_program_is_a_clear_error(tmp_path):
    world, rec, trace, laptop = recorded_elsewhere(tmp_path)
    rep = world.retrace("replay", trace, cwd=world.elsewhere)
    assert rep.code == 2, rep.describe()
    assert rep.err.startswith(b"retrace: error: the recorded program"), rep.describe()
    assert b"--map" in rep.err, rep.describe()
