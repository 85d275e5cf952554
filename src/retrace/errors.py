"""Exceptions that Retrace raises to its users."""


class RetraceError(Exception):
    """Base class of Retrace's own errors."""


class TraceCorrupt(RetraceError):
    """The trace file is damaged, truncated or not a Retrace trace."""


class ReplayDivergence(BaseException):
    """Replay made a call the recording does not hold at this point.

    It derives from BaseException so that a program's `except Exception`
    cannot swallow it and carry on with wrong data.
    """


class FinalizerRefused(RetraceError, OSError):
    """In replay, code that the garbage collector runs (a finalizer, a weakref
    callback) made a call that replay does not make for it: the recording
    has no such call by a finalizer of that thread to answer it with.

    The collector runs at other moments in replay than in the recording, so a
    finalizer's calls cannot follow the recorded order. Replay never lets them
    reach the world; an OSError, so that cleanup code which tolerates a failed
    close or read goes on. Its report through sys.unraisablehook is not
    printed in replay (the recorded finalizers' output is, at its place).
    """
