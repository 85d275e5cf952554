"""CPU-bound workload: JSON encode/decode, regular expressions and dict work,
with one clock read per batch (few boundary calls).

    python cpu_bound.py BATCHES

Prints one JSON line: the batches' own elapsed time read from the real clock
(never recorded, so it also works in replay) and a checksum of the work.
"""
import json
import os
import re
import sys
import time

WORD = re.compile(r"[a-z]+\d*")


def batch(seed):
    rows = [{"id": seed * 100 + n, "name": f"user{n % 37}", "tags": ["alpha", "beta", str(n % 7)],
             "score": n * 0.25, "active": n % 3 == 0} for n in range(100)]
    decoded = json.loads(json.dumps(rows))
    counts = {}
    for word in WORD.findall(json.dumps(decoded)):
        counts[word] = counts.get(word, 0) + 1
    by_name = {}
    for row in decoded:
        by_name.setdefault(row["name"], []).append(row["score"])
    return len(counts) + sum(len(v) for v in by_name.values())


def main(batches):
    real_clock = getattr(time.perf_counter_ns, "__wrapped__", time.perf_counter_ns)
    start = real_clock()
    checksum = 0
    for seed in range(batches):
        checksum += batch(seed) + int(time.time()) % 2
    # Written with the real os.write: the timings differ in replay by design,
    # and Retrace checks what goes through sys.stdout against the recording.
    write = getattr(os.write, "__wrapped__", os.write)
    write(1, (json.dumps({"elapsed_ns": real_clock() - start, "checksum": checksum}) + "\n").encode())


if __name__ == "__main__":
    main(int(sys.argv[1]))
