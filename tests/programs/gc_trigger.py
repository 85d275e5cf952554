"""Makes the garbage collector run at a place where replay and recording
differ, without configuring them differently: Retrace's own work allocates
otherwise in replay, which is what moves real collections.

collect_soon(lock) sets the threshold so that the next allocation collects,
then acquires and releases lock (a new one by default). The replay of an acquire allocates (its
replay function's arguments), its recording does not: replay collects
inside Retrace's replay of the acquire, the recording at the program's next
allocation after it (none of the programs' next statements allocates).
"""
import gc
import threading


def collect_soon(lock=None, timeout=-1):
    lock = lock or threading.Lock()
    saved = gc.get_threshold()
    gc.set_threshold(max(gc.get_count()[0], 1))
    lock.acquire(True, timeout)      # no allocation here either: no **kwargs
    lock.release()
    gc.set_threshold(saved[0], saved[1], saved[2])   # no allocation: *saved would collect
