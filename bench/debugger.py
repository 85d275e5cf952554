"""Debugger benchmarks: what the debugger costs a replay, and how fast it
goes back (docs/debugger.md).

    python bench/debugger.py [--quick] [--rounds N]

  speed     bench/workloads/cpu_bound.py, its own elapsed time (real clock):
            a plain run, `retrace replay`, and the debugger running the
            replay to its end, counting lines only (no checkpoints) and with
            checkpoints (every 50 ms of running). Interleaved rounds.
  reverse   reverse-step latency at steps 10^3, 10^5 and 10^6 of recordings
            of cpu_bound.py of two lengths: a fresh debugger goes to the step
            (goto), then steps back REPEATS times. The first reverse step
            replays from the last checkpoint of the forward run; the next
            ones from the denser checkpoints the backward runs leave.
  threads   the same on a recording whose two worker threads are alive the
            whole time: a fork cannot carry threads, so a reverse step
            replays from the last checkpoint taken before they started,
            counting lines only.

Prints a markdown section and writes it into bench/results.md in place of
its "## Debugger" section. Every cell: median (min .. max).
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
PY = sys.executable
sys.path.insert(0, str(REPO / "src"))

from retrace.debugger import Debugger  # noqa: E402

THREADED = """\
import sys, threading
sys.path.insert(0, {workloads!r})
from cpu_bound import batch

lock = threading.Lock()


def worker(first, count):
    for seed in range(first, first + count):
        with lock:              # an event now and then: the threads interleave
            pass
        batch(seed)


threads = [threading.Thread(target=worker, args=(i * 100000, {count})) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def spread(values, scale=1.0, digits=1):
    values = [v * scale for v in values]
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f} .. {max(values):.{digits}f})")


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    return env


def elapsed(text):
    """The workload's own elapsed seconds, from its JSON line."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)["elapsed_ns"] / 1e9
    raise RuntimeError(f"no timing in {text!r}")


def record(workdir, script, *args):
    trace = Path(workdir) / f"{Path(script).stem}-{'-'.join(map(str, args))}.retrace"
    subprocess.run([PY, "-m", "retrace", "record", "-o", str(trace), str(script),
                    *map(str, args)], check=True, capture_output=True, env=clean_env())
    return trace


def to_end(trace, interval):
    """The workload's elapsed time when the debugger replays it to its end
    (cpu_bound writes it with the real os.write: the replay process's log)."""
    with Debugger(trace, checkpoint_interval=interval) as dbg:
        dbg.goto(10**15)
        return elapsed(dbg._log_text()), dbg.total_steps


def speed(workdir, batches, rounds):
    trace = record(workdir, WORKLOADS / "cpu_bound.py", batches)
    times = {"plain": [], "replay": [], "count": [], "checkpoints": []}
    steps = None
    for _ in range(rounds):
        out = subprocess.run([PY, str(WORKLOADS / "cpu_bound.py"), str(batches)],
                             capture_output=True, text=True, env=clean_env(), check=True).stdout
        times["plain"].append(elapsed(out))
        out = subprocess.run([PY, "-m", "retrace", "replay", str(trace)], capture_output=True,
                             text=True, env=clean_env(), check=True).stdout
        times["replay"].append(elapsed(out))
        seconds, steps = to_end(trace, 0)
        times["count"].append(seconds)
        times["checkpoints"].append(to_end(trace, 0.05)[0])
    rows = [
        "| run of cpu_bound.py | seconds | / plain | / replay |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = {"plain": "plain python", "replay": "`retrace replay` (no debugger)",
              "count": "debugger, counting lines, no checkpoints",
              "checkpoints": "debugger, checkpoints every 50 ms"}
    for key, label in labels.items():
        over_plain = [t / p for t, p in zip(times[key], times["plain"])]
        over_replay = [t / r for t, r in zip(times[key], times["replay"])]
        rows.append(f"| {label} | {spread(times[key], digits=3)} | {spread(over_plain, digits=2)} "
                    f"| {spread(over_replay, digits=2)} |")
    per_step = [t / steps * 1e9 for t in times["count"]]
    per_step_replay = [t / steps * 1e9 for t in times["replay"]]
    fastest = {key: min(values) for key, values in times.items()}
    return (f"`cpu_bound.py {batches}`: {steps:,} line events; replay {spread(per_step_replay)} ns "
            f"per line, under the debugger (counting) {spread(per_step)} ns per line. "
            f"Fastest round of each (least disturbed by other jobs): replay "
            f"{fastest['replay'] / fastest['plain']:.2f}x plain; counting "
            f"{fastest['count'] / fastest['replay']:.2f}x and with checkpoints "
            f"{fastest['checkpoints'] / fastest['replay']:.2f}x the replay.\n\n"
            + "\n".join(rows))


def reverse_latency(trace, position, repeats):
    with Debugger(trace) as dbg:
        start = time.perf_counter()
        dbg.goto(position)
        goto = time.perf_counter() - start
        latencies = []
        for _ in range(repeats):
            start = time.perf_counter()
            stop = dbg.reverse_step()
            latencies.append(time.perf_counter() - start)
        assert stop.step == position - repeats, stop
        return goto, latencies[0], latencies[1:], len(dbg._checkpoints)


def reverse(workdir, lengths, positions, rounds, repeats, script=None):
    rows = ["| recording | step | goto from the start, ms | first reverse step, ms | "
            "next reverse steps, ms | checkpoints |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for batches in lengths:
        trace = record(workdir, script or WORKLOADS / "cpu_bound.py", batches)
        with Debugger(trace) as dbg:
            dbg.goto(10**15)
            total = dbg.total_steps
        for position in positions:
            if position >= total:
                continue
            gotos, firsts, rest, kept = [], [], [], []
            for _ in range(rounds):
                goto, first, more, checkpoints = reverse_latency(trace, position, repeats)
                gotos.append(goto)
                firsts.append(first)
                rest.extend(more)
                kept.append(checkpoints)
            rows.append(f"| {total:,} lines | {position:,} | {spread(gotos, 1000)} | "
                        f"{spread(firsts, 1000)} | {spread(rest, 1000)} | "
                        f"{statistics.median(kept):.0f} |")
    return "\n".join(rows)


def write_section(text):
    results = BENCH / "results.md"
    current = results.read_text() if results.exists() else "# Retrace benchmark results\n"
    section = "## Debugger\n\n" + text.rstrip() + "\n"
    if "## Debugger" in current:
        current = re.sub(r"## Debugger\n.*?(?=\n## |\Z)", lambda m: section.rstrip("\n"),
                         current, flags=re.S)
        results.write_text(current.rstrip("\n") + "\n")
    else:
        results.write_text(current.rstrip("\n") + "\n\n" + section)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    rounds = 1 if ns.quick else ns.rounds
    lengths = [40] if ns.quick else [800, 4000]
    positions = [10**3, 10**4] if ns.quick else [10**3, 10**5, 10**6]
    repeats = 5 if ns.quick else 10
    with tempfile.TemporaryDirectory(prefix="retrace-bench-") as workdir:
        threaded = Path(workdir) / "threaded.py"
        count = 10 if ns.quick else 800
        threaded.write_text(THREADED.format(workloads=str(WORKLOADS), count=count))
        parts = [
            f"`python bench/debugger.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f} at start; Python {platform.python_version()}. "
            f"Every cell: median (min .. max) over {rounds} rounds"
            + (" (--quick: not numbers to quote)." if ns.quick else "."),
            "### Replay speed under the debugger",
            speed(workdir, 40 if ns.quick else 800, rounds),
            "### Reverse step",
            f"A fresh debugger goes to the step, then steps back {repeats} times "
            f"(first, then the {repeats - 1} others, over all rounds).",
            reverse(workdir, lengths, positions, rounds, repeats),
            "### Reverse step with threads alive (no checkpoints possible)",
            reverse(workdir, [count], positions, rounds, min(repeats, 3), script=threaded),
        ]
    text = "\n\n".join(parts) + "\n"
    print(text)
    if not ns.quick:
        write_section(text)


if __name__ == "__main__":
    main()
