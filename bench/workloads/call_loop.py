"""Per-call workload: N executions of one intercepted call, for callgrind.

    python call_loop.py OP N PATH

bench/percall.py runs it with N = 0 and N > 0, plainly and recorded, and
takes the difference: the instructions of N calls, without startup.
"""
import os
import sys
import threading
import time


def with_lock(n, path):
    lock = threading.Lock()
    for _ in range(n):
        with lock:
            pass


def rlock_acquire_release(n, path):
    lock = threading.RLock()
    for _ in range(n):
        lock.acquire()
        lock.release()


def time_time(n, path):
    clock = time.time
    for _ in range(n):
        clock()


def os_stat(n, path):
    stat = os.stat
    for _ in range(n):
        stat(path)


# OP -> (the loop, intercepted calls per iteration)
OPS = {
    "with lock": (with_lock, 2),
    "RLock acquire+release": (rlock_acquire_release, 2),
    "time.time()": (time_time, 1),
    "os.stat(path)": (os_stat, 1),
}

if __name__ == "__main__":
    OPS[sys.argv[1]][0](int(sys.argv[2]), sys.argv[3])
