"""Code the cyclic garbage collector runs: finalizers, weakref callbacks.

The collector starts when allocations cross a threshold, so at moments and in
threads that replay does not share (Retrace's own objects and its one-thread-
at-a-time schedule allocate otherwise). The engine learns from gc.callbacks
when a thread runs a collection; the calls made meanwhile are recorded with
a flag and kept out of the order of the program's events, and in replay they
consume no event and reach nothing outside the process (csrc/boundary.c,
"code the garbage collector runs"). Boundaries say what such a call does in
replay with their `collector` option: locks (_threads.py) are taken only if
free.

sys.unraisablehook, which reports an exception a finalizer let escape, runs
as the collector's code too: what it prints holds addresses
("Exception ignored in: <function C.__del__ at 0x7f...>"), so in replay the
recorded report is written and the replay's own is dropped.
"""
import sys

from . import _engine
from .errors import FinalizerRefused


def _reported(hook):
    def unraisablehook(unraisable):
        _engine.as_collector(hook, unraisable)
    return unraisablehook


def install():
    _engine.watch_collector(FinalizerRefused)
    sys.unraisablehook = _reported(sys.unraisablehook)
