"""Reads the clock and random bytes many times, in batches a little longer
than the trace's flush interval apart, then prints a digest of what it saw:
enough events, in several chunks, to fill a small disk while recording."""
import hashlib
import os
import sys
import time

batches, per_batch = int(sys.argv[1]), int(sys.argv[2])
digest = hashlib.sha256()
for batch in range(batches):
    for i in range(per_batch):
        digest.update(repr(time.time()).encode())
        digest.update(os.urandom(64))
    time.sleep(0.15)
print("events:", batches * per_batch)
print("digest:", digest.hexdigest())
