"""A thread started from C (pthread_create through ctypes), not through
_thread: Retrace does not see it start. It crosses the boundary (sleep, lock,
print) like the main thread does."""
import ctypes
import threading
import time

libc = ctypes.CDLL(None)
lock = threading.Lock()
finished = threading.Event()
START = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


def body(arg):
    for i in range(3):
        time.sleep(0.001)
        with lock:
            print(f"c thread: tick {i}", flush=True)
    finished.set()
    return None


start = START(body)
handle = ctypes.c_ulong()
assert libc.pthread_create(ctypes.byref(handle), None, start, None) == 0
for i in range(3):
    time.sleep(0.001)
    with lock:
        print(f"main: tick {i}", flush=True)
finished.wait()      # a boundary call: pthread_join alone would keep the baton
libc.pthread_join(handle, None)
print("main: joined")
