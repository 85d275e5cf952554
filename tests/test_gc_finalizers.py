"""Finalizers run by the cyclic garbage collector, recorded and replayed.

The collector starts when allocations cross a threshold, and replay allocates
otherwise than the recording (Retrace's own objects; one thread at a time),
so its collections come at other moments. The programs make that difference
certain without configuring either run differently (gc_trigger.py): they set
the program's own threshold so that the next allocation collects, then
acquire a lock, whose replay allocates where its recording does not. Each test fails without
the collector's context (csrc/boundary.c): the finalizers' calls would then
take places in the order of the program's events, or pass through to the
world inside Retrace's own work.

- gc_pools.py: urllib3-style pools in cycles drained by weakref.finalize
  (LifoQueue locks, sockets closed, a module-level lock), three threads.
- gc_world.py: finalizers that read the clock, print, close fd 100 and raise
  (reported by sys.unraisablehook with addresses): freed earlier in replay,
  at the same gc.collect() in both runs, or by reference counting.
- gc_held_lock.py: the finalizer wants a lock a parked thread holds.
- gc_wakeup.py: the finalizer's SimpleQueue put wakes a worker thread.
"""
import os
import shutil
import subprocess

import pytest

from conftest import Case, assert_same_run, assert_same_shape
from retrace import _engine
from retrace._inspect import _varint

COLLECTOR = 4   # bit 2 of a C record's outcome byte (docs/trace-format.md)


def gc_case(world, name, *args):
    return Case(world, name, [world.programs / f"{name}.py"], list(args), world.work, {})


def record_and_replay(world, name, *args, prefix=()):
    case = gc_case(world, name, *args)
    plain = case.plain()
    assert plain.code == 0, plain.describe()
    rec = case.record()
    assert_same_shape(plain, rec)
    rep = world.replay(rec.trace, prefix=prefix)
    assert_same_run(rec, rep)
    return rec, rep


def collector_calls(trace):
    """Names of the recorded calls flagged as made by the collector's code."""
    names, flagged = {}, []
    _, records, _ = _engine._read_records(str(trace))
    for record in records:
        if record[:1] == b"D":
            fid, pos = _varint(record, 1)
            n, pos = _varint(record, pos)
            names[fid] = record[pos:pos + n].decode()
        elif record[:1] == b"C":
            _, pos = _varint(record, 1)
            fid, pos = _varint(record, pos)
            if record[pos] & COLLECTOR:
                flagged.append(names[fid])
    return flagged


def strace_prefix(log):
    if shutil.which("strace") is None or subprocess.run(
            ["strace", "-f", "-o", os.devnull, "true"], capture_output=True).returncode:
        pytest.skip("strace is not available or not permitted here")
    return ["strace", "-f", "-qq", "-o", log, "-e", "trace=close,dup2,dup3"]


@pytest.mark.parametrize("attempt", range(3))
def test_pools_in_cycles_with_threads(world, attempt):
    rec, _ = record_and_replay(world, "gc_pools")
    assert b"pools closed: 1890" in rec.out, rec.describe()
    # the finalizers' lock operations are no events at all
    assert not [n for n in collector_calls(rec.trace) if "lock" in n.lower()]


def test_finalizers_freed_earlier_in_replay(world):
    log = world.root / "strace.log"
    rec, rep = record_and_replay(world, "gc_world", "early", prefix=strace_prefix(log))
    # the recording's finalizers ran at the final gc.collect(): their output is
    # replayed there, from the recording, though replay's ran before
    lines = rec.out.decode().splitlines()
    assert lines[0].startswith("garbage made:") and lines[1].startswith("work:")
    assert lines[2].startswith("handle finalized:"), rec.describe()
    assert b"Exception ignored in: <function Broken.__del__ at 0x" in rec.err, rec.describe()
    flagged = collector_calls(rec.trace)
    assert {"time.time", "time.monotonic", "posix.close", "sys.stdout.write"} <= set(flagged)
    # fd 100 is a recorded descriptor: replay never closes its own fd 100
    assert "close(100)" not in log.read_text(), log.read_text()[-3000:]


def test_finalizers_at_the_same_place(world):
    """An explicit gc.collect() in both runs: the finalizers' clock reads
    replay the recorded values, which the program prints afterwards."""
    rec, _ = record_and_replay(world, "gc_world", "same")
    assert b"stamps: [('handle', " in rec.out and b"('other', " in rec.out, rec.describe()


def test_finalizers_by_reference_counting(world):
    """Without cycles finalizers run at the same bytecode in both runs: their
    calls are the program's events (with threads), and the report of the one
    that raises prints its address, which replay takes from the recording."""
    rec, _ = record_and_replay(world, "gc_world", "refcount")
    assert rec.out.count(b" finalized: ") == 20 and b"stamps: 60 " in rec.out, rec.describe()
    assert rec.err.count(b"ValueError: finalizer failed") == 1, rec.describe()
    flagged = collector_calls(rec.trace)
    assert set(flagged) == {"sys.stdout.write"}, flagged   # only the hook's reports


def test_finalizer_wants_a_lock_a_parked_thread_holds(world):
    record_and_replay(world, "gc_held_lock")


def test_finalizer_wakes_a_thread(world):
    rec, _ = record_and_replay(world, "gc_wakeup")
    assert b"worker got: [('stop', " in rec.out, rec.describe()


def test_check_prints_finalizer_output_live(world):
    """retrace check runs output live: the replay's own finalizers print (what
    they read replays from the recording), the recorded output is passed over."""
    rec = gc_case(world, "gc_world", "crash").record()
    assert rec.code == 1, rec.describe()
    result = world.retrace("check", rec.trace)
    assert result.code == 1 and b"REPRODUCED" in result.err, result.describe()
    assert result.out == rec.out, result.describe()
