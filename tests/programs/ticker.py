"""Runs until killed: one clock reading per line, flushed, every 20 ms.

Used to check that a recording cut short by SIGKILL is still readable."""
import time

for i in range(5000):
    print("tick %d:" % i, repr(time.time()), flush=True)
    time.sleep(0.02)
