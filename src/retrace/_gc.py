"""Code the cyclic garbage collector runs: finalizers, weakref callbacks.

The collector starts when allocations cross a threshold, so at moments and in
threads that replay does not share (Retrace's own objects and its one-thread-
at-a-time schedule allocate otherwise). The engine learns from gc.callbacks
when a thread runs a collection; the calls made meanwhile are recorded with
a flag and kept out of the order of the program's events, and in replay they
consume no event and reach nothing outside the process (csrc/boundary.c,
"code the garbage collector runs"). Boundaries say what such a call does in
replay with their `collector` option: locks (_threads.py) are taken only if
free, code files (_files.py) are read live.

Two more kinds of code run as the collector's:

- sys.unraisablehook, which reports an exception a finalizer let escape:
  what it prints holds addresses ("Exception ignored in: <function
  C.__del__ at 0x7f...>"), so replay writes the recorded report and drops
  its own;
- weakref.finalize callbacks, also when the object dies by reference
  counting or at exit: at exit the finalizers of the objects still alive run,
  and which are still alive depends on when the collector ran (urllib3's
  pools). A finalizer the program calls itself, f(), is the program's code.
"""
import sys
import weakref

from . import _engine
from .errors import FinalizerRefused


def _reported(hook):
    def unraisablehook(unraisable):
        _engine.as_collector(hook, unraisable)
    return unraisablehook


def _finalizers_as_collector():
    finalize = weakref.finalize
    call, exitfunc = finalize.__call__, finalize._exitfunc

    def __call__(self, ref=None):
        if ref is None:            # f() by the program (or by _exitfunc, below)
            return call(self)
        return _engine.as_collector(call, self)

    finalize.__call__ = __call__
    finalize._exitfunc = classmethod(lambda cls: _engine.as_collector(exitfunc))


def install():
    _engine.watch_collector(FinalizerRefused)
    sys.unraisablehook = _reported(sys.unraisablehook)
    _finalizers_as_collector()
