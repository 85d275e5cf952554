"""Recording started by the environment: RETRACE_RECORDING=FILE python ...

`retrace install` writes a .pth file whose single line imports this module
only when RETRACE_RECORDING is set.  The hook runs while site.py processes
.pth files, before the program's first line.
"""
import os
import sys

HASHSEED_SET_BY_US = "RETRACE_HASHSEED_SET"


def target_from_orig_argv(argv):
    """What python was asked to run: {'kind': 'script'|'module'|'command', ...}.

    None for an interactive session or a program read from stdin.
    """
    takes_value = {"-X", "-W", "--check-hash-based-pycs"}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "-c") and i + 1 < len(argv):
            if arg == "-c":
                return {"kind": "command", "code": argv[i + 1]}
            return {"kind": "module", "module": argv[i + 1], "path0": os.getcwd()}
        if arg.startswith("-m") and len(arg) > 2:
            return {"kind": "module", "module": arg[2:], "path0": os.getcwd()}
        if arg.startswith("-c") and len(arg) > 2:
            return {"kind": "command", "code": arg[2:]}
        if arg == "-" or arg == "--" and i + 1 >= len(argv):
            return None
        if arg == "--":
            return {"kind": "script", "path": os.path.abspath(argv[i + 1])}
        if not arg.startswith("-"):
            return {"kind": "script", "path": os.path.abspath(arg)}
        i += 2 if arg in takes_value else 1
    return None


def _is_retrace_itself(argv):
    return any(a in ("retrace", "retrace._run") for a in argv[1:3]) or \
        os.path.basename(argv[0]) == "retrace"


def start():
    path = os.environ.pop("RETRACE_RECORDING")
    argv = sys.orig_argv
    target = target_from_orig_argv(argv)
    if target is None or _is_retrace_itself(argv):
        return
    seed = os.environ.get("PYTHONHASHSEED")
    if seed is None or seed == "random":
        # The hash seed must be known to replay set and dict order: restart
        # this interpreter with one.
        os.environ["PYTHONHASHSEED"] = str(int.from_bytes(os.urandom(4), "little"))
        os.environ[HASHSEED_SET_BY_US] = "1"
        os.environ["RETRACE_RECORDING"] = path
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *argv[1:]])
    seed = int(seed)
    if os.environ.pop(HASHSEED_SET_BY_US, None):
        del os.environ["PYTHONHASHSEED"]
    from . import _engine
    # Start once site.py has finished (other .pth files, sitecustomize): the
    # replay starts from that point too.
    _engine.on_main_start(lambda: _record(path, target, seed))


def _record(path, target, seed):
    import atexit

    from . import _engine, _session

    try:
        _session.start_recording(path, target, seed)
    except OSError as exc:
        sys.stderr.write(f"retrace: not recording: cannot create {path}: {exc}\n")
        return
    except ValueError as exc:     # a bad RETRACE_* setting
        sys.stderr.write(f"retrace: not recording: {exc}\n")
        return
    uncaught = []
    original_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        crash_index = _engine.event_index()
        with _session.internal():
            uncaught.append(dict(_session.describe_exception(exc), crash_index=crash_index))
            original_hook(exc_type, exc, tb)

    sys.excepthook = excepthook
    # Registered first, so it runs after the program's own atexit callbacks.
    atexit.register(lambda: _session.end_record(1 if uncaught else None,
                                                uncaught[0] if uncaught else None))
