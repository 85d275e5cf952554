"""Prints random values, then leaves with os._exit (no atexit, no flush of
buffered stdio: it flushes stdout itself first)."""
import atexit
import os
import random
import sys

atexit.register(print, "atexit must not run")
print("value:", random.random(), os.urandom(4).hex())
sys.stdout.flush()
os._exit(5)
