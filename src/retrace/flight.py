"""Flight-recorder mode: RETRACE_FLIGHT=SIZE records into memory and writes
the trace only if the run goes wrong (docs/security.md).

The recording is kept in memory, up to SIZE bytes of compressed chunks, from
the start of the run. It is written to the trace path when the process ends
with an uncaught exception or dies from a fatal signal, or when the program
calls dump(); otherwise it is discarded. A run that outgrows SIZE keeps its
start: the trace is cut there, and replay stops at the cut.
"""
from . import _engine


def _dump():
    from . import _session
    if _engine.mode() != "record" or not _session.header["limits"]["flight"]:
        return None
    return _session.keep_flight("retrace.flight.dump() was called")


# An event: replay returns what the recorded call returned.
_dump_event = _engine.Boundary("retrace.flight.dump", _dump)


def dump():
    """Write this process's flight recording to its file now; recording goes
    on into the file. Returns the trace path, or None when the process is not
    recording in flight mode. A program may call it from its own signal
    handler (`signal.signal(signal.SIGUSR1, lambda *a: retrace.flight.dump())`)."""
    return _dump_event()
