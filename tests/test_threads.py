"""The thread stress suite (issue 4): multithreaded programs whose output
order depends on scheduling replay exactly, every time.

Each program in tests/programs/threads_*.py is recorded RETRACE_STRESS_COUNT
times (default 5; the issue's full count is 20) and every recording is
replayed twice. A replay must print exactly what its recording printed and
exit alike (no divergence), and the two replays of a recording must execute
the same sequence of line events, thread interleaving included: each replay
runs under the line tracer of tests/tracer/sitecustomize.py. The recordings
of one program must not all print the same thing, or the suite would prove
nothing.

threads_race.py has an unsynchronised data race: its replay must reproduce
the recorded result or stop with ReplayDivergence (exit status 3), never
print another result.
"""
import collections
import concurrent.futures
import dataclasses
import os
import re
import sys
import zlib
from pathlib import Path

import pytest

from conftest import TESTS, assert_prefix, assert_same_run, retrace_cmd, run

STRESS_COUNT = int(os.environ.get("RETRACE_STRESS_COUNT", "5"))
TRACER_DIR = TESTS / "tracer"
# Recordings and replays run this many at a time: on two cores, the programs
# mostly sleep, and a busier machine only makes the recorded schedules vary.
PARALLEL = int(os.environ.get("RETRACE_STRESS_PARALLEL", "2"))

# Every stress program, each of whose recordings prints something else.
PROGRAMS = ["threads_queue", "threads_pool", "threads_counter", "threads_pingpong",
            "threads_timer", "threads_sync", "threads_rlock", "threads_logging",
            "threads_simplequeue", "threads_http"]


# --------------------------------------------------------------------------
# Helpers


def tracer_env(world, case, out):
    """The replay environment with the line tracer on."""
    path = os.pathsep.join(filter(None, [str(TRACER_DIR), os.environ.get("PYTHONPATH")]))
    return world.replay_env(PYTHONPATH=path, LINE_TRACER_FILE=case.target[0],
                            LINE_TRACER_OUT=out)


def read_lines(path):
    """(sha256, [(thread name, line number), ...]) written by the tracer."""
    data = zlib.decompress(Path(path).read_bytes()).decode()
    head, _, body = data.partition("\n")
    digest, count = head.split()
    events = [tuple(line.rsplit("\t", 1)) for line in body.splitlines()]
    assert len(events) == int(count), f"{path}: {len(events)} events, header says {count}"
    return digest, events


def first_difference(a, b):
    """Where two line-event sequences part, with some context."""
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 5)
    return (f"{len(a)} and {len(b)} line events; they part at event {i}:\n"
            f"  replay 1: {a[lo:i + 5]}\n  replay 2: {b[lo:i + 5]}")


def replay_traced(world, case, trace, attempt):
    out = trace.with_name(f"{trace.stem}.lines{attempt}")
    result = world.replay(trace, env=tracer_env(world, case, out))
    result.lines = out
    return result


def record_and_replay(world, case, index):
    """One recording and its two traced replays."""
    rec = case.record(trace=world.traces / f"{case.name}-{index}.retrace")
    replays = [replay_traced(world, case, rec.trace, attempt) for attempt in (1, 2)]
    return rec, replays


def stress(world, name, count=STRESS_COUNT):
    """Record `name` count times and replay each recording twice, PARALLEL
    pipelines at a time. Returns [(recording, [replay 1, replay 2]), ...]."""
    case = world._script(name)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(pool.map(lambda i: record_and_replay(world, case, i), range(count)))
    return case, runs


def assert_same_lines(rec, replays, what):
    """Both replays ran to the end and executed the same line events."""
    for attempt, replayed in enumerate(replays, 1):
        assert replayed.lines.exists(), (
            f"{what}: replay {attempt} wrote no line trace\n" + replayed.describe())
    (d1, e1), (d2, e2) = (read_lines(r.lines) for r in replays)
    assert e1, f"{what}: the tracer saw no line of the program"
    assert len({name for name, _ in e1}) > 1, f"{what}: the tracer saw only one thread"
    assert d1 == d2 and e1 == e2, (
        f"{what}: the two replays executed different line events\n" + first_difference(e1, e2))
    return d1


def assert_varies(name, runs, digests=()):
    """The recordings do not all print the same thing, and their replays do
    not all interleave the threads' lines alike: scheduling shows, and the
    line tracer sees it."""
    if len(runs) < 3:
        return
    outputs = collections.Counter((rec.out, rec.err) for rec, _ in runs)
    assert len(outputs) > 1, (
        f"all {len(runs)} recordings of {name} printed the same output: the program does "
        "not exercise scheduling\n" + runs[0][0].describe())
    if digests:
        assert len(set(digests)) > 1, (
            f"the replays of all {len(runs)} recordings of {name} executed the same line "
            "events: the line tracer does not see the interleaving")


# --------------------------------------------------------------------------
# The stress suite


@pytest.mark.parametrize("name", PROGRAMS)
def test_stress_replays_exactly(world, name):
    case, runs = stress(world, name)
    digests = []
    for i, (rec, replays) in enumerate(runs, 1):
        assert rec.code == 0, f"{name}: recording {i} failed\n" + rec.describe()
        assert b"retrace:" not in rec.err, rec.describe()
        for attempt, replayed in enumerate(replays, 1):
            assert_same_run(rec, replayed, f"{name}: recording {i}, replay {attempt}")
        digests.append(assert_same_lines(rec, replays, f"{name}: recording {i}"))
    assert_varies(name, runs, digests)


def _completion_order(out):
    return [line for line in out.decode().splitlines()
            if line.startswith(("completed:", "failed:"))]


def test_pool_completion_order_varies(world):
    """The same tasks complete in different orders from one recording to the
    next, and each replay keeps its recording's order."""
    count = max(STRESS_COUNT, 3)
    _, runs = stress(world, "threads_pool", count)
    orders = [_completion_order(rec.out) for rec, _ in runs]
    assert all(sorted(o) == sorted(orders[0]) and len(o) == 14 for o in orders), orders
    assert len({tuple(o) for o in orders}) > 1, f"{count} recordings, one completion order"
    for rec, replays in runs:
        for replayed in replays:
            assert _completion_order(replayed.out) == _completion_order(rec.out)


# --------------------------------------------------------------------------
# The data race


RACE_TOTAL = 4 * 30000
COUNTER = re.compile(rb"^counter: (\d+)$", re.M)


def test_data_race_replays_identically_or_diverges(world):
    case, runs = stress(world, "threads_race")
    totals = []
    for i, (rec, replays) in enumerate(runs, 1):
        assert rec.code == 0, rec.describe()
        totals.append(int(COUNTER.search(rec.out).group(1)))
        for attempt, replayed in enumerate(replays, 1):
            what = f"threads_race: recording {i}, replay {attempt}"
            if replayed.code == 3:
                assert b"ReplayDivergence" in replayed.err or b"diverge" in replayed.err, (
                    what + "\n" + replayed.describe())
                assert_prefix(replayed.out, rec.out)
            else:
                assert_same_run(rec, replayed, what)
        # Replay is deterministic: the second replay does what the first did.
        first, second = replays
        assert (first.code, first.out, first.err) == (second.code, second.out, second.err), (
            f"threads_race: recording {i}: the two replays differ\n"
            + first.describe() + "\n" + second.describe())
        if first.code == 0:
            assert_same_lines(rec, replays, f"threads_race: recording {i}")
    # The race is real: updates were lost in at least one recording.
    assert min(totals) < RACE_TOTAL, f"no update was lost in {len(totals)} recordings: {totals}"


# --------------------------------------------------------------------------
# Threads Retrace does not see start


def test_thread_started_from_c_diverges_cleanly(world):
    """A thread started by pthread_create (through ctypes), not by _thread, is
    numbered at its first event in recording; replay does not know it was
    started. It must replay identically or stop with a divergence that names
    the threads, printing only what the recording printed: never a hang,
    never other output."""
    case = world._script("threads_from_c")
    rec = case.record()
    assert rec.code == 0, rec.describe()
    assert b"c thread: tick 2" in rec.out, rec.describe()
    replayed = world.replay(rec.trace)
    if replayed.code != 3:
        assert_same_run(rec, replayed)
        return
    assert re.search(rb"retrace: replay diverged .*thread \d+", replayed.err), replayed.describe()
    assert_prefix(replayed.out, rec.out)


def test_divergence_in_a_thread_is_reported_at_once(world):
    """A replay whose worker thread makes another call than the recording did
    (its code changed) stops at once with the divergence, exit status 3."""
    case = world._script("threads_counter")
    rec = case.record()
    assert rec.code == 0, rec.describe()
    program = Path(case.target[0])
    source = program.read_text()
    changed = source.replace("        time.sleep(random.random() / 200)\n",
                             "        time.time()\n", 1)
    assert changed != source
    program.write_text(changed)
    replayed = run(retrace_cmd("replay", rec.trace), cwd=world.work, env=world.replay_env(),
                   timeout=10)
    assert replayed.code == 3, replayed.describe()
    assert re.search(rb"expected: time\.sleep \(thread [1-9]", replayed.err), replayed.describe()


def test_thread_identifiers_are_the_recorded_ones(world):
    """get_ident(), get_native_id(), Thread.ident and native_id, and so log
    lines with %(thread)d, show the recording's values in replay (the
    replaying threads' own differ), in the main thread, workers and a forked
    child."""
    case = world._script("threads_identifiers")
    rec = case.record()
    assert rec.code == 0 and rec.out.count(b" worker ") == 3, rec.describe()
    # the forked child's line is in the child's own trace, TRACE.PID
    child_line = next(line for line in rec.out.splitlines(keepends=True) if b" child: " in line)
    child_pid = child_line.split()[0].decode()
    parent = dataclasses.replace(rec, out=rec.out.replace(child_line, b""))
    for _ in range(2):
        assert_same_run(parent, world.replay(rec.trace))
    child = world.retrace("replay", rec.trace, "--pid", child_pid)   # the parent's run, then its
    assert child.code == 0 and child.out == parent.out + child_line, child.describe()
