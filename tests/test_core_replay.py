"""End-to-end: each program in tests/programs, recorded and then replayed.

A replay must print exactly what the recording printed (stdout and stderr,
byte for byte, tracebacks included) and exit with the same status, without
touching the live world: no files read or written, no network, no stdin, no
environment variables, another cwd, another time zone.
"""
import dataclasses
import secrets
import shutil

import pytest

from conftest import (NONDETERMINISTIC, OTHER_TZ, PROGRAMS, assert_same_run,
                      assert_same_shape, assert_unchanged, retrace_cmd, run, scrubbed_env,
                      snapshot)


@pytest.mark.parametrize("name", PROGRAMS)
def test_recording_does_not_change_the_run(world, name):
    case = world.case(name)
    plain = case.plain()
    assert plain.code == case.expect_code, plain.describe()
    assert_same_shape(plain, case.record())


@pytest.mark.parametrize("name", NONDETERMINISTIC)
def test_program_output_differs_between_recordings(world, name):
    # Otherwise a replay that merely re-ran the program would pass every test.
    case = world.case(name)
    first, second = case.record(), case.record()
    assert first.code == second.code == case.expect_code, first.describe()
    assert (first.out, first.err) != (second.out, second.err), first.describe()


@pytest.mark.parametrize("name", PROGRAMS)
def test_replay_twice_reproduces_recording(world, name):
    case = world.case(name)
    rec = case.record()
    assert rec.code == case.expect_code, rec.describe()
    before = snapshot(world.root)
    for attempt in (1, 2):
        assert_same_run(rec, world.replay(rec.trace), f"replay {attempt}")
    assert_unchanged(before, snapshot(world.root))


@pytest.mark.parametrize("name", PROGRAMS)
def test_replay_in_foreign_environment(world, name):
    """Another cwd, only PATH in the environment, another time zone."""
    case = world.case(name)
    rec = case.record()
    before = snapshot(world.root)
    rep = world.replay(rec.trace, cwd=world.elsewhere, env=scrubbed_env(TZ=OTHER_TZ))
    assert_same_run(rec, rep)
    assert_unchanged(before, snapshot(world.root))


@pytest.mark.parametrize("name", PROGRAMS)
def test_replay_without_network(world, name, unshare_net):
    case = world.case(name)
    rec = case.record()
    assert_same_run(rec, world.replay(rec.trace, prefix=unshare_net))


def test_replay_without_the_files_it_read(world):
    case = world.case("filesystem")
    rec = case.record()
    assert rec.code == 0, rec.describe()
    for path in case.read_paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(case.out_dir)
    shutil.rmtree(world.tmp_record)
    before = snapshot(world.root)
    for attempt in (1, 2):
        rep = world.replay(rec.trace, cwd=world.elsewhere)
        assert_same_run(rec, rep, f"replay {attempt} without the input files")
    assert not case.out_dir.exists(), "replay recreated the output directory"
    assert not world.tmp_record.exists(), "replay recreated the recorded TMPDIR"
    assert_unchanged(before, snapshot(world.root))


def test_replay_ignores_changed_input_files(world):
    case = world.case("filesystem")
    rec = case.record()
    data, tree = case.read_paths
    data.write_text("changed after recording\n" * 3)
    (tree / "added-after-recording").write_text("new")
    assert_same_run(rec, world.replay(rec.trace), "replay with changed input files")


def test_replay_ignores_live_stdin(world):
    case = world.case("stdin")
    rec = case.record()
    rep = world.replay(rec.trace, stdin=b"not what was recorded\n" + secrets.token_bytes(64))
    assert_same_run(rec, rep)


def test_replay_with_stdin_closed(world):
    case = world.case("stdin")
    rec = case.record()
    rep = world.replay(rec.trace, prefix=["sh", "-c", 'exec "$@" <&-', "sh"])
    assert_same_run(rec, rep)


def test_relative_script_path_replays_from_another_directory(world):
    case = dataclasses.replace(world.case("process"), cwd=world.programs,
                               target=["process.py"])
    rec = case.record()
    assert rec.code == 0, rec.describe()
    assert_same_run(rec, world.replay(rec.trace, cwd=world.elsewhere))


def test_hash_seed_is_recorded_and_reused(world):
    case = world.case("hashseed")
    rec = case.record()
    seed = world.inspect(rec.trace)["hash_seed"]
    assert isinstance(seed, int) and not isinstance(seed, bool)
    # The seed in the header is the one the recorded run really used ...
    assert case.plain(PYTHONHASHSEED=seed).out == rec.out
    # ... and replay uses it whatever this environment says.
    other = (seed + 1) % 2**32
    assert_same_run(rec, world.replay(rec.trace, env=world.replay_env(PYTHONHASHSEED=other)))


def test_explicit_hash_seed_is_kept(world):
    case = world.case("hashseed")
    seed = secrets.randbelow(2**32 - 1) + 1
    rec = case.record(PYTHONHASHSEED=seed)
    assert world.inspect(rec.trace)["hash_seed"] == seed
    assert rec.out == case.plain(PYTHONHASHSEED=seed).out
    assert_same_run(rec, world.replay(rec.trace))


def test_os_exit_ends_the_recording(world):
    program = world.programs / "hard_exit.py"
    trace = world.new_trace("hard_exit")
    recorded = run(retrace_cmd("record", "-o", trace, program), cwd=world.work,
                   env=world.record_env())
    assert recorded.code == 5, recorded.describe()
    assert b"atexit must not run" not in recorded.out
    summary = world.inspect(trace)
    assert summary["complete"] is True and summary["exit_code"] == 5
    for _ in range(2):
        assert_same_run(recorded, world.replay(trace))
