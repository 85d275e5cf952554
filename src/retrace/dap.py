"""`retrace dap`: the Debug Adapter Protocol server for replay debugging.

It owns the protocol side only: Content-Length framing, request/response/event
sequencing, the mapping of DAP ids (threads, frames, variable handles,
breakpoints) to the engine's, and the policies a front end adds (stop at the
crash on launch, just-my-code stepping, hex formatting, progress reports). All
replay work goes through the debugger engine's API (retrace.debugger, see
docs/vscode.md for what each request does).

A reader thread reads requests and queues them; the main thread answers them
one at a time. `cancel` and `pause` are answered by the reader thread, so they
reach a request that is still queued or a move that is still running.

Stdio by default: the protocol gets a private copy of fd 1, and fd 1 itself is
pointed at stderr, so that nothing else this process or its children print can
corrupt the stream.
"""
import json
import os
import queue
import re
import signal
import socket
import sys
import threading
import traceback

from .debugger import Debugger, DebuggerError, is_user_code

PROGRESS_AFTER = 0.5     # seconds a move runs before it reports progress
JUST_MY_CODE_LIMIT = 200  # step-outs tried to leave library code after a step

EXCEPTION_FILTERS = [
    {"filter": "raised", "label": "Raised Exceptions", "default": False,
     "description": "Stop wherever an exception is raised, caught or not."},
    {"filter": "uncaught", "label": "Uncaught Exceptions", "default": True,
     "description": "Stop at the exception that ended the recorded run."},
]

CAPABILITIES = {
    "supportsConfigurationDoneRequest": True,
    "supportsStepBack": True,
    "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True,
    "supportsLogPoints": True,
    "supportsFunctionBreakpoints": True,
    "supportsEvaluateForHovers": True,
    "exceptionBreakpointFilters": EXCEPTION_FILTERS,
    "supportsExceptionInfoRequest": True,
    "supportsSteppingGranularity": True,
    "supportsRestartFrame": True,
    "supportsGotoTargetsRequest": True,
    "supportsTerminateRequest": True,
    "supportsDelayedStackTraceLoading": True,
    "supportsValueFormattingOptions": True,
    "supportsCancelRequest": True,
    "supportsSetVariable": False,
    "supportsRestartRequest": False,
}

# Engine stop reasons -> DAP stopped-event reasons.
STOP_REASONS = {
    "entry": "entry", "step": "step", "breakpoint": "breakpoint",
    "function breakpoint": "function breakpoint", "exception": "exception",
    "crash": "exception", "start": "step", "goto": "goto", "pause": "pause",
}

# Under justMyCode, a step that ends in library code goes on with the step-out
# of the same direction.
STEP_OUT = {+1: "step_out", -1: "reverse_step_out"}
SEARCHES = {"cont": "Replaying forward to the next stop",
            "reverse_continue": "Searching backward for the previous stop"}

INTEGER = re.compile(r"-?[0-9]+")
INDEXED_TYPES = {"list", "tuple", "deque", "set", "frozenset", "bytearray", "array", "range"}


class RequestError(Exception):
    """A request that cannot be carried out; the message goes to the user."""


class Connection:
    """Content-Length framed JSON messages over two binary streams."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.seq = 0
        self.lock = threading.Lock()

    def read(self):
        """The next message, or None at the end of the stream."""
        length = None
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                if length is not None:
                    break
                continue
            name, _, value = line.decode("ascii", "replace").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = self.rfile.read(length)
        if len(body) < length:
            return None
        return json.loads(body)

    def send(self, message):
        with self.lock:
            self.seq += 1
            message["seq"] = self.seq
            body = json.dumps(message, default=str).encode("utf-8")
            self.wfile.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.wfile.flush()

    def event(self, name, body=None):
        self.send({"type": "event", "event": name, "body": body or {}})

    def respond(self, request, body=None, error=None):
        message = {"type": "response", "request_seq": request["seq"],
                   "command": request["command"], "success": error is None}
        if error is None:
            message["body"] = body or {}
        else:
            message["message"] = error
            message["body"] = {"error": {"id": 1, "format": error, "showUser": True}}
        self.send(message)


class Adapter:
    """One debug session: the requests of one client against one Debugger."""

    def __init__(self, conn):
        self.conn = conn
        self.dbg = None
        self.client = {}
        self.just_my_code = True
        self.stop_at_end = False
        self.stop_at_crash = True
        self.stop_on_entry = False
        self.handles = {}          # variablesReference -> what it expands
        self.frame_ids = {}        # DAP frame id -> (thread, frame index)
        self.source_bps = {}       # file -> engine breakpoint ids
        self.function_bps = []
        self.goto_targets = {}     # gotoTargets id -> (file, line)
        self.queue = queue.Queue()
        self.cancelled = set()     # seqs of queued requests that were cancelled
        self.running = None        # the request whose move is running
        self.progress = 0
        self.partial = {}          # output category -> text after its last newline
        self.done = False

    # -- the loop -----------------------------------------------------------

    def serve(self):
        reader = threading.Thread(target=self.read_requests, name="dap-reader", daemon=True)
        reader.start()
        try:
            while not self.done:
                request = self.queue.get()
                if request is None:
                    break
                self.dispatch(request)
        finally:
            self.close()

    def read_requests(self):
        while True:
            try:
                message = self.conn.read()
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"retrace dap: unreadable message: {exc}\n")
                message = None
            if message is None:
                self.queue.put(None)
                return
            if message.get("type") != "request":
                continue
            if message.get("command") == "cancel":
                self.cancel(message)
            elif message.get("command") == "pause":
                self.pause(message)
            else:
                self.queue.put(message)

    def dispatch(self, request):
        command = request.get("command", "")
        if request["seq"] in self.cancelled:
            self.cancelled.discard(request["seq"])
            self.conn.respond(request, error="cancelled")
            return
        handler = getattr(self, "request_" + command, None)
        if handler is None:
            self.conn.respond(request, error=f"retrace dap does not support '{command}'")
            return
        if self.dbg is None and command not in ("initialize", "launch", "disconnect",
                                                "terminate", "attach"):
            self.conn.respond(request, error=f"'{command}' before a recording was launched")
            return
        try:
            body = handler(request.get("arguments") or {})
        except RequestError as exc:
            self.conn.respond(request, error=str(exc))
            return
        except DebuggerError as exc:
            self.conn.respond(request, error=str(exc))
            return
        except Exception as exc:
            traceback.print_exc()
            self.conn.respond(request, error=f"retrace dap: internal error in '{command}': "
                                             f"{type(exc).__name__}: {exc}")
            return
        if isinstance(body, Move):
            self.conn.respond(request, body.response)
            self.run_move(request, body)
        else:
            self.conn.respond(request, body)

    def close(self):
        if self.dbg is not None:
            self.dbg.close()

    # -- cancel, pause, progress -----------------------------------------------

    def cancel(self, request):
        args = request.get("arguments") or {}
        if "requestId" in args:
            self.cancelled.add(args["requestId"])
        running = self.running
        if running is not None and (args.get("progressId") == running.progress_id
                                    or args.get("requestId") == running.request_seq):
            self.interrupt()
        self.conn.respond(request)

    def pause(self, request):
        self.interrupt()                   # nothing running: already paused
        self.conn.respond(request)

    def interrupt(self):
        """Stops the running move, forward or backward, within 1024 steps
        (the engine's pause())."""
        if self.running is not None:
            self.dbg.pause()

    # -- moves ----------------------------------------------------------------

    def run_move(self, request, move):
        move.request_seq = request["seq"]
        progress = None
        if self.client.get("supportsProgressReporting"):
            self.progress += 1
            move.progress_id = f"retrace-{self.progress}"
            progress = Progress(self.conn, move.progress_id, move.title, request["seq"])
        self.running = move
        try:
            stop = move.run()
        except Exception as exc:
            if not isinstance(exc, DebuggerError):
                traceback.print_exc()
            self.conn.event("output", {"category": "stderr", "output": f"retrace: {exc}\n"})
            stop = self.dbg.stop
        finally:
            self.running = None
            if progress:
                progress.end()
        self.report(stop)

    def move(self, name, direction, title=None):
        def run():
            stop = getattr(self.dbg, name)()
            return self.just_my_code_fixup(stop, name, direction)
        return Move(run, title or SEARCHES.get(name, "Replaying"))

    def just_my_code_fixup(self, stop, name, direction):
        if not self.just_my_code:
            return stop
        for _ in range(JUST_MY_CODE_LIMIT):
            if stop.reason != "step" or is_user_code(stop.file):
                break
            stop = getattr(self.dbg, STEP_OUT[direction])()
        return stop

    def report(self, stop):
        """Tells the client where the replay is now."""
        self.handles.clear()
        self.frame_ids.clear()
        self.flush_output()
        if stop.reason == "end" and not self.stop_at_end:
            self.conn.event("output", {"category": "console",
                                       "output": "retrace: the replay reached the end of the "
                                                 "recording\n"})
            if stop.exit_status is not None:
                self.conn.event("exited", {"exitCode": stop.exit_status})
            self.conn.event("terminated")
            return
        body = {"reason": STOP_REASONS.get(stop.reason, "step"),
                "threadId": stop.thread + 1, "allThreadsStopped": True,
                "preserveFocusHint": False}
        if stop.reason == "end":
            body["description"] = "End of the recording"
        elif stop.reason == "start":
            body["description"] = "Start of the recording"
        elif stop.exception:
            kind = "Uncaught" if stop.reason == "crash" else "Raised"
            body["description"] = f"{kind} {stop.exception[0]}"
            body["text"] = f"{stop.exception[0]}: {stop.exception[1]}"
        if stop.breakpoint_ids:
            body["hitBreakpointIds"] = list(stop.breakpoint_ids)
        self.conn.event("stopped", body)

    # -- session --------------------------------------------------------------

    def request_initialize(self, args):
        self.client = args
        return CAPABILITIES

    def request_attach(self, args):
        raise RequestError("retrace replays a recording: use a 'launch' configuration")

    def request_launch(self, args):
        recording = args.get("recording")
        if not recording or not isinstance(recording, str):
            raise RequestError("the launch configuration needs \"recording\": the path of "
                               "a .retrace file")
        recording = os.path.join(args.get("cwd") or os.getcwd(), os.path.expanduser(recording))
        if not os.path.isfile(recording):
            raise RequestError(f"no such recording: {recording}")
        path_map = {}
        for m in args.get("pathMappings") or []:
            if not isinstance(m, dict) or "remoteRoot" not in m or "localRoot" not in m:
                raise RequestError("pathMappings entries are {\"localRoot\": ..., "
                                   "\"remoteRoot\": ...}")
            path_map[m["remoteRoot"]] = m["localRoot"]
        self.just_my_code = bool(args.get("justMyCode", True))
        self.stop_at_crash = bool(args.get("stopAtCrash", True))
        self.stop_on_entry = bool(args.get("stopOnEntry", False))
        self.stop_at_end = bool(args.get("stopAtEnd", False))
        self.dbg = Debugger(recording, pid=args.get("pid"), path_map=path_map or None,
                            on_output=self.output)
        for file in self.dbg.source_changed():
            self.conn.event("output", {
                "category": "console",
                "output": f"retrace: warning: {file} differs from the file the recording ran; "
                          "lines and values shown for it may not match the source\n"})
        self.conn.event("initialized")
        return {}

    def output(self, stream, text):
        """Recorded output comes in the program's writes (a traceback's carets
        one by one): the console gets whole lines, the rest at the next stop."""
        category = stream if stream in ("stdout", "stderr") else "console"
        head, newline, self.partial[category] = (self.partial.get(category, "")
                                                 + text).rpartition("\n")
        if newline:
            self.conn.event("output", {"category": category, "output": head + newline})

    def flush_output(self):
        for category, text in self.partial.items():
            if text:
                self.conn.event("output", {"category": category, "output": text})
        self.partial.clear()

    def request_configurationDone(self, args):
        """The breakpoints are set: go to where the session starts."""
        def first_stop():
            if self.stop_on_entry:
                return self.dbg.stop
            if self.stop_at_crash:
                try:
                    return self.dbg.to_crash()
                except DebuggerError:
                    pass    # the recorded run did not crash
            return self.just_my_code_fixup(self.dbg.cont(), "cont", +1)
        return Move(first_stop, "Replaying to the crash" if self.stop_at_crash
                    else "Replaying")

    def request_disconnect(self, args):
        self.done = True
        self.close()
        return {}

    def request_terminate(self, args):
        self.close()
        self.conn.event("terminated")
        return {}

    # -- breakpoints ------------------------------------------------------------

    def request_setBreakpoints(self, args):
        source = args.get("source") or {}
        file = source.get("path")
        if not file:
            raise RequestError("breakpoints need a source file path")
        for bp_id in self.source_bps.pop(file, []):
            self.dbg.remove_breakpoint(bp_id)
        ids, result = [], []
        for bp in args.get("breakpoints") or []:
            try:
                bp_id = self.dbg.add_breakpoint(
                    file, bp["line"], condition=bp.get("condition") or None,
                    hit_condition=bp.get("hitCondition") or None,
                    log_message=bp.get("logMessage") or None)
            except DebuggerError as exc:
                result.append({"verified": False, "line": bp["line"], "message": str(exc)})
                continue
            ids.append(bp_id)
            result.append({"id": bp_id, "verified": True, "line": bp["line"], "source": source})
        self.source_bps[file] = ids
        return {"breakpoints": result}

    def request_setFunctionBreakpoints(self, args):
        for bp_id in self.function_bps:
            self.dbg.remove_breakpoint(bp_id)
        self.function_bps, result = [], []
        for bp in args.get("breakpoints") or []:
            try:
                bp_id = self.dbg.add_function_breakpoint(bp["name"],
                                                         condition=bp.get("condition") or None)
            except DebuggerError as exc:
                result.append({"verified": False, "message": str(exc)})
                continue
            self.function_bps.append(bp_id)
            result.append({"id": bp_id, "verified": True})
        return {"breakpoints": result}

    def request_setExceptionBreakpoints(self, args):
        filters = set(args.get("filters") or [])
        filters.update(o["filterId"] for o in args.get("filterOptions") or [])
        unknown = filters - {"raised", "uncaught"}
        if unknown:
            raise RequestError(f"unknown exception filters: {', '.join(sorted(unknown))}")
        self.dbg.set_exception_breakpoints(raised="raised" in filters,
                                           uncaught="uncaught" in filters,
                                           user_code_only=self.just_my_code)
        return {"breakpoints": [{"verified": True} for _ in filters]}

    # -- moves --------------------------------------------------------------------

    def request_continue(self, args):
        move = self.move("cont", +1)
        move.response = {"allThreadsContinued": True}
        return move

    def request_next(self, args):
        return self.move("next", +1)

    def request_stepIn(self, args):
        return self.move("step", +1)

    def request_stepOut(self, args):
        return self.move("step_out", +1)

    def request_stepBack(self, args):
        return self.move("reverse_next", -1)

    def request_reverseContinue(self, args):
        return self.move("reverse_continue", -1)

    def request_restartFrame(self, args):
        thread, index = self.frame(args.get("frameId"))
        if thread != self.dbg.stop.thread:
            raise RequestError("restartFrame works on the frames of the stopped thread")
        return Move(lambda: self.dbg.restart_frame(index), "Travelling back to the call")

    def request_gotoTargets(self, args):
        """One target per line: travel back to the last time it ran (see
        docs/vscode.md); a line that has not run yet cannot be a target."""
        line = args.get("line")
        path = (args.get("source") or {}).get("path")
        if not path or not line:
            raise RequestError("gotoTargets needs a source path and a line")
        self.goto_targets = {line: (path, line)}
        return {"targets": [{"id": line, "line": line,
                             "label": f"Travel back to when line {line} last ran"}]}

    def request_goto(self, args):
        target = self.goto_targets.get(args.get("targetId"))
        if target is None:
            raise RequestError("unknown goto target: ask gotoTargets first")
        path, line = target
        stop = self.dbg.last_run_of(path, line)
        if stop is None:
            raise RequestError(f"line {line} of {os.path.basename(path)} has not run before "
                               "this point of the recording")
        return Move(lambda: stop, "Travelling back")

    # -- inspection ------------------------------------------------------------------

    def request_threads(self, args):
        return {"threads": [{"id": number + 1, "name": name}
                            for number, name in self.dbg.threads()]}

    def request_stackTrace(self, args):
        thread = args.get("threadId", 1) - 1
        frames = self.dbg.frames(thread)
        start = args.get("startFrame") or 0
        levels = args.get("levels") or len(frames)
        fmt = args.get("format") or {}
        result = []
        for frame in frames[start:start + levels]:
            frame_id = len(self.frame_ids) + 1
            self.frame_ids[frame_id] = (thread, frame.index)
            name = frame.function
            if fmt.get("module"):
                name = f"{os.path.splitext(os.path.basename(frame.file))[0]}.{name}"
            if fmt.get("line"):
                name = f"{name} Line {frame.line}"
            result.append({"id": frame_id, "name": name, "line": frame.line, "column": 1,
                           "source": self.source(frame.file),
                           "canRestart": thread == self.dbg.stop.thread
                           and frame.start is not None})
        return {"stackFrames": result, "totalFrames": len(frames)}

    def source(self, file):
        source = {"name": os.path.basename(file)}
        if file and not file.startswith("<") and os.path.exists(file):
            source["path"] = file
        if self.just_my_code and not is_user_code(file):
            source["presentationHint"] = "deemphasize"
        return source

    def frame(self, frame_id):
        if frame_id not in self.frame_ids:
            raise RequestError(f"unknown frame id {frame_id}: the replay has moved since")
        return self.frame_ids[frame_id]

    def request_scopes(self, args):
        thread, index = self.frame(args.get("frameId"))
        return {"scopes": [
            {"name": "Locals", "presentationHint": "locals", "expensive": False,
             "variablesReference": self.new_handle(("scope", thread, index, "locals"))},
            {"name": "Globals", "expensive": True,
             "variablesReference": self.new_handle(("scope", thread, index, "globals"))},
        ]}

    def new_handle(self, what):
        ref = len(self.handles) + 1
        self.handles[ref] = what
        return ref

    def request_variables(self, args):
        what = self.handles.get(args.get("variablesReference"))
        if what is None:
            raise RequestError("unknown variablesReference: the replay has moved since")
        hex_format = bool((args.get("format") or {}).get("hex"))
        if what[0] == "scope":
            _, thread, index, scope = what
            children = self.dbg.variables(index, scope, thread)
        else:
            start = args.get("start") or 0
            count = args.get("count") or None
            if args.get("filter") == "named":
                children = [] if what[2] else self.dbg.children(what[1])
            else:
                children = self.dbg.children(what[1], start, count)
        return {"variables": [self.variable(var, hex_format) for var in children]}

    def variable(self, var, hex_format=False):
        value = var.value
        if hex_format and var.type == "int" and INTEGER.fullmatch(value):
            value = hex(int(value))
        result = {"name": var.name, "value": value, "type": var.type, "variablesReference": 0}
        if var.ref:
            indexed = var.count is not None and var.type in INDEXED_TYPES
            result["variablesReference"] = self.new_handle(("var", var.ref, indexed))
            if indexed:
                result["indexedVariables"] = var.count
            elif var.count is not None:
                result["namedVariables"] = var.count
        return result

    def request_evaluate(self, args):
        expression = args.get("expression", "")
        thread, index = (self.frame(args["frameId"]) if args.get("frameId")
                         else (self.dbg.stop.thread, 0))
        if args.get("context") == "clipboard":
            var = self.dbg.evaluate(expression, index, thread, mode="pprint", limit=1 << 20)
        else:
            var = self.dbg.evaluate(expression, index, thread)
        if var.output:
            self.conn.event("output", {"category": "console", "output": var.output})
        if var.type == "error":
            raise RequestError(var.value)
        result = self.variable(var, bool((args.get("format") or {}).get("hex")))
        result["result"] = result.pop("value")
        del result["name"]
        return result

    def request_exceptionInfo(self, args):
        info = self.dbg.exception_info()
        if info is None:
            raise RequestError("the replay is not stopped at an exception")
        crash = self.dbg.stop.reason == "crash"
        return {"exceptionId": info["type"], "description": info["message"],
                "breakMode": "unhandled" if crash else "always",
                "details": {"typeName": info["type"], "message": info["message"],
                            "stackTrace": info.get("traceback", "")}}

    def request_source(self, args):
        raise RequestError("the source of this frame is not on this machine; use "
                           "\"pathMappings\" to say where the recorded code is")


class Progress:
    """progressStart once a move has run PROGRESS_AFTER seconds; progressEnd
    when it ends, if it was started."""

    def __init__(self, conn, progress_id, title, request_seq):
        self.conn, self.progress_id = conn, progress_id
        self.lock = threading.Lock()
        self.started = self.ended = False
        self.timer = threading.Timer(PROGRESS_AFTER, self.start, (title, request_seq))
        self.timer.daemon = True
        self.timer.start()

    def start(self, title, request_seq):
        with self.lock:
            if not self.ended:
                self.started = True
                self.conn.event("progressStart", {
                    "progressId": self.progress_id, "title": title,
                    "requestId": request_seq, "cancellable": True})

    def end(self):
        self.timer.cancel()
        with self.lock:
            self.ended = True
            if self.started:
                self.conn.event("progressEnd", {"progressId": self.progress_id})


class Move:
    """A request that moves the replay: answered at once, then run, then
    reported with a stopped (or terminated) event."""

    def __init__(self, run, title):
        self.run, self.title = run, title
        self.response = {}
        self.progress_id = None
        self.request_seq = None


def exit_on_sigterm():
    """A client that kills the adapter still gets the replay processes closed
    (serve() closes the debugger on the way out)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def serve_stdio():
    exit_on_sigterm()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        Adapter(Connection(sys.stdin.buffer, protocol)).serve()
    finally:
        # The reader thread may still be blocked on stdin: leave without finalizing.
        sys.stderr.flush()
        os._exit(0)


def serve_port(port, host="127.0.0.1"):
    exit_on_sigterm()
    with socket.create_server((host, port)) as server:
        sys.stderr.write(f"retrace dap: listening on {host}:{server.getsockname()[1]}\n")
        sys.stderr.flush()
        conn, _ = server.accept()
    with conn, conn.makefile("rb") as rfile, conn.makefile("wb") as wfile:
        Adapter(Connection(rfile, wfile)).serve()
