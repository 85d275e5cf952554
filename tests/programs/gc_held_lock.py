"""A finalizer run by the garbage collector wants a module-level lock (like
logging's _removeHandlerRef and logging._lock) that another thread holds
while it sleeps. The recording's finalizer waited for it; in replay the
holder waits for its turn, which the collecting thread holds, so the
finalizer must not wait: replay neither hangs nor diverges.
"""
import gc
import threading
import time

registry_lock = threading.Lock()     # like logging._lock
holding = threading.Event()
finalized = []


class Handler:
    def __init__(self):
        self.me = self

    def __del__(self):
        with registry_lock:
            finalized.append(time.time())


def holder():
    with registry_lock:
        holding.set()
        time.sleep(0.2)
    print("holder released:", time.time(), flush=True)


thread = threading.Thread(target=holder)
thread.start()
holding.wait()
lock = threading.Lock()
gc.collect()
Handler()
gc.set_threshold(max(gc.get_count()[0], 1))    # the next allocation collects
lock.acquire()
lock.release()
gc.set_threshold(700, 10, 10)
print("main goes on:", time.time(), flush=True)
thread.join()
gc.collect()
print("done:", len(finalized), flush=True)
