"""Crash: nondeterministic output, then an uncaught exception whose
traceback spans several frames and a chained exception."""
import os
import random
import sys
import time


def load(key):
    table = {}
    try:
        return table[key]
    except KeyError:
        return parse(random.randint(10**6, 10**9))


def parse(value):
    return validate(value)


def validate(value):
    if value > 0:
        check_limit(value)
    return value


def check_limit(value):
    raise ValueError(f"value {value!r} over the limit at {time.time()!r}")


print("pid:", os.getpid())
print("token:", os.urandom(8).hex())
print("about to fail", file=sys.stderr)
load("missing-" + os.urandom(4).hex())
print("not reached")
