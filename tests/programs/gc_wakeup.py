"""A finalizer run by the garbage collector wakes a worker thread through a
queue.SimpleQueue, as a ThreadPoolExecutor's weakref callback wakes its
workers when the executor is collected. The worker's get took the item of a
put that was no event of the program; replay gives it the item the replay's
collector put, collecting first if it has not.
"""
import gc
import queue
import threading
import time

from gc_trigger import collect_soon

jobs = queue.SimpleQueue()
got = []


class Executor:
    def __init__(self):
        self.me = self

    def __del__(self):
        jobs.put("stop")


def worker():
    got.append((jobs.get(), time.time()))


thread = threading.Thread(target=worker)
thread.start()
gc.collect()
Executor()
collect_soon()
print("main:", time.time(), flush=True)
gc.collect()
thread.join()
print("worker got:", got, flush=True)
print("done:", time.time(), flush=True)
