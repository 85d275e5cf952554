"""`retrace install`: a .pth hook in this venv so that
`RETRACE_RECORDING=FILE python script.py` records. Every test restores the
venv's .pth files, whatever happens."""
import os
import stat
from pathlib import Path

import pytest

from conftest import (PROGRAMS, PY, assert_same_run, assert_same_shape, assert_unchanged,
                      hook_installed, pth_files, pth_guard, run, snapshot)


@pytest.mark.parametrize("name", PROGRAMS)
def test_hook_recording_replays(world, installed_hook, name):
    case = world.case(name)
    rec = case.hook_record()
    assert rec.trace.exists(), "RETRACE_RECORDING did not produce a trace\n" + rec.describe()
    assert_same_shape(case.plain(), rec)
    assert stat.S_IMODE(os.stat(rec.trace).st_mode) == 0o600
    for attempt in (1, 2):
        assert_same_run(rec, world.replay(rec.trace), f"replay {attempt}")


def test_hook_is_inert_without_the_variable(world):
    case = world.case("hashseed")
    baseline = case.plain(PYTHONHASHSEED=1234)
    before = snapshot(world.root)
    with hook_installed(world):
        hooked = case.plain(PYTHONHASHSEED=1234)
    assert_same_run(baseline, hooked, "a run with the hook installed but not enabled")
    assert_unchanged(before, snapshot(world.root), "a run with the hook installed")


def test_uninstall_stops_recording(world):
    case = world.case("clock")
    with pth_guard() as before:
        installed = world.retrace("install")
        assert installed.code == 0, installed.describe()
        assert pth_files() != before
        removed = world.retrace("uninstall")
        assert removed.code == 0, removed.describe()
        assert pth_files() == before, "uninstall did not restore the .pth files"
        rec = case.hook_record()
    assert rec.code == 0, rec.describe()
    assert not rec.trace.exists(), "still recording after retrace uninstall"


def test_console_script(world):
    script = Path(PY).parent / "retrace"
    assert script.exists(), f"no `retrace` console script next to {PY}"
    rec = world.case("clock").record()
    rep = run([script, "replay", rec.trace], cwd=world.work, env=world.replay_env())
    assert_same_run(rec, rep, "replay through the console script")
