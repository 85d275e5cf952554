"""Retrace benchmarks: what recording costs, as ratios against a plain run.

    python bench/run.py [--quick] [--out DIR] [--only SECTION ...] [--dsn URL]

Every workload in bench/workloads runs as its own process, plainly and
recorded (and, for some, replayed), interleaved round by round in this one
invocation so that machine noise hits every mode alike. Each number is given
with its spread over the rounds: median (min .. max). Measured:

  micro      ns added per intercepted call: plain python, the .pth hook
             installed but RETRACE_RECORDING unset, and recording
  trace      bytes per event and the zlib compression of the chunks
  workloads  wall time of a CPU-bound and a boundary-heavy program: plain,
             recorded, replayed
  callgrind  instruction counts of the CPU-bound program, plain vs recorded
             (skipped when valgrind is missing)
  startup    `python -c pass` with the hook installed vs not, and under
             `retrace record`
  web        Flask and Django services under gunicorn and wrk: throughput and
             latency plain, hook installed, recording; trace size per 1,000
             requests; replay of a worker (bench/web.py; skipped without wrk)

Writes DIR/results.json and DIR/results.md (DIR defaults to bench/). With
--only, the sections not named are kept from DIR/results.json; each section
says when, at which commit and under which load average it was measured.
Sections of results.md that other scripts write (bench/debugger.py's) are kept.
--quick uses tiny sizes: a smoke run, not numbers to quote.
"""
import argparse
import dataclasses
import json
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import web
from common import (BENCH, PY, WORKLOADS, chunk_totals, differences, fmt, inspect, machine,
                    make_venvs, progress, ratios, retrace, run, spread, stamp)

sys.path.insert(0, str(WORKLOADS))
from micro import OPS  # noqa: E402


@dataclasses.dataclass
class Config:
    rounds: int            # interleaved rounds of every comparison
    micro_divisor: int     # divides the calls per repeat given in micro.OPS
    micro_repeats: int     # timed loops per micro process
    cpu_batches: int       # size of the CPU-bound workload
    boundary_iterations: int
    callgrind_batches: int
    startup_runs: int
    web_requests: int      # timed requests per web run
    web_warmup: int        # requests before those, untimed
    web_callgrind_requests: int    # requests counted by callgrind, per app and mode


FULL = Config(rounds=7, micro_divisor=1, micro_repeats=10, cpu_batches=4000,
              boundary_iterations=100000, callgrind_batches=200, startup_runs=40,
              web_requests=2000, web_warmup=200, web_callgrind_requests=200)
QUICK = Config(rounds=2, micro_divisor=20, micro_repeats=3, cpu_batches=40,
               boundary_iterations=1000, callgrind_batches=2, startup_runs=5,
               web_requests=30, web_warmup=5, web_callgrind_requests=3)


# -- the measurements ---------------------------------------------------------

def micro(cfg, tmp, hooked_python):
    data = tmp / "data-4k.txt"
    data.write_text(("retrace bench " * 300)[:4095] + "\n")
    trace = tmp / "micro.retrace"
    results = {}
    for op, (_, full_calls) in OPS.items():
        calls = max(1, full_calls // cfg.micro_divisor)
        args = [WORKLOADS / "micro.py", op, calls, cfg.micro_repeats, data]
        runs = {"plain": [], "hooked": [], "record": []}
        for _ in range(cfg.rounds):
            for mode, cmd in (("plain", [PY, *args]), ("hooked", [hooked_python, *args]),
                              ("record", retrace("record", "-o", trace, *args))):
                runs[mode].append(json.loads(run(cmd)[0]))
        plain, hooked, recorded = ([r["min_ns"] for r in runs[mode]]
                                   for mode in ("plain", "hooked", "record"))
        info = inspect(trace)
        stored, raw = chunk_totals(trace)
        results[op] = {
            "calls_per_run": calls * cfg.micro_repeats,
            "plain_ns": spread(plain),
            "record_ns": spread(recorded),
            "plain_median_ns": spread([r["median_ns"] for r in runs["plain"]]),
            "record_median_ns": spread([r["median_ns"] for r in runs["record"]]),
            "hook_unset_added_ns": differences(plain, hooked),
            "record_added_ns": differences(plain, recorded),
            "record_ratio": ratios(plain, recorded),
            "events_per_call": info["event_total"] / (calls * cfg.micro_repeats),
            "trace_bytes": info["size"],
            "stored_bytes_per_event": stored / info["event_total"],
            "raw_bytes_per_event": raw / info["event_total"],
            "compression": raw / stored,
        }
        progress(f"  {op}: {results[op]['record_added_ns']['median']:+.0f} ns/call recording")
    return results


def workload(cfg, tmp, script, size):
    """Plain, recorded and replayed runs of one workload, interleaved."""
    trace = tmp / f"{script}.retrace"
    cmd = [WORKLOADS / f"{script}.py", size]
    wall = {"plain": [], "record": [], "replay": []}
    inner = {"plain": [], "record": [], "replay": []}
    for _ in range(cfg.rounds):
        for mode, full_cmd in (("plain", [PY, *cmd]),
                               ("record", retrace("record", "-o", trace, *cmd)),
                               ("replay", retrace("replay", trace))):
            out, _, seconds = run(full_cmd)
            wall[mode].append(seconds)
            inner[mode].append(json.loads(out)["elapsed_ns"] / 1e9)
    result = {"size": size, "events": inspect(trace)["event_total"]}
    for kind, times in (("process", wall), ("in_script", inner)):
        result[kind] = {
            **{f"{mode}_s": spread(values) for mode, values in times.items()},
            "record_ratio": ratios(times["plain"], times["record"]),
            "replay_ratio": ratios(times["record"], times["replay"]),
        }
    progress(f"  {script}: record/plain {result['process']['record_ratio']['median']:.3f}, "
             f"replay/record {result['process']['replay_ratio']['median']:.3f}")
    return result


def instructions(cmd):
    """Instructions executed, by callgrind, summed over the processes that
    reached exit (for `retrace record`: the process it execs)."""
    _, err, _ = run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                     "--callgrind-out-file=/dev/null", *cmd])
    return sum(int(n) for n in re.findall(r"Collected : (\d+)", err))


def callgrind(cfg, tmp):
    trace = tmp / "callgrind.retrace"
    counts = {}
    for batches in (0, cfg.callgrind_batches):
        cmd = [WORKLOADS / "cpu_bound.py", batches]
        counts["plain", batches] = instructions([PY, *cmd])
        counts["record", batches] = instructions(retrace("record", "-o", trace, *cmd))
    n = cfg.callgrind_batches
    work = {mode: counts[mode, n] - counts[mode, 0] for mode in ("plain", "record")}
    result = {
        "batches": n,
        "plain_instructions": counts["plain", n],
        "record_instructions": counts["record", n],
        "total_ratio": counts["record", n] / counts["plain", n],
        "plain_workload_instructions": work["plain"],
        "record_workload_instructions": work["record"],
        "workload_ratio": work["record"] / work["plain"],
        "plain_startup_instructions": counts["plain", 0],
        "record_startup_instructions": counts["record", 0],
    }
    progress(f"  callgrind: workload instructions x{result['workload_ratio']:.4f}")
    return result


def startup(cfg, tmp, pythons):
    trace = tmp / "startup.retrace"
    commands = {"not_installed": [pythons["bare"], "-c", "pass"],
                "hook_unset": [pythons["hooked"], "-c", "pass"],
                "record": retrace("record", "-o", trace, "-c", "pass")}
    times = {name: [] for name in commands}
    for _ in range(cfg.startup_runs):
        for name, cmd in commands.items():
            times[name].append(run(cmd)[2] * 1e3)
    result = {f"{name}_ms": spread(values) for name, values in times.items()}
    result["hook_unset_added_ms"] = differences(times["not_installed"], times["hook_unset"])
    result["record_added_ms"] = differences(times["not_installed"], times["record"])
    # Wall time cannot resolve a fraction of a millisecond on a busy machine.
    result["instructions"] = {name: instructions(commands[name])
                              for name in ("not_installed", "hook_unset")
                              } if shutil.which("valgrind") else None
    progress(f"  startup: hook unset {result['hook_unset_added_ms']['median']:+.2f} ms")
    return result


# -- the report ----------------------------------------------------------------

def render_micro(results, cfg):
    lines = [
        f"Each process times {cfg['micro_repeats']} loops of the call with the real clock "
        "and reports its fastest loop; *added* is that minus the plain run's of the "
        "same round. *hook unset*: `retrace install` done, RETRACE_RECORDING unset.", "",
        "| call | plain ns | hook unset, added ns | recording, added ns | recording / plain "
        "| events per call | stored B/event | raw B/event | compression |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op, r in results.items():
        lines.append(
            f"| `{op}` | {fmt(r['plain_ns'])} | {fmt(r['hook_unset_added_ns'])} "
            f"| {fmt(r['record_added_ns'])} | {fmt(r['record_ratio'], 2)} "
            f"| {r['events_per_call']:.2f} | {r['stored_bytes_per_event']:.1f} "
            f"| {r['raw_bytes_per_event']:.1f} | {r['compression']:.1f}x |")
    return lines + [
        "", "Bytes per event: chunk payload bytes (stored: as written, zlib level 1; raw: "
        "before compression) over all events of the trace, including the few every "
        "recording makes at startup. The socket row is one `sendall` of 4 KB and one "
        "`recv(4096)` on a TCP connection over 127.0.0.1; the sqlite3 row one `execute` of a "
        "point query on an in-memory table and its `fetchone`: each a pair of intercepted "
        "calls (see *events per call*). bench/db.py measures the database drivers further."]


def render_workloads(results, cfg):
    lines = [
        "*process*: wall time of the whole command (`retrace record` and `retrace replay` "
        "exec a second interpreter); *in script*: the workload's own elapsed time, read "
        "from the real clock.", "",
        "| workload | events | plain s | record / plain, process | record / plain, in script "
        "| replay / record, process | replay / record, in script |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} ({r['size']}) | {r['events']} | {fmt(r['process']['plain_s'], 3)} "
            f"| {fmt(r['process']['record_ratio'], 3)} | {fmt(r['in_script']['record_ratio'], 3)} "
            f"| {fmt(r['process']['replay_ratio'], 3)} "
            f"| {fmt(r['in_script']['replay_ratio'], 3)} |")
    return lines


def render_callgrind(cg, cfg):
    if cg is None:
        return ["Skipped: valgrind is not installed."]
    return [
        f"`cpu_bound.py {cg['batches']}` under `valgrind --tool=callgrind`, once plainly "
        "and once recorded; *workload* subtracts the same runs with 0 batches "
        "(interpreter startup and imports). For `retrace record` only the process it "
        "execs is counted.", "",
        "| | plain | recorded | recorded / plain |", "| --- | ---: | ---: | ---: |",
        f"| workload | {cg['plain_workload_instructions']:,} "
        f"| {cg['record_workload_instructions']:,} | {cg['workload_ratio']:.4f} |",
        f"| whole run | {cg['plain_instructions']:,} | {cg['record_instructions']:,} "
        f"| {cg['total_ratio']:.4f} |",
        f"| startup (0 batches) | {cg['plain_startup_instructions']:,} "
        f"| {cg['record_startup_instructions']:,} "
        f"| {cg['record_startup_instructions'] / cg['plain_startup_instructions']:.2f} |",
    ]


def render_startup(s, cfg):
    return [
        f"{cfg['startup_runs']} runs of each, interleaved, in two throwaway venvs "
        "identical but for the hook; *added* is per interleaved pair.", "",
        "| | ms | added ms |", "| --- | ---: | ---: |",
        f"| hook not installed | {fmt(s['not_installed_ms'], 1)} | |",
        f"| hook installed, RETRACE_RECORDING unset | {fmt(s['hook_unset_ms'], 1)} "
        f"| {fmt(s['hook_unset_added_ms'], 2)} |",
        f"| `retrace record -o T -c pass` | {fmt(s['record_ms'], 1)} "
        f"| {fmt(s['record_added_ms'], 1)} |",
    ] + ([] if s["instructions"] is None else [
        "", "Instructions (callgrind, one run each): hook not installed "
        f"{s['instructions']['not_installed']:,}, hook installed and unset "
        f"{s['instructions']['hook_unset']:,} "
        f"({s['instructions']['hook_unset'] / s['instructions']['not_installed'] - 1:+.2%})."])


SECTIONS = {
    "micro": ("Micro: cost per intercepted call", render_micro),
    "workloads": ("Workloads: recording and replay", render_workloads),
    "callgrind": ("Callgrind: instructions, CPU-bound workload", render_callgrind),
    "startup": ("Startup: `python -c pass`", render_startup),
    "web": ("Web: Flask and Django under gunicorn", web.render),
}


def render(results):
    m, stamps = results["machine"], results["stamps"]
    quick = any(stamps[name]["quick"] for name in SECTIONS if name in results)
    lines = [
        "# Retrace benchmark results", "",
        f"{'QUICK RUN (smoke sizes, not numbers to quote). ' if quick else ''}"
        f"`python bench/run.py` on {m['cpu']}, {m['cpus']} CPUs; {m['platform']}; "
        f"Python {m['python']}.", "",
        "Every cell is median (min .. max) over the interleaved rounds of its section, "
        "each round running every mode once.",
    ]
    for name, (title, render_section) in SECTIONS.items():
        if name not in results:
            continue
        s = stamps[name]
        lines += ["", f"## {title}", "",
                  f"Measured {s['date']}, commit {s['commit']}, load average "
                  f"{s['load_average']:.2f} at the start; {s['config']['rounds']} rounds"
                  f"{' (quick sizes)' if s['quick'] else ''}.", ""]
        lines += render_section(results[name], s["config"])
    return "\n".join(lines) + "\n"


def other_sections(path):
    """The sections of an existing results.md that other scripts write
    (bench/debugger.py's "## Debugger"), to keep when rewriting it."""
    if not path.exists():
        return ""
    ours = {f"## {title}" for title, _ in SECTIONS.values()}
    parts = re.split(r"(?m)^(?=## )", path.read_text())[1:]
    return "".join("\n" + part.rstrip("\n") + "\n" for part in parts
                   if part.splitlines()[0] not in ours)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=BENCH, help="where to write results.*")
    parser.add_argument("--only", action="append", choices=list(SECTIONS),
                        help="measure only this section (repeatable); the others are kept "
                             "from DIR/results.json")
    parser.add_argument("--dsn", help="web: this PostgreSQL server (postgresql://...) "
                                      "instead of a throwaway cluster")
    args = parser.parse_args()
    # SIGTERM stops the run like Ctrl-C: the servers and the cluster it started stop too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cfg = QUICK if args.quick else FULL
    sections = args.only or list(SECTIONS)
    previous = args.out / "results.json"
    results = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    results.update(machine=machine(), config=dataclasses.asdict(cfg))
    results.setdefault("stamps", {})
    with tempfile.TemporaryDirectory(prefix="retrace-bench-") as tmp:
        tmp = Path(tmp)
        pythons = make_venvs(tmp) if {"micro", "startup"} & set(sections) else None
        measures = {
            "micro": lambda: micro(cfg, tmp, pythons["hooked"]),
            "workloads": lambda: {
                "cpu_bound": workload(cfg, tmp, "cpu_bound", cfg.cpu_batches),
                "boundary_heavy": workload(cfg, tmp, "boundary_heavy",
                                           cfg.boundary_iterations),
            },
            "callgrind": lambda: callgrind(cfg, tmp) if shutil.which("valgrind") else None,
            "startup": lambda: startup(cfg, tmp, pythons),
            "web": lambda: web.measure(cfg, tmp, args.dsn),
        }
        for name in sections:
            progress(name)
            results["stamps"][name] = dict(stamp(), quick=args.quick,
                                           config=dataclasses.asdict(cfg))
            results[name] = measures[name]()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = args.out / "results.md"
    report.write_text(render(results) + other_sections(report))
    progress(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
