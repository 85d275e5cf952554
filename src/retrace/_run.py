"""The process that records or replays a program: `python -m retrace._run`.

The CLI execs this module in a fresh interpreter with PYTHONHASHSEED set, so
that recording and replay start from the same interpreter state: the same
hash seed and nearly the same loaded modules (a module imported by Retrace
before the program starts is not imported again by the program, so what its
import would have done must not differ between recording and replay).

    python -m retrace._run record TRACE script|module|command TARGET [ARGS...]
    python -m retrace._run replay TRACE [RECORDED_DIR=LOCAL_DIR ...]
    python -m retrace._run check TRACE [RECORDED_DIR=LOCAL_DIR ...]

Exit status: the program's own, 2 for an unusable trace, 3 for a divergence
(check: see check()).
"""
import os
import signal
import sys

from . import _engine, _fork, _session, _settings
from .errors import ReplayDivergence, TraceCorrupt

EXIT_ERROR = 2
EXIT_DIVERGED = _session.EXIT_DIVERGED


def fail(message, status=EXIT_ERROR):
    _engine.suspend()      # the message is Retrace's, not the program's output
    _session.say(f"retrace: error: {message}\n")
    _session.real_exit(status)


def load_target(target):
    """The code object and __main__ globals for a recorded target."""
    import types
    kind = target["kind"]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    if kind == "script":
        path = target["path"]
        with _session.internal(), open(path, "rb") as f:
            source = f.read()
        main.__file__ = path
        main.__cached__ = None
        code = compile(source, path, "exec", dont_inherit=True)
        sys.path[0] = os.path.dirname(path)
    elif kind == "command":
        code = compile(target["code"], "<string>", "exec", dont_inherit=True)
        sys.path[0] = ""
    else:
        import runpy
        sys.path[0] = target.get("path0") or os.getcwd()
        # Importing the package runs its __init__: that is the program's code.
        _, spec, code = runpy._get_module_details(target["module"])
        sys.argv[0] = spec.origin
        main.__file__ = spec.origin
        main.__cached__ = spec.cached
        main.__loader__ = spec.loader
        main.__package__ = spec.parent
        main.__spec__ = spec
    sys.modules["__main__"] = main
    return code, main.__dict__


def exit_status(exc):
    """The status Python itself gives for an uncaught SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with _session.internal():
        sys.stderr.write(f"{code}\n")
    return 1


def flush_io():
    """What python does after running a script or -c code, before reporting
    how it ended: flush stderr, then stdout (their writes are events)."""
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except Exception:
            pass


def run(target, on_start=None, on_error=None):
    """Run the program as python would; returns (exit status, the uncaught
    exception described by _session.describe_exception, or None).

    The debugger's hooks: on_start() just before the program's first line,
    on_error(exc) with the uncaught exception before it is printed."""
    import atexit
    status, uncaught, error = 0, None, None
    try:
        code, namespace = load_target(target)
        if on_start:
            on_start()
        exec(code, namespace)
    except BaseException as exc:
        error = exc
    crash_index = _engine.event_index()
    if target["kind"] != "module":      # runpy's -m does not flush here
        flush_io()
    if isinstance(error, SystemExit):
        status = exit_status(error)
    elif isinstance(error, (ReplayDivergence, TraceCorrupt)):
        raise error     # the replay's failure, not the program's
    elif error is not None:
        tb = error.__traceback__
        error.__traceback__ = tb.tb_next if tb is not None else None   # hide this frame
        if on_error:
            on_error(error)
        with _session.internal():
            uncaught = _session.describe_exception(error)
            sys.excepthook(type(error), error, error.__traceback__)
        # An exception raised again later (the pytest plugin's child raises a
        # test's failure after pytest finished) says where it happened.
        uncaught["crash_index"] = getattr(error, "_retrace_crash_index", crash_index)
        # CPython ends an uncaught KeyboardInterrupt by SIGINT, for the parent to see
        status = -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1
    # Then, as at interpreter exit: join threads, run atexit callbacks. They
    # belong to the run: they may cross the boundary.
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    atexit._run_exitfuncs()
    return status, uncaught


def record(trace, kind, target_arg, args):
    seed = int(os.environ.pop("PYTHONHASHSEED"))
    target = {"kind": kind}
    if kind == "script":
        target["path"] = os.path.abspath(target_arg)
        sys.argv[:] = [target_arg, *args]
    elif kind == "module":
        target["module"] = target_arg
        target["path0"] = os.getcwd()
        sys.argv[:] = [target_arg, *args]   # load_target sets argv[0] to the file, as -m does
    else:
        target["code"] = target_arg
        sys.argv[:] = ["-c", *args]
    try:
        _session.start_recording(trace, target, seed)
    except OSError as exc:
        fail(f"cannot record to {trace}: {exc}")
    except _settings.SettingError as exc:
        fail(str(exc))
    status, uncaught = run(target)
    _session.end_record(status, uncaught)
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def locate_program(header, maps):
    """Map the recorded program's paths onto this machine: the user's
    --map RECORDED=LOCAL pairs, else a copy of the main script with the same
    checksum found under the working directory."""
    _session.path_map[:] = [tuple(os.path.abspath(p) for p in m.split("=", 1)) for m in maps]
    target = dict(header["target"])
    if target["kind"] == "script":
        target["path"] = _session.local_path(target["path"])
        if not os.path.exists(target["path"]) and not maps and header.get("main_checksum"):
            found = _session.find_checkout(header["target"]["path"], header["main_checksum"])
            if found:
                _session.path_map.append(found)
                target["path"] = _session.local_path(target["path"])
                sys.stderr.write(f"retrace: note: replaying {header['target']['path']} "
                                 f"from {target['path']} (same checksum)\n")
        if not os.path.exists(target["path"]):
            fail(f"the recorded program {header['target']['path']} is not on this machine; "
                 f"replay from a checkout of it, or map it with --map RECORDED_DIR=LOCAL_DIR")
    elif target["kind"] == "module":
        target["path0"] = _session.local_path(target["path0"])
    return target


def follow_fork(trace):
    """A forked child's trace (TRACE.PID) replays from its parent's trace, which
    lies beside it: returns the trace to start from."""
    header = _session.read_header(trace)
    if not header.get("parent"):
        return trace
    parent = trace[:-len(f".{header['pid']}")]
    if not trace.endswith(f".{header['pid']}") or not os.path.exists(parent):
        fail(f"{trace} was recorded by a forked child; its parent's trace "
             f"({os.path.basename(header['parent']['trace'])}) must lie beside it")
    if _session.read_header(parent).get("parent"):
        fail(f"{trace} was recorded by the child of a forked child: not supported yet")
    _fork.follow_pid = header["pid"]
    return parent


def start_replay(trace):
    """Start the replay; the startup events (time zone constants, stdio set-up)
    are replayed here, so a damaged value in them is reported, not raised."""
    try:
        _session.start_replay(trace)
    except (TraceCorrupt, OSError, _session.ReplayVersionError):
        raise
    except Exception as exc:
        raise TraceCorrupt(f"{trace}: the recorded start of the run does not fit this replay "
                           f"({type(exc).__name__}: {exc})") from None


def replay(trace, maps):
    try:
        trace = follow_fork(trace)
        target = locate_program(_session.read_header(trace), maps)
        start_replay(trace)
        status, _ = run(target)
        recorded = _engine.end(None)
    except (TraceCorrupt, OSError, _session.ReplayVersionError) as exc:
        fail(str(exc))
    except ReplayDivergence as exc:
        _session.report_divergence(exc)
    if recorded.get("exit_code") not in (None, status):
        _session.report_divergence(
            f"replay diverged: the program exited with status {status}; "
            f"the recorded run exited with {recorded['exit_code']}")
    return status


EXIT_REPRODUCED, EXIT_NOTHING_TO_CHECK = 1, 4


def check(trace, maps):
    """Replay against the current code and say whether the recorded failure
    still happens: fixed (0), reproduced (1), diverged before the crash (3),
    or nothing to check (4)."""
    try:
        header = _session.read_header(trace)
        target = locate_program(header, maps)
        start_replay(trace)
        recorded = _session.recorded_end()
    except (TraceCorrupt, OSError, _session.ReplayVersionError) as exc:
        fail(str(exc))
    if not recorded or not recorded.get("exception"):
        outcome = "its end was not recorded" if not recorded else \
            f"it exited with status {recorded['exit_code']} and no uncaught exception"
        verdict(EXIT_NOTHING_TO_CHECK, f"NOTHING TO CHECK: the recorded run did not fail ({outcome}).")
    where = recorded.get("exception_where")
    crash = recorded["exception"] + (f" at {_session.local_path(where[0])}:{where[1]} in {where[2]}"
                                     if where else "")
    crash_index = recorded.get("crash_index")
    _engine.set_live_outputs()     # a fixed program's output is its own
    try:
        status, uncaught = run(target)
    except TraceCorrupt as exc:
        fail(str(exc))
    except ReplayDivergence as exc:
        if exc.cut and (crash_index is None or exc.index < crash_index):
            fail(f"cannot check {trace}: the recording stops at event {exc.index}, before the "
                 f"recorded crash point ({crash}): {exc.expected}")
        if not exc.at_end and (crash_index is None or exc.index < crash_index):
            verdict(EXIT_DIVERGED, "DIVERGED before the recorded crash point "
                    f"({crash}): the code on the path to it changed.\n{exc}")
        verdict(0, f"FIXED: the program replayed the {exc.index} recorded calls up to the "
                f"recorded crash point ({crash}), got past it and then asked for "
                f"{exc.actual}, which the recording does not have there.")
    if crash_index is not None and _engine.event_index() < crash_index:
        verdict(EXIT_DIVERGED, "DIVERGED before the recorded crash point "
                f"({crash}): the program ended after {_engine.event_index()} of the "
                f"{crash_index} calls the recorded run made before it crashed.")
    same_place = uncaught and uncaught["exception_type"] == recorded.get("exception_type") and \
        _same_frame(uncaught["exception_where"], where)
    if same_place:
        verdict(EXIT_REPRODUCED, f"REPRODUCED: the recorded failure happens again: {crash}.")
    ending = f"raised {uncaught['exception']}" if uncaught else f"exited with status {status}"
    verdict(0, f"FIXED: the program replayed the recorded calls up to the recorded crash point "
            f"({crash}) and then {ending}.")


def _same_frame(replayed, recorded):
    if not replayed or not recorded:
        return replayed == recorded
    return (replayed[0], replayed[1], replayed[2]) == \
        (_session.local_path(recorded[0]), recorded[1], recorded[2])


def verdict(status, text):
    _engine.suspend()      # other threads may still be replaying: the trace stays open
    flush_io()
    _session.say(f"retrace check: {text}\n")
    _session.real_exit(status)


def main(argv):
    command = argv[0]
    if command == "record":
        status = record(argv[1], argv[2], argv[3], argv[4:])
        if status == -signal.SIGINT:
            # already reported: CPython's -m runner finalizes, then dies by SIGINT
            sys.excepthook = lambda *exc: None
            raise KeyboardInterrupt
        sys.exit(status)
    if command == "check":
        check(argv[1], argv[2:])
    status = replay(argv[1], argv[2:])
    # Nothing after the end of the run may touch the world: no interpreter
    # finalization (finalizers and atexit would run unrecorded calls).
    _engine.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    if status == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.raise_signal(signal.SIGINT)
    _session.real_exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
