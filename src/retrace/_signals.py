"""Python signal handlers at the boundary: where they ran, and what they did.

A signal arrives at a moment replay cannot see, and its handler runs in the
main thread between two bytecodes or inside a blocking call (an EINTR retry
in select, sleep, a lock wait).  The handler is the program's code: it sets a
flag (gunicorn's workers), queues the signal (gunicorn's master) or raises
(KeyboardInterrupt), and what it does changes what the program does next.

Every Python-level handler is installed behind `_on_signal`.  Recording: it
writes a `signal.handler` event (the signal number, and whether the handler
interrupted an external call), then runs the handler with the boundary on, so
the handler's own calls are recorded after it.  A handler that would run
between two bytecodes waits instead for the main thread's next external call
(csrc/boundary.c, g_signals_deferred) and runs first thing in it, which is
where replay can run it too; a program that makes no external call for 50 ms
gets it between two bytecodes after all, at a place replay does not share
(its replay may then diverge, and says so).  Replay: when the main thread
reaches its next boundary call and the next record is that event, the engine
calls `_deliver` first (csrc/boundary.c, replay_signals), which runs the same
handler there; its calls replay in turn.  A handler that raised inside a
recorded call ended the call with its exception: the engine raises it from
that call.  Signals sent to a replaying process run no handler (SIGINT still
interrupts it).

`signal.signal` and `signal.getsignal` keep showing the program's handlers.
"""
import os
import signal
import sys

import _signal

from . import _engine
from .errors import ReplayDivergence

# signal number -> the handler the program installed (a callable)
handlers = {}

_event = _engine.Boundary("signal.handler", lambda signum, inside: (signum, inside))


# Recording: signals whose handlers wait for the main thread's next external call.
_deferred = []
# True while _deliver runs a handler.
_delivering = False


def _on_signal(signum, frame):
    try:
        return _dispatch(signum, frame)
    except BaseException as exc:
        _hide_own_frames(exc)
        raise   # a bare raise adds no traceback entry for this frame


def _hide_own_frames(exc):
    """A handler's exception shows the program's frames and the handler's, as
    without Retrace: not the wrappers of this module it passed through."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    exc.__traceback__ = tb


def _dispatch(signum, frame):
    mode = _engine.mode()
    if mode == "replay" and not _delivering:
        # a signal sent to the replaying process itself
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        return None
    if mode == "record" and signum in handlers and not _delivering:
        depth = _engine.swap_disabled(0)
        if depth == 0:
            if _engine.take_overdue(signum):
                # no external call came in time: the waiting handlers run here
                while _deferred:
                    _run(_next_waiting(), frame)
                return None
            _deferred.append(signum)
            _engine.defer_signal(signum)
            return None
        _engine.swap_disabled(depth)
    return _run(signum, frame)


def _next_waiting():
    """The oldest signal whose handler waits; the others keep waiting."""
    signum = _deferred.pop(0)
    if _deferred:
        _engine.defer_signal(_deferred[0])
    return signum


def _forget_deferred():
    _deferred.clear()
    _engine.forget_signals()


def _run(signum, frame):
    handler = handlers.get(signum)
    depth = collector = None
    if _engine.mode() == "record" and handler is not None:
        depth = _engine.swap_disabled(0)
        collector = _engine.swap_program_code(True)   # even inside a collection (_gc.py)
        _event(signum, depth > 0)
    try:
        # The one line that runs the program's handler, in recording and in
        # replay (through _on_signal).
        return handler(signum, frame) if handler else None
    finally:
        if depth is not None:
            _engine.swap_program_code(collector)
            _engine.swap_disabled(depth)


def _deliver():
    """Run one signal handler first thing in an external call (the engine
    calls this): in replay the handler recorded at the pending event, in
    recording the oldest deferred one. Returns None, or the exception the handler
    raised if it ran inside the call being replayed (the engine raises it
    from that call)."""
    global _delivering
    if _engine.mode() == "replay":
        signum, inside = _event(None, None)
        if signum not in handlers:
            return None
    else:
        signum, inside = _next_waiting(), False
    _delivering = True
    try:
        _on_signal(signum, sys._getframe(1))
    except ReplayDivergence:
        raise
    except BaseException as exc:
        _hide_own_frames(exc)
        if inside:
            return exc     # raised from the call, as in the recording
        raise
    finally:
        _delivering = False
    return None


def install(replaced):
    """Put every Python-level handler, now and later, behind _on_signal.
    Runs in the main thread (only it may set handlers)."""
    real_signal, real_getsignal = _signal.signal, _signal.getsignal

    def signal_(signalnum, handler):
        previous = real_signal(signalnum, _on_signal if callable(handler) else handler)
        if previous is _on_signal:
            previous = handlers.pop(int(signalnum), None)
        if callable(handler):
            handlers[int(signalnum)] = handler
        return previous

    def getsignal(signalnum):
        current = real_getsignal(signalnum)
        return handlers.get(int(signalnum)) if current is _on_signal else current

    for signum in sorted(signal.valid_signals()):
        handler = real_getsignal(signum)
        if callable(handler) and handler is not _on_signal:
            handlers[signum] = handler
            real_signal(signum, _on_signal)
    _engine.set_signal_delivery(_event, _deliver)
    os.register_at_fork(after_in_child=_forget_deferred)   # the child was not signalled
    for orig, replacement in ((real_signal, signal_), (real_getsignal, getsignal)):
        replaced[id(orig)] = (orig, replacement)
    _signal.signal, _signal.getsignal = signal_, getsignal
