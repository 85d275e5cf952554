"""A line tracer for the replays of tests/test_threads.py.

tests/test_threads.py puts this directory on PYTHONPATH for replay processes
only, with LINE_TRACER_FILE (the program's path) and LINE_TRACER_OUT (where to
write) in the environment. `site` imports this module before `retrace._run`
starts, that is before Retrace patches anything, so:

- the real os.open/os.write/os.close are captured here, in a closure (Retrace
  rewrites module-level references to the functions it replaces, not closure
  cells), and the output is written with them: no boundary call;
- nothing is imported that Retrace or the program would not import anyway
  (importing `threading` early, say, would skip lock events the recording has:
  `threading` is imported lazily by the program on 3.11).

Every `line` event in the program file, in any thread, is appended to one
in-memory list as (thread name, line number). No lock is needed: in replay
only the thread holding the demultiplexer's baton runs Python code, and the
list's append is atomic anyway. Threads started through `threading` inherit
the tracer: the global trace function installs itself with
threading.settrace() as soon as the program has imported `threading`.

The list is written when the program's atexit functions run (retrace._run
runs them as part of the program, before the end of the recording is
checked); the function is registered here, before the program registers any,
so it runs after all of them. Output: a header line "sha256 count" and then
one "thread<TAB>line" per event, zlib-compressed.
"""
import os
import sys


def _install(program, out_path):
    import atexit
    from _thread import get_ident

    events = []
    append = events.append
    modules = sys.modules
    hooked = []
    unnamed = {}
    real_open, real_write, real_close = os.open, os.write, os.close

    def thread_name():
        # Not threading.current_thread(): for a thread that is not (or no
        # longer) registered it makes a _DummyThread, whose locks cross the
        # boundary.
        threading = modules.get("threading")
        active = getattr(threading, "_active", None)
        # threading's get_ident: in replay, the recorded identifiers that key _active
        ident = threading.get_ident() if threading is not None else get_ident()
        thread = active.get(ident) if active is not None else None
        if thread is not None:
            return thread.name
        if ident not in unnamed:
            unnamed[ident] = f"unregistered-{len(unnamed)}"
        return unnamed[ident]

    def local(frame, event, arg):
        if event == "line":
            append((thread_name(), frame.f_lineno))
        return local

    def calls(frame, event, arg):
        if not hooked:
            threading = modules.get("threading")
            if threading is not None and hasattr(threading, "settrace"):
                threading.settrace(calls)
                hooked.append(True)
        if frame.f_code.co_filename == program:
            return local
        return None

    def write_out():
        sys.settrace(None)
        try:
            from retrace import _engine
        except ImportError:
            _engine = None
        if _engine is not None:
            _engine.suspend()
        try:
            import hashlib
            import zlib
            text = "".join(f"{name}\t{line}\n" for name, line in events).encode()
            head = f"{hashlib.sha256(text).hexdigest()} {len(events)}\n".encode()
            data = zlib.compress(head + text, 6)
            fd = real_open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                while data:
                    data = data[real_write(fd, data):]
            finally:
                real_close(fd)
        finally:
            if _engine is not None:
                _engine.resume()

    atexit.register(write_out)
    sys.settrace(calls)


if os.environ.get("LINE_TRACER_FILE") and os.environ.get("LINE_TRACER_OUT"):
    _install(os.environ["LINE_TRACER_FILE"], os.environ["LINE_TRACER_OUT"])
