"""Instructions that recording adds per intercepted call, by callgrind.

    python bench/percall.py [--calls N] [--profile] [OP ...]

Each OP of bench/workloads/call_loop.py runs under callgrind four times:
plainly and under `retrace record`, with 0 and with N loop iterations. The
difference between the two runs of a mode is the loop's instructions, so
startup and imports drop out. Reported per intercepted call: the main
thread's instructions plain and recorded, and what recording adds; the
other threads' (Retrace's trace writer: under valgrind it writes many more,
smaller chunks than at full speed, an upper bound) separately.

Deterministic to a few instructions per call, where wall time on a shared
machine is not. --profile prints, per call, where the recorded main thread's
instructions went beyond the plain run's (callgrind_annotate's functions, by
their own instructions).
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PY, WORKLOADS, retrace, run
sys.path.insert(0, str(WORKLOADS))
from call_loop import OPS  # noqa: E402

SCRIPT = WORKLOADS / "call_loop.py"


def per_thread(cmd, out_dir):
    """Instructions of the process cmd runs (for `retrace record`: the
    process it execs), by thread: {thread number: instructions}."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    run(["valgrind", "--tool=callgrind", "--trace-children=yes", "--separate-threads=yes",
         f"--callgrind-out-file={out_dir}/callgrind.out.%p", *cmd])
    counts = {}
    for f in out_dir.glob("callgrind.out.*-*"):
        totals = re.search(r"^(?:totals|summary): (\d+)", f.read_text(errors="replace"), re.M)
        counts[int(f.name.rsplit("-", 1)[1])] = int(totals.group(1))
    return counts


def functions(callgrind_out):
    """{function: its own instructions} of one callgrind file."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", callgrind_out],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*?)(?: \[.*\])?$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).rsplit("/", 1)[-1]
            found[name] = found.get(name, 0) + int(m.group(1).replace(",", ""))
    return found


def profile(runs, per_call, top=25):
    """The functions whose instructions grew most per call from the plain run
    to the recorded one (main thread, loop only)."""
    def loop(mode):
        without, loop_run = (functions(next(runs[mode, n].glob("callgrind.out.*-01")))
                             for n in sorted(k[1] for k in runs if k[0] == mode))
        return {f: (loop_run.get(f, 0) - without.get(f, 0)) / per_call
                for f in set(without) | set(loop_run)}
    plain, record = loop("plain"), loop("record")
    added = {f: record.get(f, 0) - plain.get(f, 0) for f in set(plain) | set(record)}
    for f, n in sorted(added.items(), key=lambda kv: -abs(kv[1]))[:top]:
        print(f"    {n:+8.1f}  {f}")


def measure(op, calls, tmp, show_profile):
    path = tmp / "stat-me"
    path.write_text("x")
    per_call = OPS[op][1] * calls
    result, runs = {}, {}
    for mode in ("plain", "record"):
        counts = {}
        for n in (0, calls):
            args = [SCRIPT, op, n, path]
            cmd = [PY, *args] if mode == "plain" else retrace("record", "-o", tmp / "t.retrace", *args)
            runs[mode, n] = tmp / f"cg-{mode}-{n}"
            counts[n] = per_thread(cmd, runs[mode, n])
        main = counts[calls].get(1, 0) - counts[0].get(1, 0)
        others = sum(v for k, v in counts[calls].items() if k != 1) - \
            sum(v for k, v in counts[0].items() if k != 1)
        result[mode] = {"main": main / per_call, "others": others / per_call}
    if show_profile:
        profile(runs, per_call)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="loop iterations (default 20000)")
    parser.add_argument("--profile", action="store_true",
                        help="where the added instructions go, by function")
    parser.add_argument("ops", nargs="*", default=list(OPS), metavar="OP")
    opts = parser.parse_args()
    print(f"instructions per intercepted call, {opts.calls:,} iterations (callgrind)")
    print("| call | plain | recorded | added (main thread) | writer thread |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for op in opts.ops:
            r = measure(op, opts.calls, Path(tmp), opts.profile)
            added = r["record"]["main"] - r["plain"]["main"]
            print(f"| `{op}` | {r['plain']['main']:,.0f} | {r['record']['main']:,.0f} | "
                  f"+{added:,.0f} | +{r['record']['others'] - r['plain']['others']:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
