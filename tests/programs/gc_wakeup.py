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

jobs = queue.SimpleQueue()


class Executor:
    def __init__(self):
        self.me = self

    def __del__(self):
        jobs.put("stop")


def worker():
    item = jobs.get()
    print(f"worker got {item}:", time.time(), flush=True)


thread = threading.Thread(target=worker)
thread.start()
lock = threading.Lock()
gc.collect()
Executor()
gc.set_threshold(max(gc.get_count()[0], 1))    # the next allocation collects
lock.acquire()
lock.release()
gc.set_threshold(700, 10, 10)
print("main:", time.time(), flush=True)
gc.collect()
thread.join()
print("done:", time.time(), flush=True)
