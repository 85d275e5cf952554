"""The replay process under the debugger (docs/debugger.md).

    python -m retrace._debug_replay SOCKET TRACE [RECORDED_DIR=LOCAL_DIR ...]

retrace.debugger starts it with the recorded hash seed. It sets up the
replay as `retrace replay` does, except that the program's output goes to
the debugger (with its place in the output) instead of fd 1 and 2. From the
program's first line on, csrc/stepper.c counts its lines and stops where the
debugger asks. When the program ends, it reports the end: the number of line
events, where the uncaught exception and the last exception were raised,
and whether the replay diverged; then it serves the debugger until it is no
longer needed (csrc/checkpoint.c). Its own stdout and stderr are a log the
debugger reads when something goes wrong.
"""
import json
import os
import sys
import traceback

# _debug_inspect (and what it imports) is imported before the program starts:
# forks of this process use it without importing anything.
from . import _debug_inspect, _engine, _files, _run, _session  # noqa: F401
from .errors import ReplayDivergence, TraceCorrupt

OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def start(trace, maps):
    """Open the replay; returns the target to run."""
    try:
        trace = _run.follow_fork(trace)
        target = _run.locate_program(_session.read_header(trace), maps)
        _engine.debug_send(json.dumps({"ev": "info", "path_map": _session.path_map}))
        _files._output_event = _engine.Boundary("sys.stdout.write", _engine.debug_output,
                                                output=True)
        _session.start_replay(trace)
    except (TraceCorrupt, OSError, _session.ReplayVersionError) as exc:
        _run.fail(str(exc))
    except ReplayDivergence as exc:
        _run.fail(f"the replay diverged before the program started: {exc}")
    return target


def main(argv):
    sock, trace, maps = argv[0], argv[1], argv[2:]
    _engine.debug_connect(sock)
    target = start(trace, maps)
    end = {"ev": "end", "crash": None, "exception": None, "traceback": None,
           "divergence": None, "status": None}

    def crashed(exc):
        with _session.internal():
            end["crash"] = _engine.debug_raise_position(exc)
            end["exception"] = [type(exc).__qualname__, str(exc)]
            end["traceback"] = "".join(traceback.format_exception(exc))

    def finish(status):
        """The run is over: report it, then serve the debugger (never returns)."""
        end["status"] = status
        end.update(_engine.debug_finish())
        end["event"] = _engine.event_index()
        _engine.debug_end(json.dumps(end))

    _session.real_exit = finish      # os._exit in the program ends the run here
    try:
        status, _ = _run.run(target, on_start=lambda: _engine.debug_start(OWN_DIR),
                             on_error=crashed)
        recorded = _engine.end(None)
        if recorded.get("exit_code") not in (None, status):
            end["divergence"] = (f"the program exited with status {status}; "
                                 f"the recorded run exited with {recorded['exit_code']}")
    except ReplayDivergence as exc:
        status, end["divergence"] = None, str(exc)
    if not end["divergence"]:
        with _session.internal():
            _run.flush_io()    # as `retrace replay` does once the run ended
    finish(status)


if __name__ == "__main__":
    main(sys.argv[1:])
