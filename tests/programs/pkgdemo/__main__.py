import os
import sys
import time

from . import util

print("argv[1:]:", sys.argv[1:])
print("argv[0] name:", os.path.basename(sys.argv[0]))
print("module:", __name__, __package__)
print("time:", repr(time.time()))
print("pid:", os.getpid())
print("token:", util.token())
