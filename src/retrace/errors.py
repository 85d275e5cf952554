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
