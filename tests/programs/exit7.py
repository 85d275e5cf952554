"""Exit status: nondeterministic output, then sys.exit(7)."""
import os
import sys
import time

print("time:", repr(time.time()))
print("pid:", os.getpid())
print("leaving with status 7 at", time.monotonic_ns(), file=sys.stderr)
sys.exit(7)
print("not reached")
