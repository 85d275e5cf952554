"""The replay debugger: travel a recorded run forwards and backwards, and
inspect it (docs/debugger.md).

    from retrace.debugger import Debugger
    dbg = Debugger("run.retrace")        # paused before the program's first line
    dbg.to_crash(); dbg.reverse_step(); dbg.evaluate("response")

This module is the controller. It drives replay processes
(retrace._debug_replay, csrc/stepper.c, csrc/checkpoint.c) over a Unix
socket; each is paused at a position, a count of the program's line events
(and, within a line, of the exceptions it raised). One is the current
position; the others are checkpoints: paused copies forked at spaced
positions as the replay runs. Moving forward runs the current process;
moving to an earlier position forks the nearest checkpoint at or before it
and runs the copy forward, so every position is reached by replaying, and
the same position always shows the same state. Reverse moves that search
(reverse continue, reverse next, ...) first run the interval between
checkpoints forward noting where the predicate held, then go to the last
such position, widening the interval until they find one. Inspection and
evaluation happen in throwaway forks of the current process.
"""
import codecs
import contextlib
import dataclasses
import functools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref

from . import _session
from .errors import RetraceError, TraceCorrupt

# Run rules and scans (csrc/stepper.c)
RULE_NONE, RULE_STEP, RULE_NEXT, RULE_OUT = range(4)
SCAN_NONE, SCAN_THREAD, SCAN_NEXT, SCAN_OUT, SCAN_BREAK = range(5)
HIT_ALWAYS, HIT_EQ, HIT_GE, HIT_MOD = range(4)
EXC_NONE, EXC_ALL, EXC_USER = range(3)

CHECKPOINT_INTERVAL = 0.05    # seconds of running between two checkpoints
DENSE = 10                    # ... divided by this when replaying towards an earlier position
MAX_CHECKPOINTS = 24          # besides the one at the start
STARTUP_TIMEOUT = 60.0        # the replay process connects within this
ANSWER_TIMEOUT = 30.0         # a paused process or an inspector answers within this
EVALUATE_TIMEOUT = 10.0       # an evaluation that runs longer is an error
REF_BITS = 20                 # Var.ref: the answering process in the bits above


class DebuggerError(RetraceError):
    """The debugger cannot do what was asked (the message says why)."""


class _Paused(Exception):
    """pause() stopped a run of a move: proc is paused where it had got to."""

    def __init__(self, proc, message):
        super().__init__()
        self.proc, self.message = proc, message


def _move(method):
    """A public move: one at a time; pause() during it stops it where it is."""
    @functools.wraps(method)
    def move(self, *args, **kwargs):
        with self._lock:
            if self._moving:            # a move made of others
                return method(self, *args, **kwargs)
            self._moving, self._pausing = True, False
            try:
                return method(self, *args, **kwargs)
            except _Paused as paused:
                self._become(paused.proc)
                return self._arrive(paused.message, "pause")
            finally:
                self._moving = self._pausing = False
                self._running = None
    return move


@dataclasses.dataclass
class Stop:
    step: int                 # line events before this one (the position)
    reason: str
    thread: int
    event_index: int
    file: str | None
    line: int | None
    function: str | None
    exception: tuple | None = None
    breakpoint_ids: list = dataclasses.field(default_factory=list)
    raise_index: int = 0      # stopped at the Nth exception raised in this line (0: at its start)
    depth: int = 0            # counted frames on this thread's stack
    frame_start: int = 0      # the position where the innermost frame's activation began
    exit_status: int | None = None    # reason "end": the program's exit status (None: unknown)

    @property
    def position(self):
        return (self.step, self.raise_index)


@dataclasses.dataclass
class Frame:
    index: int
    file: str
    line: int
    function: str
    thread: int
    start: int | None = None      # position of the activation's first line
    first_line: int = 0
    last_line: int = 0


@dataclasses.dataclass
class Var:
    name: str
    value: str
    type: str
    ref: int = 0
    count: int | None = None
    output: str = ""              # what an evaluation printed


class _Proc:
    """A replay process paused (or running) somewhere."""

    def __init__(self, sock, hello):
        self.sock = sock
        self.pid = hello["pid"]
        self.role = hello["role"]
        self.pos = (hello["step"], hello["k"])
        self.forkable = bool(hello["forkable"])
        self.ended = bool(hello["ended"])
        self.at = hello["at"]         # "stop", "tick", "end" or "start" (csrc/stepper.c)
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.pidfd = None
        self.dead = False

    def update(self, message):
        if message["ev"] == "end":
            self.pos, self.ended, self.at = (message["total"], 0), True, "end"
        elif "step" in message:
            self.pos = (message["step"], message["k"])
            self.forkable = bool(message["forkable"])
            self.ended = bool(message["ended"])
            self.at = message["at"]

    def send(self, kind, payload):
        data = struct.pack("<IB", len(payload) + 1, ord(kind)) + payload
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise DebuggerError(f"the replay process {self.pid} is gone ({exc})") from None

    def command(self, *lines):
        self.send("C", "\n".join(lines).encode())

    def kill(self):
        if self.dead:
            return
        self.dead = True
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                os.close(self.pidfd)
            else:
                os.kill(self.pid, signal.SIGKILL)


def _recv_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _read_frame(sock):
    length, kind = struct.unpack("<IB", _recv_exactly(sock, 5))
    return chr(kind), _recv_exactly(sock, length - 1)


def _escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _parse_hit_condition(text):
    text = text.strip()
    for prefix, op in ((">=", HIT_GE), (">", HIT_GE), ("%", HIT_MOD), ("==", HIT_EQ), ("", HIT_EQ)):
        if text.startswith(prefix):
            try:
                n = int(text[len(prefix):].strip())
            except ValueError:
                break
            return op, n + 1 if prefix == ">" else n
    raise DebuggerError(f"bad hit condition {text!r}: use N, >= N or % N")


@functools.cache
def library_dirs():
    """Where code that is not the user's lives: the standard library,
    site-packages and Retrace (resolved, each ending in a separator)."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(sorted(os.path.realpath(d) + os.sep for d in dirs))


def is_user_code(file):
    """The test the replay applies in C for user_code_only (csrc/stepper.c)."""
    if not file or file.startswith("<"):
        return False
    return not os.path.realpath(file).startswith(library_dirs())


def _kill_all(procs, main, directory):
    for proc in procs:
        proc.kill()
    if main is not None:
        with contextlib.suppress(OSError):
            main.kill()
        with contextlib.suppress(Exception):
            main.wait(timeout=10)
    shutil.rmtree(directory, ignore_errors=True)


class Debugger:
    def __init__(self, recording, *, pid=None, path_map=None, on_output=None,
                 checkpoint_interval=CHECKPOINT_INTERVAL, max_checkpoints=MAX_CHECKPOINTS):
        self._on_output = on_output
        self._interval_ns = int(checkpoint_interval * 1e9)
        self._max_checkpoints = max_checkpoints
        self._lock = threading.RLock()
        self._procs = set()             # every live process we know of
        self._checkpoints = {}          # position -> paused copy
        self._hellos = {}               # pid -> process that said hello, not yet claimed
        self._current = None
        self._running = None            # the process running a move's run (pause())
        self._pausing = False           # pause() was asked during this move
        self._moving = False
        self._inspectors = []           # per stop: the inspector, then evaluations
        self._frames = {}
        self._known = {}                # position -> (file, line, thread): replay is deterministic
        self._breakpoints = {}
        self._bp_next = 1
        self._bp_gen = 1
        self._raised = False
        self._uncaught = True
        self._user_code_only = False
        self._end = None                # the end report, once a process got there
        self._out_seq = -1              # the last write shown
        self._out_pending = {}          # write number -> (step, stream, bytes) not yet shown
        self._decoders = {}
        self._info = {}
        self._main = None
        self.total_steps = None
        self.stop = None
        self.recording = self._locate(recording, pid)
        self._header = self._read_header(self.recording)
        self._maps = [f"{k}={v}" for k, v in (path_map or {}).items()]
        self._dir = tempfile.mkdtemp(prefix="retrace-debug-")
        if len(self._dir) > 90:           # a Unix socket path has at most 107 bytes
            os.rmdir(self._dir)
            self._dir = tempfile.mkdtemp(prefix="retrace-debug-", dir="/tmp")
        self._finalizer = weakref.finalize(self, _kill_all, self._procs, None, self._dir)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- startup -----------------------------------------------------------

    @staticmethod
    def _locate(recording, pid):
        path = os.fspath(recording)
        if pid is not None:
            path = f"{path}.{pid}"
        if not os.path.exists(path):
            raise DebuggerError(f"{path}: no such file" + (
                f" (the recording of the forked child {pid})" if pid is not None else ""))
        return path

    @staticmethod
    def _read_header(path):
        try:
            header = _session.read_header(path)
        except (TraceCorrupt, OSError) as exc:
            raise DebuggerError(f"{path}: {exc}") from None
        recorded = tuple(header["version_info"][:2])
        if recorded != tuple(sys.version_info[:2]):
            version = ".".join(map(str, recorded))
            raise DebuggerError(f"{path} was recorded with Python {version} "
                                f"({header['executable']}); this is Python "
                                f"{sys.version.split()[0]}: debug it with Python {version}")
        return header

    def _start(self):
        path = os.path.join(self._dir, "s")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._log = open(os.path.join(self._dir, "replay.log"), "w+b")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
        env["PYTHONHASHSEED"] = str(self._header["hash_seed"])
        self._main = subprocess.Popen(
            [sys.executable, "-m", "retrace._debug_replay", path, self.recording, *self._maps],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill_all, self._procs, self._main, self._dir)
        main = self._await_hello(None, STARTUP_TIMEOUT)
        message = self._wait(main, ("stop", "end"))
        self._current = main
        main.command(*(f"lib {d}" for d in library_dirs() if "\n" not in d))
        self._arrive(message, "entry")
        self._console(self._log_text())
        if not main.ended:
            self._keep(self._fork(main))

    def _log_text(self):
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _failure(self, otherwise):
        """The error for a replay process that went away: its log says why."""
        text = self._log_text().strip()
        return DebuggerError(text.replace("retrace: error: ", "") if text else otherwise)

    def _died(self, proc):
        self._end_process(proc)
        return self._failure(f"the replay process {proc.pid} ended unexpectedly")

    # -- messages ------------------------------------------------------------

    def _accept(self, timeout):
        """Take one new connection (a process saying hello) within timeout."""
        ready, _, _ = select.select([self._listener], [], [], timeout)
        if not ready:
            return False
        sock, _ = self._listener.accept()
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            kind, body = _read_frame(sock)
        except (EOFError, OSError):
            sock.close()
            return True
        sock.settimeout(None)
        proc = _Proc(sock, json.loads(body))
        self._procs.add(proc)
        if proc.role == "checkpoint":
            self._keep(proc)
        else:
            self._hellos[proc.pid] = proc
        return True

    def _await_hello(self, pid, timeout=ANSWER_TIMEOUT):
        """The process that said hello with this pid (None: the main one)."""
        deadline = time.monotonic() + timeout
        while True:
            for key, proc in list(self._hellos.items()):
                if key == pid or (pid is None and proc.role == "main"):
                    return self._hellos.pop(key)
            remaining = deadline - time.monotonic()
            if pid is None and self._main.poll() is not None:
                raise self._failure(f"the replay process exited with status "
                                    f"{self._main.returncode}")
            if remaining <= 0:
                raise DebuggerError("a replay process did not connect within "
                                    f"{timeout:.0f} s" + self._log_tail())
            self._accept(min(remaining, 0.2))

    def _log_tail(self):
        text = self._log_text().strip()
        return f"\n{text[-2000:]}" if text else ""

    def _wait(self, proc, events, timeout=None):
        """Read proc's messages until one of events; meanwhile take the hellos of
        new processes, and pass the program's output and log messages on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([proc.sock, self._listener], [], [], remaining)
            if self._listener in ready:
                self._accept(0)
            if proc.sock not in ready:
                continue
            try:
                kind, body = _read_frame(proc.sock)
            except (EOFError, OSError):
                raise self._died(proc) from None
            if kind == "O":
                self._output(body)
                continue
            message = json.loads(body)
            ev = message.get("ev")
            if ev == "log":
                self._console(message["text"] + "\n")
            elif ev == "info":
                self._info = message
            elif ev == "error":
                raise DebuggerError(f"replay process {proc.pid}: {message['message']}")
            elif ev in events:
                proc.update(message)
                return message

    def _output(self, body):
        """A write of the program, kept until the current position passes it
        (a run to the end or a scan may replay it long before). A write
        replayed again is not shown again."""
        fd, seq, step = struct.unpack("<BQQ", body[:17])
        if seq > self._out_seq:
            self._out_pending[seq] = (step, "stdout" if fd == 1 else "stderr", body[17:])

    def _show_output(self, stop):
        for seq in sorted(self._out_pending):
            step, stream, data = self._out_pending[seq]
            if seq != self._out_seq + 1 or (step >= stop.step and stop.reason != "end"):
                break
            del self._out_pending[seq]
            self._out_seq = seq
            decoder = self._decoders.setdefault(
                stream, codecs.getincrementaldecoder("utf-8")("replace"))
            text = decoder.decode(data)
            if text and self._on_output:
                self._on_output(stream, text)

    def _console(self, text):
        if text and self._on_output:
            self._on_output("console", text)

    # -- processes and checkpoints ----------------------------------------------

    def _fork(self, proc, command="fork"):
        """A copy of a paused process: paused there too, or an inspector."""
        proc.command(command)
        message = self._wait(proc, ("forked",), ANSWER_TIMEOUT)
        return self._await_hello(message["pid"])

    def _keep(self, proc):
        """Keep a paused, forkable process as a checkpoint (or let it go). One
        forked by a running replay is where that replay is now: the pool is
        thinned around it, not around the position the replay left."""
        if proc.ended or not proc.forkable or proc.pos in self._checkpoints:
            self._discard(proc)
            return
        self._checkpoints[proc.pos] = proc
        here = proc.pos[0] if proc.role == "checkpoint" or not self._current else \
            self._current.pos[0]
        while len(self._checkpoints) > self._max_checkpoints + 1:
            self._discard(self._checkpoints.pop(self._least_useful(here)))

    def _least_useful(self, here):
        """The checkpoint whose loss costs least: the one leaving the smallest gap
        behind, relative to its distance from here (so they thin out
        geometrically into the past). The start is always kept."""
        positions = sorted(self._checkpoints)
        best, best_cost = None, None
        for i in range(1, len(positions)):
            after = positions[i + 1][0] if i + 1 < len(positions) else max(here, positions[i][0])
            gap = after - positions[i - 1][0]
            cost = gap / (1 + abs(here - positions[i][0]))
            if best_cost is None or cost < best_cost:
                best, best_cost = positions[i], cost
        return best

    def _end_process(self, proc):
        proc.kill()
        self._procs.discard(proc)
        if proc.role == "main":             # our child: reap it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._main.wait(timeout=30)

    def _discard(self, proc):
        if proc is not self._current:
            self._end_process(proc)

    def _drop_inspectors(self):
        for proc in self._inspectors:
            self._discard(proc)
        self._inspectors = []
        self._frames = {}

    def _accept_pending(self):
        while self._accept(0):
            pass

    def _base_for(self, pos):
        """The paused process nearest before pos to replay from."""
        self._accept_pending()
        current = self._current
        candidates = [p for p in self._checkpoints.values() if p.pos <= pos]
        best = max(candidates, key=lambda p: p.pos, default=None)
        if current.pos <= pos and not current.ended and (best is None or current.pos >= best.pos):
            return current
        if best is None:
            raise DebuggerError("no checkpoint to replay from (the replay process at the start "
                                "is gone)")
        return best

    def _table(self, hidden=None):
        """The breakpoint table as commands; hidden: a (file, line) to find instead."""
        lines, files = [], {}
        entries = {-1: {"kind": "line", "file": hidden[0], "line": hidden[1], "condition": None,
                        "hit": (HIT_ALWAYS, 0), "log_message": None}} if hidden else \
            self._breakpoints
        gen = self._bp_gen + (1 << 40 if hidden else 0)
        lines.append(f"bps {gen}")
        for bp_id, bp in entries.items():
            if bp["kind"] == "line":
                if bp["file"] not in files:
                    files[bp["file"]] = len(files)
                    for variant in dict.fromkeys((bp["file"], os.path.realpath(bp["file"]))):
                        lines.append(f"file {files[bp['file']]} {_escape(variant)}")
                op, n = bp["hit"]
                lines.append(f"line {bp_id} {files[bp['file']]} {bp['line']} {op} {n} "
                             f"{bp.get('hits', 0)}")
            else:
                lines.append(f"func {bp_id} {_escape(bp['name'])}")
            if bp["condition"]:
                lines.append(f"cond {bp_id} {_escape(bp['condition'])}")
            if bp.get("log_message"):
                lines.append(f"log {bp_id} {_escape(bp['log_message'])}")
        return lines

    def _run(self, proc, stop_at=None, rule=RULE_NONE, scan=SCAN_NONE, breakpoints=False,
             exceptions=EXC_NONE, logs=False, hidden=None, frame=None, dense=False,
             pausable=True):
        """Send a run request. stop_at: a position (step, k) or None; frame: the
        stop whose thread and frame the rule or scan is about (default: here);
        dense: checkpoints closer together (the user is going backwards, and
        will likely go on: the next reverse step then replays little)."""
        frame = frame or self.stop
        step, k = stop_at if stop_at is not None else (-1, 0)
        interval = self._interval_ns // DENSE if dense else self._interval_ns
        run = (f"run {step} {k} {rule} {scan} {frame.thread} {frame.depth} {frame.frame_start} "
               f"{int(breakpoints)} {exceptions} {int(logs)} {interval}")
        proc.command(*self._table(hidden), run)
        if pausable:
            self._running = proc
            if self._pausing:
                proc.command("pause")

    def _replay_to(self, pos, **run):
        """Make a process paused at pos (or at what stops it first): fork the
        nearest one before it and run it there. Returns (process, message)."""
        base = self._base_for(pos)
        proc = base if base is self._current else self._fork(base)
        if proc.pos == pos and proc.at == "stop":
            proc.command("again")
            return proc, self._wait(proc, ("stop", "scan"))
        self._run(proc, stop_at=pos, dense=pos < self._current.pos, **run)
        message = self._wait(proc, ("stop", "end"))
        if message["ev"] == "stop" and message["cause"] == "pause":
            raise _Paused(proc, message)
        return proc, message

    def _become(self, proc):
        """proc is the current process now; the one before is kept or let go."""
        if proc is not self._current:
            previous = self._current
            self._current = proc
            if previous is not None:
                self._keep(previous)

    # -- arriving ------------------------------------------------------------------

    def _arrive(self, message, reason, breakpoint_ids=None):
        if message["ev"] == "end":
            return self._arrive_end(message)
        cause = message["cause"]
        if cause in ("step", "breakpoint", "function breakpoint", "exception", "pause"):
            reason = cause
        stop = Stop(step=message["step"], reason=reason, thread=message["tid"],
                    event_index=message["event"], file=message["file"], line=message["line"],
                    function=message["function"],
                    breakpoint_ids=breakpoint_ids if breakpoint_ids is not None else
                    message["bps"], raise_index=message["k"], depth=message["depth"],
                    frame_start=message["start"])
        self._drop_inspectors()
        self.stop = stop
        self._show_output(stop)
        if cause == "missed":
            self._console("retrace: warning: the replay did not raise the exception recorded at "
                          f"step {stop.step}: it is not deterministic here\n")
        self._check_known(stop)
        if message.get("exc_type"):
            if cause == "divergence":
                stop.reason = "exception"
            try:
                info = self.exception_info() or {}
            except DebuggerError as exc:
                info = {"message": f"<not available: {exc}>"}
            stop.exception = (info.get("type", message["exc_type"]), info.get("message", ""))
        if reason == "crash" and self._end and self._end.get("exception"):
            stop.exception = tuple(self._end["exception"])
        for bp_id in stop.breakpoint_ids:
            if self._breakpoints.get(bp_id, {}).get("temporary") and \
                    stop.reason in ("breakpoint", "function breakpoint"):
                self.remove_breakpoint(bp_id)
        return stop

    def _arrive_end(self, message):
        self._end = message
        self.total_steps = message["total"]
        self._drop_inspectors()
        self.stop = Stop(step=message["total"], reason="end", thread=0,
                         event_index=message["event"], file=None, line=None, function=None,
                         exception=tuple(message["exception"]) if message["exception"] else None,
                         exit_status=message.get("status"))
        self._show_output(self.stop)
        if message.get("divergence"):
            self._console(f"retrace: the replay diverged: {message['divergence']}\n")
        return self.stop

    def _check_known(self, stop):
        """The same position must show the same place every time."""
        here = (stop.file, stop.line, stop.thread)
        seen = self._known.setdefault(stop.position, here)
        if seen != here:
            self._console(f"retrace: warning: step {stop.step} is at {here[0]}:{here[1]} now but "
                          f"was at {seen[0]}:{seen[1]} before: this replay is not deterministic "
                          "here (docs/debugger.md)\n")

    def _ensure_end(self):
        """Run a copy of a paused process to the end once, to learn it."""
        if self._end is not None:
            return
        self._accept_pending()
        base = self._current if self._current.forkable else max(
            (p for p in self._checkpoints.values() if p.pos <= self._current.pos),
            key=lambda p: p.pos)
        proc = self._fork(base)
        self._run(proc, pausable=False)
        message = self._wait(proc, ("end", "stop"))
        while message["ev"] == "stop":       # a divergence on the way: run on
            self._run(proc, pausable=False)
            message = self._wait(proc, ("end", "stop"))
        self._end = message
        self.total_steps = message["total"]
        self._discard(proc)

    # -- moves -----------------------------------------------------------------------

    @_move
    def _forward(self, rule, breakpoints=True):
        if self._current.ended:
            return self.stop
        start = self.stop.position
        crash = self._crash_position()
        target = crash if self._uncaught and crash and crash > start else None
        proc = self._current
        self._run(proc, stop_at=target, rule=rule, breakpoints=breakpoints,
                  exceptions=self._exceptions(), logs=True)
        message = self._wait(proc, ("stop", "end"))
        hits = message.get("hits", [])
        for bp_id, count in zip(hits[::2], hits[1::2]):
            if bp_id in self._breakpoints:
                self._breakpoints[bp_id]["hits"] = count
        stop = self._arrive(message, "crash" if target else "step")
        if message["ev"] == "end" and self._uncaught and self._crash_position() and \
                self._crash_position() > start:
            return self._goto(self._crash_position(), "crash")
        return stop

    def _crash_position(self):
        crash = self._end and self._end.get("crash")
        return (crash[0], crash[1]) if crash else None

    def _goto(self, pos, reason, breakpoint_ids=None):
        if self.total_steps is not None and pos[0] >= self.total_steps:
            pos = (self.total_steps, 0)
        if pos == self.stop.position and not self._current.ended:
            self.stop.reason = reason
            return self.stop
        proc, message = self._replay_to(pos)
        self._become(proc)
        return self._arrive(message, reason, breakpoint_ids)

    def _start_stop(self):
        return self._goto((0, 0), "start")

    def step(self):
        return self._forward(RULE_STEP, breakpoints=False)

    def next(self):
        return self._forward(RULE_NEXT)

    def step_out(self):
        return self._forward(RULE_OUT)

    def cont(self):
        return self._forward(RULE_NONE)

    def pause(self):
        """Stop the move in progress (from another thread, or a signal
        handler), forward or backward: the replay process running it stops at
        its next multiple of 1024 steps, which becomes the stop, reason
        "pause". A backward search stops where it had got to: a position
        between the checkpoint it ran from and where the move began. The
        first run to the end (to learn it) is not interrupted."""
        self._pausing = True
        proc = self._running
        if proc is not None:
            with contextlib.suppress(DebuggerError):
                proc.command("pause")

    @_move
    def goto(self, step):
        return self._goto((max(0, int(step)), 0), "goto")

    def _scan_back(self, end, scan, hidden=None, frame=None):
        """The last position before end where the scan predicate held: runs the
        intervals between checkpoints forward, latest first. Returns the scan
        report, or None."""
        self._accept_pending()
        while True:
            bases = [p for p in self._checkpoints.values() if p.pos < end]
            if not bases:
                return None
            base = max(bases, key=lambda p: p.pos)
            proc = self._fork(base)
            self._run(proc, stop_at=end, scan=scan, exceptions=self._exceptions(), hidden=hidden,
                      frame=frame)
            message = self._wait(proc, ("scan", "stop", "end"))
            if message["ev"] == "stop" and message["cause"] == "pause":
                raise _Paused(proc, message)
            self._keep(proc)
            if message["ev"] == "end":
                self._end = self._end or message
                message = message["scan"]
            elif message["ev"] != "scan" or not message["found"]:
                message = None
            if message:
                return message
            end = base.pos

    def _back_to(self, match, reason=None):
        if match is None:
            return self._start_stop()
        return self._goto((match["match_step"], match["match_k"]),
                          reason or match["match_cause"], match["match_bps"])

    @_move
    def reverse_step(self):
        here, thread = self.stop.position, self.stop.thread
        if here == (0, 0) or self._current.ended and here[0] == 0:
            return self._start_stop()
        candidate = (here[0], 0) if here[1] else (here[0] - 1, 0)
        stop = self._goto(candidate, "step")
        if stop.thread == thread:
            return stop
        return self._back_to(self._scan_back(here, SCAN_THREAD), "step")

    @_move
    def reverse_next(self):
        here, before = self.stop.position, self.stop
        if here[1]:
            return self._goto((here[0], 0), "step")
        if self._current.ended:
            return self.reverse_step()
        if here[0] == 0:
            return self._start_stop()
        stop = self._goto((here[0] - 1, 0), "step")
        if stop.thread == before.thread and (stop.depth < before.depth or (
                stop.depth == before.depth and stop.frame_start == before.frame_start)):
            return stop
        return self._back_to(self._scan_back(here, SCAN_NEXT, frame=before), "step")

    @_move
    def reverse_step_out(self):
        before = self.stop
        if self._current.ended:
            return self.reverse_step()
        start = before.frame_start
        if start > 0:
            stop = self._goto((start - 1, 0), "step")
            if stop.thread == before.thread and stop.depth < before.depth:
                return stop
        return self._back_to(self._scan_back((start, 0), SCAN_OUT, frame=before), "step")

    @_move
    def reverse_continue(self):
        return self._back_to(self._scan_back(self.stop.position, SCAN_BREAK))

    @_move
    def to_crash(self):
        self._ensure_end()
        crash = self._crash_position()
        if crash is None:
            raise DebuggerError("the recorded run ended without an uncaught exception"
                                + (f" (exit status {self._end['status']})"
                                   if self._end.get("status") is not None else ""))
        return self._goto(crash, "crash")

    @_move
    def to_last_exception(self):
        self._ensure_end()
        last = self._end.get("last")
        if not last:
            raise DebuggerError("the recorded run raised no exception")
        return self._goto((last[0], last[1]), "exception")

    @_move
    def restart_frame(self, frame_index=0):
        frames = self.frames()
        if not 0 <= frame_index < len(frames) or frames[frame_index].start is None:
            raise DebuggerError(f"no frame {frame_index} to restart")
        return self._goto((frames[frame_index].start, 0), "goto")

    @_move
    def last_run_of(self, file, line):
        """Go back to the last time file:line ran before now; None (and no move)
        if it did not."""
        match = self._scan_back(self.stop.position, SCAN_BREAK,
                                hidden=(os.path.abspath(file), int(line)))
        return None if match is None else self._back_to(match, "goto")

    # -- breakpoints --------------------------------------------------------------------

    def add_breakpoint(self, file, line, *, condition=None, hit_condition=None, temporary=False,
                       log_message=None):
        with self._lock:
            hit = _parse_hit_condition(hit_condition) if hit_condition else (HIT_ALWAYS, 0)
            if int(line) <= 0:
                raise DebuggerError(f"bad line number {line}")
            if condition:
                self._check_syntax(condition)
            return self._add({"kind": "line", "file": os.path.abspath(file), "line": int(line),
                              "condition": condition or None, "hit": hit,
                              "hit_condition": hit_condition, "temporary": temporary,
                              "log_message": log_message or None})

    def add_function_breakpoint(self, name, *, condition=None, temporary=False):
        with self._lock:
            if condition:
                self._check_syntax(condition)
            return self._add({"kind": "function", "name": name, "condition": condition or None,
                              "hit": (HIT_ALWAYS, 0), "temporary": temporary,
                              "log_message": None})

    @staticmethod
    def _check_syntax(expression):
        try:
            compile(expression, "<condition>", "eval")
        except SyntaxError as exc:
            raise DebuggerError(f"bad condition {expression!r}: {exc.msg}") from None

    def _add(self, bp):
        bp_id = self._bp_next
        self._bp_next += 1
        self._breakpoints[bp_id] = bp
        self._bp_gen += 1
        return bp_id

    def remove_breakpoint(self, bp_id):
        with self._lock:
            if self._breakpoints.pop(bp_id, None) is not None:
                self._bp_gen += 1

    def breakpoints(self):
        return [{"id": bp_id, "hits": 0, **{k: v for k, v in bp.items() if k != "hit"}}
                for bp_id, bp in self._breakpoints.items()]

    def set_exception_breakpoints(self, *, raised=False, uncaught=True, user_code_only=False):
        """user_code_only: "raised" stops only at raises in the user's code
        (is_user_code: not the standard library, site-packages or Retrace),
        filtered in the replay process."""
        self._raised, self._uncaught = bool(raised), bool(uncaught)
        self._user_code_only = bool(user_code_only)

    def _exceptions(self):
        if not self._raised:
            return EXC_NONE
        return EXC_USER if self._user_code_only else EXC_ALL

    # -- inspection -----------------------------------------------------------------------

    def _ask(self, proc, op, timeout=ANSWER_TIMEOUT, **args):
        proc.send("J", json.dumps({"id": 1, "op": op, "args": args}).encode())
        try:
            answer = self._wait_answer(proc, timeout)
        except TimeoutError:
            self._inspectors.remove(proc)
            self._discard(proc)
            raise
        if "error" in answer:
            raise DebuggerError(answer["error"])
        return answer["result"]

    def _wait_answer(self, proc, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([proc.sock], [], [], remaining)
            if ready:
                try:
                    kind, body = _read_frame(proc.sock)
                except (EOFError, OSError):
                    self._inspectors.remove(proc)
                    self._discard(proc)
                    raise DebuggerError("the inspector of this stop ended unexpectedly"
                                        + self._log_tail()) from None
                if kind == "J":
                    return json.loads(body)

    def _inspector(self):
        if not self._inspectors:
            self._inspectors.append(self._fork(self._current, "inspect"))
        return self._inspectors[0]

    def _var(self, slot, v):
        ref = (slot << REF_BITS) | v["ref"] if v["ref"] else 0
        return Var(v["name"], v["value"], v["type"], ref, v.get("count"), v.get("output", ""))

    def threads(self):
        with self._lock:
            return [tuple(t) for t in self._ask(self._inspector(), "threads")]

    def frames(self, thread=None):
        with self._lock:
            key = self.stop.thread if thread is None else thread
            if key not in self._frames:
                self._frames[key] = [Frame(**f) for f in
                                     self._ask(self._inspector(), "frames", thread=key)]
            return list(self._frames[key])

    def variables(self, frame_index=0, scope="locals", thread=None):
        with self._lock:
            if scope not in ("locals", "globals"):
                raise DebuggerError(f"unknown scope {scope!r}: locals or globals")
            answer = self._ask(self._inspector(), "variables", frame=frame_index, scope=scope,
                               thread=thread)
            return [self._var(0, v) for v in answer]

    def children(self, ref, start=0, count=None):
        with self._lock:
            slot, local = ref >> REF_BITS, ref & ((1 << REF_BITS) - 1)
            if not local or slot >= len(self._inspectors):
                raise DebuggerError(f"variable reference {ref} is not valid at this stop")
            answer = self._ask(self._inspectors[slot], "children", ref=local, start=start,
                               count=count)
            return [self._var(slot, v) for v in answer]

    def evaluate(self, expr, frame_index=0, thread=None, *, mode="repr", limit=1000):
        """mode "pprint" formats with pprint; limit caps the text."""
        with self._lock:
            inspector = self._inspector()
            try:
                forked = self._ask(inspector, "evaluate", expr=expr, frame=frame_index,
                                   thread=thread, mode=mode, limit=limit)
                proc = self._await_hello(forked["forked"])
            except DebuggerError as exc:
                return Var(expr, str(exc), "error")
            self._inspectors.append(proc)
            slot = len(self._inspectors) - 1
            try:
                answer = self._wait_answer(proc, EVALUATE_TIMEOUT)
            except TimeoutError:
                self._inspectors.pop()
                self._discard(proc)
                return Var(expr, f"the evaluation did not finish within {EVALUATE_TIMEOUT:.0f} s",
                           "error")
            var = self._var(slot, answer["result"])
            if not var.ref:
                self._inspectors.pop()
                self._discard(proc)
            return var

    def exception_info(self):
        with self._lock:
            if self.stop.reason == "crash" and self._end and self._end.get("exception"):
                kind, message = self._end["exception"]
                return {"type": kind, "message": message, "traceback": self._end["traceback"]}
            if self.stop.reason == "end":
                return None
            return self._ask(self._inspector(), "exception")

    def source_changed(self):
        """Source files whose checksum differs from the recording's (with the
        path map the replay used, found copies included)."""
        return _session.changed_sources(self._header, self.recording,
                                        [tuple(p) for p in self._info.get("path_map", [])])

    # -- the end ----------------------------------------------------------------------------

    def close(self):
        """Kill every replay process; idempotent."""
        with self._lock:
            self._finalizer()
            with contextlib.suppress(AttributeError, OSError):
                self._listener.close()
            with contextlib.suppress(AttributeError, OSError):
                self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
