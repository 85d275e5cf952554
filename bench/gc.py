"""What watching the garbage collector costs a recording, as ratios against a
plain run.

    python bench/gc.py [--rounds N] [--quick]

Recording puts two C functions in gc.callbacks (csrc/boundary.c, "code the
garbage collector runs"): every collection calls them, at its start and its
stop. Each workload runs as its own process, plainly and under `retrace
record`, interleaved round by round; the time is measured inside the
process, around the loop only, which makes no boundary call:

  cycles     allocates small objects in reference cycles: a generation-0
             collection every 700 allocations, each freeing garbage
  finalize   the same objects with a weakref.finalize each, whose callback
             takes a lock (what urllib3's pools do): the collector runs
             Python code and the lock operations pass the boundary
  collect    gc.collect(0) on an empty generation: a collection's fixed
             cost, where the two callbacks weigh the most

Prints ns per object allocated (per collection for `collect`), plain and
recorded, their ratio, and the ns added per collection: median (min .. max)
over the rounds. With --callgrind (valgrind needed), counts instructions
instead, once per mode, which a busy machine does not disturb: the workload's
instructions are those of a run minus those of the same run with n = 0
(startup, imports, for `retrace record` its exec'd process only).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable
HERE = os.path.abspath(__file__)


# -- the workloads (run in a child process) ----------------------------------

class Node:
    def __init__(self):
        self.me = self


def workload(kind, n):
    import gc
    import threading
    import weakref
    lock = threading.Lock()

    def release(held=lock):
        with held:
            pass

    gc.collect()
    before = sum(s["collections"] for s in gc.get_stats())
    start = time.perf_counter_ns()
    if kind == "cycles":
        for _ in range(n):
            Node()
    elif kind == "collect":
        for _ in range(n):
            gc.collect(0)
    else:
        for _ in range(n):
            weakref.finalize(Node(), release)
    elapsed = time.perf_counter_ns() - start
    collections = sum(s["collections"] for s in gc.get_stats()) - before
    print(elapsed / max(n, 1), collections)


# -- the driver ---------------------------------------------------------------

def measure(kind, n, record, tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    args = [HERE, "--run", kind, str(n)]
    if record:
        args = ["-m", "retrace", "record", "-o", os.path.join(tmp, "bench.retrace"), "--", *args]
    out = subprocess.run([PY, *args], env=env, capture_output=True, text=True, check=True)
    ns, collections = out.stdout.split()[-2:]
    return float(ns), int(collections)


def instructions(kind, n, record, tmp):
    """Instructions the workload executes, by callgrind, and its collections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    counts = []
    for size in (0, n):
        args = [HERE, "--run", kind, str(size)]
        if record:
            args = ["-m", "retrace", "record", "-o", os.path.join(tmp, "bench.retrace"), "--",
                    *args]
        out = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                              "--callgrind-out-file=/dev/null", PY, *args], env=env,
                             capture_output=True, text=True, check=True)
        counts.append(sum(int(c) for c in re.findall(r"Collected : (\d+)", out.stderr)))
    return counts[1] - counts[0], int(out.stdout.split()[-1])


def callgrind(kinds):
    print(f"Python {sys.version.split()[0]}, callgrind: instructions of the workload")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n in kinds.items():
            plain, collections = instructions(kind, n, False, tmp)
            rec, _ = instructions(kind, n, True, tmp)
            print(f"{kind:9s} plain {plain / n:,.0f}  recorded {rec / n:,.0f} per object  "
                  f"ratio {rec / plain:.4f}x  {collections} collections, "
                  f"{(rec - plain) / collections:,.0f} instructions added per collection")


def summary(values, fmt="{:.1f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} .. " \
           f"{fmt.format(max(values))})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.run:
        return workload(opts.run[0], int(opts.run[1]))
    scale = 20 if opts.quick else 10 if opts.callgrind else 1
    kinds = {"cycles": 2_000_000 // scale, "finalize": 300_000 // scale,
             "collect": 200_000 // scale}
    if opts.callgrind:
        return callgrind(kinds)
    results = {(k, m): [] for k in kinds for m in ("plain", "record")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.rounds):
            for kind, n in kinds.items():
                for mode in ("plain", "record"):
                    results[kind, mode].append(measure(kind, n, mode == "record", tmp))
    print(f"Python {sys.version.split()[0]}, {opts.rounds} rounds; ns per object, "
          "median (min .. max)")
    for kind, n in kinds.items():
        plain = [ns for ns, _ in results[kind, "plain"]]
        rec = [ns for ns, _ in results[kind, "record"]]
        collections = statistics.median(c for _, c in results[kind, "record"])
        added = [(r - p) * n / collections for p, r in zip(plain, rec)]
        print(f"{kind:9s} plain {summary(plain)}  recorded {summary(rec)}  "
              f"ratio {summary([r / p for p, r in zip(plain, rec)], '{:.3f}x')}  "
              f"{collections:.0f} collections, ns added per collection {summary(added, '{:.0f}')}")


if __name__ == "__main__":
    main()
