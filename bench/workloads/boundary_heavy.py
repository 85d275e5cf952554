"""Boundary-heavy workload: time.time() and os.stat() in a loop, little else.

    python boundary_heavy.py ITERATIONS

Prints one JSON line: the loop's own elapsed time read from the real clock
(never recorded, so it also works in replay) and a checksum of the results.
"""
import json
import os
import sys
import time


def main(iterations):
    real_clock = getattr(time.perf_counter_ns, "__wrapped__", time.perf_counter_ns)
    start = real_clock()
    checksum = 0
    for _ in range(iterations):
        checksum += int(time.time()) % 2 + os.stat(__file__).st_size
    # Written with the real os.write: the timings differ in replay by design,
    # and Retrace checks what goes through sys.stdout against the recording.
    write = getattr(os.write, "__wrapped__", os.write)
    write(1, (json.dumps({"elapsed_ns": real_clock() - start, "checksum": checksum}) + "\n").encode())


if __name__ == "__main__":
    main(int(sys.argv[1]))
