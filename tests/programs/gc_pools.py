"""Connection pools in reference cycles, freed by the cyclic garbage collector,
while threads work (the shape of urllib3 2.x under a threaded server).

Each pool registers weakref.finalize(pool, drain, queue), as urllib3's
HTTPConnectionPool does: when the collector frees the pool, the finalizer
drains a queue.LifoQueue (its lock and Conditions) and closes the real
sockets it held, then takes a module-level lock (like logging._lock). The
collector runs when the count of allocated objects crosses a threshold, so
at a moment set by allocations, and Retrace's own work allocates otherwise in
replay than in the recording (gc_trigger.py).

    python gc_pools.py [ROUNDS]
"""
import gc
import queue
import socket
import sys
import threading
import time
import weakref

from gc_trigger import collect_soon

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 30

registry_lock = threading.Lock()
closed = []


def drain(connections, name):
    """urllib3's _close_pool_connections, plus a module-level lock."""
    try:
        while True:
            conn = connections.get(block=False)
            conn.close()
    except queue.Empty:
        pass
    with registry_lock:
        closed.append(name)


class Pool:
    def __init__(self, name, connected=False):
        self.me = self                   # a cycle: only the collector frees it
        self.connections = queue.LifoQueue()
        for end in socket.socketpair() if connected else ():
            self.connections.put(end)
        weakref.finalize(self, drain, self.connections, name)


def checkout(lock):
    """A pool becomes garbage, collected soon."""
    Pool(f"{threading.current_thread().name}-{time.monotonic_ns() % 7}", connected=True)
    collect_soon(lock, timeout=5)


def work(name, rounds, lock, results):
    total = 0
    for i in range(rounds):
        checkout(lock)
        for _ in range(20):              # allocations: collections at their own times
            Pool(name)
        with lock:
            total += int(time.time()) % 3 + i
    results[name] = total


def main():
    lock = threading.Lock()
    results = {}
    workers = [threading.Thread(target=work, args=(f"w{n}", ROUNDS, lock, results),
                                name=f"w{n}") for n in range(2)]
    for t in workers:
        t.start()
    work("main", ROUNDS, lock, results)
    for t in workers:
        t.join()
    gc.collect()
    print("results:", sorted(results.items()), flush=True)
    print("pools closed:", len(closed), flush=True)


main()
