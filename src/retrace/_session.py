"""A recording or a replay: the trace header, start, the end record, and the
ReplayDivergence report.

The header says what ran and where (docs/recording-contents.md lists every
field).  The end record holds the exit status, the uncaught exception and a
checksum of every imported source file, so replay can name the files that
changed since the recording.
"""
import contextlib
import os
import sys
import time
import zlib

from . import _engine, _patch, _settings, __version__
from .errors import ReplayDivergence, TraceCorrupt

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
                  "AUTH", "PRIVATE", "COOKIE", "SESSION", "DSN")
REDACTED = "<redacted by retrace>"
KEEP_SECRETS_VAR = "RETRACE_KEEP_SECRETS"

# The header of this process's recording or replay, and the replayed trace.
header = None
trace_path = None

EXIT_DIVERGED = 3
real_exit = os._exit

# Replay on another machine: (recorded directory, local directory) pairs.
path_map = []


def local_path(path, maps=None):
    """Where a recorded source file is on this machine (maps: another path map)."""
    for recorded, local in path_map if maps is None else maps:
        if path == recorded or path.startswith(recorded + os.sep):
            return local + path[len(recorded):]
    return path


def find_checkout(path, checksum):
    """The directory under the working directory that holds the recorded
    program path with the same content, as (recorded dir, local dir), or None."""
    parts = path.split(os.sep)
    for i in range(1, len(parts)):
        candidate = os.path.join(os.getcwd(), *parts[i:])
        if os.path.isfile(candidate) and file_checksum(candidate) == checksum:
            return os.sep.join(parts[:i]) or os.sep, os.getcwd()
    return None


class _Internal:
    """Retrace's own work: calls made inside pass the boundary unrecorded.
    (A class, not a contextlib generator: the debugger counts no line of it.)"""

    def __enter__(self):
        _engine.suspend()

    def __exit__(self, *exc):
        _engine.resume()


_INTERNAL = _Internal()


def internal():
    return _INTERNAL


def is_secret(name):
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def snapshot_env():
    """The environment to record, and the names whose values were redacted."""
    keep = os.environ.get(KEEP_SECRETS_VAR) == "1"
    env, redacted = {}, []
    for name, value in os.environ.items():
        if not keep and is_secret(name):
            value = REDACTED
            redacted.append(name)
        env[name] = value
    return env, sorted(redacted)


def file_checksum(path):
    try:
        with open(path, "rb") as f:
            return zlib.crc32(f.read())
    except OSError:
        return None


def source_checksums():
    sums = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            sums[path] = file_checksum(path)
    return sums


def start_recording(path, target, hash_seed, parent=None, install=True):
    """Create the trace and install the boundary. target describes the program;
    parent, for a forked child, names the parent's trace and the fork. The
    limits and redaction come from the environment (_settings); a bad
    setting raises _settings.SettingError."""
    global header, trace_path
    path = _settings.expand_path(path)
    limits = _settings.limits()
    patterns = _settings.redaction_patterns()
    env, redacted = snapshot_env()
    main_path = target.get("path")
    head = {
        "format": _engine.FORMAT_VERSION,
        "retrace": __version__,
        "python": sys.version,
        "version_info": tuple(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "platform": sys.platform,
        "executable": sys.executable,
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "target": target,
        "hash_seed": hash_seed,
        "env": env,
        "env_redacted": redacted,
        "start_time": time.time(),
        "pid": os.getpid(),
        "main_checksum": file_checksum(main_path) if main_path else None,
        "parent": parent,
        "limits": limits,
        "redact": patterns,
    }
    _engine.start_recording(path, _engine.encode(head), **limits)
    _engine.set_redactor(_settings.redactor(patterns))
    header, trace_path = head, os.path.abspath(path)
    if install:
        _patch.install(exit_now)


def read_header(path):
    """Decode and check the header of a trace without starting a replay."""
    head = _engine.decode(_engine.open_replay(path))
    _engine.stop()
    if not isinstance(head, dict) or "target" not in head or "version_info" not in head:
        raise TraceCorrupt(f"{path}: the header is not a Retrace header")
    return head


def start_replay(path):
    """Open the trace, restore the recorded process state, install the boundary."""
    global trace_path, header
    head = _engine.decode(_engine.open_replay(path))
    trace_path, header = os.path.abspath(path), head
    recorded = tuple(head["version_info"][:2])
    if recorded != tuple(sys.version_info[:2]):
        _engine.stop()
        raise ReplayVersionError(head)
    _restore_pythonpath(head)
    os.environ._data.clear()
    for name, value in head["env"].items():
        os.environ._data[os.environ.encodekey(name)] = os.environ.encodevalue(value)
    sys.argv[:] = head["argv"]
    _engine.set_divergence_factory(_make_divergence)
    _engine.start_replay()
    _patch.install(exit_now)
    return head


def _pythonpath(value, cwd):
    return [os.path.join(cwd, p) for p in (value or "").split(os.pathsep) if p]


def _restore_pythonpath(head):
    """sys.path holds the PYTHONPATH the interpreter started with: replay
    imports from the recorded one (a test run under `PYTHONPATH=src pytest`
    replays from a shell without it)."""
    here = _pythonpath(os.environ.get("PYTHONPATH"), os.getcwd())
    recorded = _pythonpath(head["env"].get("PYTHONPATH"), head["cwd"])
    if here == recorded:
        return
    rest = [p for p in sys.path[1:] if p not in here or p in recorded]
    sys.path[1:] = [p for p in recorded if p not in rest] + rest


def switch_replay(path):
    """Replay of a forked child: at its fork, continue from the child's trace."""
    global header, trace_path
    _engine.stop()
    head = _engine.decode(_engine.open_replay(path))
    header, trace_path = head, os.path.abspath(path)
    _engine.start_replay()


class ReplayVersionError(Exception):
    def __init__(self, head):
        version = ".".join(map(str, head["version_info"]))
        super().__init__(
            f"the recording was made with Python {version} "
            f"({head['executable']}); this is Python {sys.version.split()[0]}. "
            f"Replay with the same Python version.")


def end_record(exit_code, uncaught):
    """Write the END record (recording only). uncaught: describe_exception()'s
    dict for the exception that ended the run, or None. A flight recording
    is written only when the run ended with an uncaught exception."""
    info = {"exit_code": exit_code, "exception": None, **(uncaught or {})}
    with internal():
        try:
            _settings.test_fault("end")
            info.update(duration=time.time() - header["start_time"], sources=source_checksums())
        except Exception as exc:
            _settings.internal_error("the end of the recording", exc)
    _engine.end(info)
    if header["limits"]["flight"] and uncaught:
        keep_flight(f"the run ended with an uncaught {uncaught['exception_type']}")
    error = _engine.stop()
    if error:
        say(f"retrace: the recording is incomplete: {error}\n")


flight_kept = False


def keep_flight(why):
    """Write the flight recording to its file, once (also retrace.flight.dump())."""
    global flight_kept
    with internal():
        if flight_kept:
            return trace_path
        try:
            _engine.keep()
        except OSError as exc:
            say(f"retrace: the flight recording could not be written: {exc}\n")
            return None
        flight_kept = True
        say(f"retrace: flight recorder: {why}; the recording is in {trace_path}\n")
    return trace_path


def report_divergence(exc):
    """Print a ReplayDivergence (or its text) and leave with status 3.

    What the program's streams still buffer was never checked against the
    recording: it is dropped, so a replay only ever shows recorded output.
    The trace stays open until the process exits: other threads may still be
    raising the divergence."""
    _engine.suspend()
    say(f"retrace: {exc}\n")
    real_exit(EXIT_DIVERGED)


def say(text):
    """Write Retrace's own message to fd 2, past the program's stderr buffer."""
    message = text.encode(errors="backslashreplace")
    while message:
        message = message[os.write(2, message):]


def exit_now(status):
    """os._exit(status) during a session: the run ends here."""
    mode = _engine.mode()
    if mode == "record":
        end_record(status, None)
    elif mode == "replay":
        try:
            _engine.end(None)
        except ReplayDivergence as exc:
            report_divergence(exc)
        _engine.stop()
    real_exit(status)


def recorded_end(path=None):
    """The END record's info of the replayed trace (or of path), or None if it
    has none."""
    try:
        _, records, _ = _engine._read_records(path or trace_path)
    except TraceCorrupt:
        return None
    for record in reversed(records):
        if record[:1] == b"E":
            return _engine.decode(record[1:])
    return None


def recorded_sources(head=None, path=None):
    """Checksums of the recorded run's source files: the END record's, plus the
    main script's from the header (all a cut-short recording has). By default
    of the replayed trace; or of the trace at path, whose header is head."""
    head = head or header
    sums = {}
    main = head["target"].get("path")
    if main and head.get("main_checksum") is not None:
        sums[main] = head["main_checksum"]
    sums.update((recorded_end(path) or {}).get("sources", {}))
    return sums


def describe_exception(exc):
    """What the end record keeps of an uncaught exception: its text, its
    type, and where it was raised (file, line, function)."""
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    where = (frames[-1].filename, frames[-1].lineno, frames[-1].name) if frames else None
    return {"exception": f"{type(exc).__qualname__}: {exc}",
            "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "exception_where": where}


def changed_sources(head=None, path=None, maps=None):
    """Local source files whose checksum differs from the recorded one (see
    recorded_sources and local_path for the arguments)."""
    return sorted(local_path(p, maps) for p, crc in recorded_sources(head, path).items()
                  if crc is not None and file_checksum(local_path(p, maps)) != crc)


def _replay_stack():
    import traceback
    here = os.path.dirname(os.path.abspath(__file__))
    frames = [f for f in traceback.extract_stack()
              if not os.path.abspath(f.filename).startswith(here + os.sep)]
    return "".join(traceback.format_list(frames))


def _make_divergence(reason, index, expected, expected_tid, actual, actual_tid, at_end):
    def who(name, tid):
        if name is None:
            return "the end of the run"
        return name if tid is None else f"{name} (thread {tid})"

    lines = [f"replay diverged at event {index}: {reason}",
             f"  expected: {who(expected, expected_tid)}",
             f"  actual:   {who(actual, actual_tid)}"]
    stack = _replay_stack()
    if stack:
        lines.append("replay stack (most recent call last):")
        lines.append(stack.rstrip("\n"))
    changed = changed_sources()
    if changed:
        lines.append("source files changed since the recording:")
        lines.extend(f"  {path}" for path in changed)
    else:
        lines.append("no imported source file changed since the recording")
    exc = ReplayDivergence("\n".join(lines))
    exc.index, exc.expected, exc.actual, exc.changed = index, expected, actual, changed
    exc.at_end = at_end
    exc.cut = str(expected).startswith("<end of recording")   # the recording stops here
    return exc
