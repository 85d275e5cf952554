"""Questions about a paused replay, answered in a throwaway copy of it.

csrc/checkpoint.c forks a paused replay process and calls serve() in the
copy; retrace.debugger asks it about threads, frames, variables and
evaluations. The copy is thrown away when the replay moves on, so nothing
done here, not even `items.pop()`, reaches the replay. Each evaluation runs
in a copy of its own, so one evaluation does not change what the next sees.
The copies' boundary refuses external calls (they raise RuntimeError): an
evaluated `time.time()` or `open(path)` neither consumes the recording nor
touches the outside world. Retrace's own work here (the protocol) runs with
the boundary switched off.

test_breakpoint() runs the same way, in a copy of a running replay, to test
a breakpoint's condition or format a logpoint's message.
"""
import contextlib
import io
import json
import os
import pprint
import re
import reprlib
import struct
import sys
import traceback

from . import _engine, _threads

REPR_LIMIT = 1000
SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None))
CONTAINERS = (dict, list, tuple, set, frozenset)


# -- the protocol: frames of a u32 length, a kind byte ('J') and JSON ---------

def send(fd, message):
    data = json.dumps(message).encode()
    data = struct.pack("<IB", len(data) + 1, ord("J")) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive(fd):
    head = _read_exactly(fd, 5)
    if head is None:
        return None
    length, _ = struct.unpack("<IB", head)
    body = _read_exactly(fd, length - 1)
    return None if body is None else json.loads(body)


@contextlib.contextmanager
def program_code():
    """The program's own code runs (repr, an evaluation): the boundary is on,
    and refuses every external call."""
    _engine.resume()
    try:
        yield
    finally:
        _engine.suspend()


def _shorten(text, limit):
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Inspector:
    def __init__(self, state):
        self.frame = state["frame"]
        self.exception = state["exception"]
        self.tid = state["tid"]
        self.threads = {tid: (ident, {id(frame): start for frame, start in stack})
                        for tid, ident, stack in state["threads"]}
        self.objects = [None]          # ref -> object; 0 is "no children"
        self.repr = reprlib.Repr()
        self.repr.maxstring = self.repr.maxother = REPR_LIMIT
        self.repr.maxlist = self.repr.maxtuple = self.repr.maxdict = 100
        self.repr.maxset = self.repr.maxfrozenset = self.repr.maxdeque = 100
        self.repr.maxlevel = 4

    def handle(self, request):
        return getattr(self, "op_" + request["op"])(**request.get("args", {}))

    # -- frames ------------------------------------------------------------

    def _top(self, tid):
        if tid == self.tid:
            return self.frame
        ident = self.threads.get(tid, (None,))[0]
        return sys._current_frames().get(ident)

    def _frames(self, tid):
        frames, frame = [], self._top(tid)
        while frame is not None:
            if _engine.debug_counted(frame.f_code):
                frames.append(frame)
            frame = frame.f_back
        return frames

    def _frame(self, index, thread):
        frames = self._frames(self.tid if thread is None else thread)
        if not frames:
            return None
        if not 0 <= index < len(frames):
            raise IndexError(f"no frame {index} (the stack has {len(frames)})")
        return frames[index]

    def op_threads(self):
        import threading
        alive = sys._current_frames()
        threads = []
        for tid, (ident, _) in sorted(self.threads.items()):
            if tid == self.tid or ident in alive:
                thread = threading._active.get(_threads.program_ident(ident))
                threads.append([tid, thread.name if thread else f"thread {tid}"])
        return threads

    def op_frames(self, thread=None):
        tid = self.tid if thread is None else thread
        starts = self.threads.get(tid, (None, {}))[1]
        described = []
        for i, frame in enumerate(self._frames(tid)):
            code = frame.f_code
            lines = [line for _, _, line in code.co_lines() if line is not None]
            described.append({"index": i, "file": code.co_filename, "line": frame.f_lineno,
                              "function": code.co_qualname, "thread": tid,
                              "start": starts.get(id(frame)), "first_line": code.co_firstlineno,
                              "last_line": max(lines, default=code.co_firstlineno)})
        return described

    # -- values ------------------------------------------------------------

    def describe(self, name, value, mode="repr", limit=REPR_LIMIT):
        count, expandable = None, False
        with program_code():
            try:
                text = pprint.pformat(value) if mode == "pprint" else \
                    repr(value) if limit > REPR_LIMIT else self.repr.repr(value)
            except BaseException as exc:
                text = f"<repr failed: {type(exc).__name__}: {exc}>"
            try:
                if isinstance(value, CONTAINERS):
                    count = len(value)
                    expandable = count > 0
                elif not isinstance(value, SCALARS):
                    expandable = bool(self._attributes(value))
            except BaseException:
                expandable = False
        ref = 0
        if expandable:
            self.objects.append(value)
            ref = len(self.objects) - 1
        return {"name": name, "value": _shorten(text, limit), "type": type(value).__qualname__,
                "ref": ref, "count": count}

    @staticmethod
    def _attributes(value):
        names = dict(getattr(value, "__dict__", None) or {})
        for cls in type(value).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if isinstance(slot, str) and slot not in names and hasattr(value, slot):
                    names[slot] = getattr(value, slot)
        return names

    def _children(self, value):
        with program_code():
            if isinstance(value, dict):
                return [(self.repr.repr(key), item) for key, item in value.items()]
            if isinstance(value, (list, tuple, set, frozenset)):
                return [(str(i), item) for i, item in enumerate(value)]
            return list(self._attributes(value).items())

    def op_variables(self, frame=0, scope="locals", thread=None):
        f = self._frame(frame, thread)
        if f is None:
            namespace = {} if scope == "locals" else vars(sys.modules["__main__"])
        else:
            namespace = f.f_locals if scope == "locals" else f.f_globals
        return [self.describe(str(name), value) for name, value in list(namespace.items())
                if name != "__builtins__"]

    def op_children(self, ref, start=0, count=None):
        if not 0 < ref < len(self.objects):
            raise KeyError(f"no variable reference {ref} here")
        children = self._children(self.objects[ref])
        end = None if count is None else start + count
        return [self.describe(name, value) for name, value in children[start:end]]

    def op_evaluate(self, expr, frame=0, thread=None, mode="repr", limit=REPR_LIMIT):
        """Evaluate in a copy of this copy; that copy answers on a connection of
        its own, then serves the children of its result until thrown away."""
        pid = _engine.debug_fork()
        if pid:
            return {"forked": pid}
        fd = _engine.debug_reconnect("eval")
        send(fd, {"id": 0, "result": self.evaluate(expr, frame, thread, mode, limit)})
        loop(fd, self)
        os._exit(0)

    def evaluate(self, expr, frame, thread, mode, limit):
        out = io.StringIO()
        saved = sys.stdout, sys.stderr
        try:
            f = self._frame(frame, thread)
            namespace = f.f_globals if f else vars(sys.modules["__main__"])
            try:
                code = compile(expr, "<debugger>", "eval")
            except SyntaxError:
                code = compile(expr, "<debugger>", "exec")
            sys.stdout = sys.stderr = out
            with program_code():
                value = eval(code, namespace, f.f_locals if f else namespace)
        except BaseException as exc:
            result = {"name": expr, "value": f"{type(exc).__name__}: {exc}", "type": "error",
                      "ref": 0, "count": None}
        else:
            result = self.describe(expr, value, mode, limit)
        finally:
            sys.stdout, sys.stderr = saved
        result["output"] = out.getvalue()
        return result

    def op_exception(self):
        exc = self.exception
        if exc is None:
            return None
        with program_code():
            try:
                message = str(exc)
            except BaseException as error:
                message = f"<str() failed: {type(error).__name__}: {error}>"
        # formatting reads the source files: Retrace's work, not the program's
        return {"type": type(exc).__qualname__, "message": message,
                "traceback": "".join(traceback.format_exception(exc))}


def loop(fd, inspector):
    while True:
        request = receive(fd)
        if request is None:
            return
        try:
            answer = {"id": request.get("id"), "result": inspector.handle(request)}
        except Exception as exc:
            answer = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        send(fd, answer)


def serve(fd):
    """The inspector's life: answer the debugger until it hangs up."""
    _engine.set_refuse(True)
    _engine.suspend()
    loop(fd, Inspector(_engine.debug_state()))


def _format_log(message, frame):
    return re.sub(r"\{([^{}]+)\}",
                  lambda m: str(eval(m.group(1), frame.f_globals, frame.f_locals)), message)


def test_breakpoint(frame, condition, log):
    """In a copy of a running replay: (1, text) if the condition holds (text:
    the logpoint's message), (0, "") if not, (-1, error) if it raised."""
    _engine.set_refuse(True)
    try:
        if condition is not None and not eval(condition, frame.f_globals, frame.f_locals):
            return 0, ""
        return 1, "" if log is None else _format_log(log, frame)
    except BaseException as exc:
        what = f"condition {condition!r}" if condition is not None else f"log message {log!r}"
        return -1, f"breakpoint {what} raised {type(exc).__name__}: {exc}"
