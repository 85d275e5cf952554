"""Finalizers that cross the boundary: they read the clock, print, take a
lock, close a descriptor (fd 100), and raise (CPython reports that through
sys.unraisablehook, on stderr).

    python gc_world.py early     cyclic garbage, collected in replay inside
                                 Retrace's own work (gc_trigger.py), in the
                                 recording at the program's final gc.collect()
    python gc_world.py same      cyclic garbage freed by gc.collect() in both runs;
                                 what the finalizers read is printed afterwards
    python gc_world.py refcount  no cycles: finalizers run when the last
                                 reference goes, in three threads (those of
                                 the main thread print)
    python gc_world.py crash     same, then an uncaught exception (for retrace check)
"""
import gc
import os
import sys
import threading
import time

from gc_trigger import collect_soon

lock = threading.Lock()
stamps = []


class Handle:
    def __init__(self, name, cyclic=True, loud=True):
        self.me = self if cyclic else None
        self.name, self.loud = name, loud
        self.fd = os.dup2(os.open(os.devnull, os.O_RDONLY), 100) if name == "handle" else None

    def __del__(self):
        stamp = time.time()
        with lock:
            stamps.append((self.name, stamp))
        if self.loud:
            print(f"{self.name} finalized: {stamp:.6f}", flush=True)
        if self.fd is not None:
            os.close(self.fd)


class Broken:
    def __init__(self, cyclic=True):
        self.me = self if cyclic else None

    def __del__(self):
        raise ValueError(f"finalizer failed at {time.monotonic():.6f}")


def early():
    gc.collect()
    Handle("handle")
    Broken()
    print("garbage made:", time.time(), flush=True)
    collect_soon(lock)
    print("work:", time.time(), flush=True)
    gc.collect()
    print("done:", time.time(), flush=True)


def same():
    gc.disable()
    Handle("handle")
    Handle("other")
    Broken()
    print("garbage made:", time.time(), flush=True)
    gc.collect()
    print("stamps:", sorted(stamps), flush=True)


def refcount():
    def work(name):
        for i in range(20):
            handle = Handle(f"{name}-{i}", cyclic=False, loud=name == "main")
            time.sleep(0.001)
            del handle
        if name == "main":
            Broken(cyclic=False)

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    work("main")
    for t in threads:
        t.join()
    print("stamps:", len(stamps), sorted(stamps)[-1], flush=True)


def crash():
    same()
    raise RuntimeError("the recorded failure")


{"early": early, "same": same, "refcount": refcount, "crash": crash}[sys.argv[1]]()
