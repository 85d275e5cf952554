"""A finalizer run by the garbage collector wants a module-level lock (like
logging's _removeHandlerRef and logging._lock) that another thread holds
while it sleeps. The recording's finalizer waited for it; in replay the
holder waits for its turn, which the collecting thread holds, so the
finalizer must not wait: replay neither hangs nor diverges.
"""
import gc
import threading
import time

from gc_trigger import collect_soon

registry_lock = threading.Lock()     # like logging._lock
holding = threading.Event()
finalized = []
released = []


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
    released.append(time.time())


thread = threading.Thread(target=holder)
thread.start()
holding.wait()
gc.collect()
Handler()
collect_soon()
print("main goes on:", time.time(), flush=True)
thread.join()
print("holder released:", released[0], flush=True)
gc.collect()
print("done:", time.time(), flush=True)     # what the finalizer did differs in replay
