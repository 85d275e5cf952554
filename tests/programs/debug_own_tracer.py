"""For the debugger tests: a program with its own trace and profile
functions, as coverage tools and profilers install them.

A line counter installed with sys.settrace (global function for calls, a
local one per frame it returns, opcode events in one function) and
threading.settrace (for the threads it starts), plus a sys.setprofile call
counter. It counts the events of this file by kind, and those of other
files (the standard library's), except Retrace's own: recording shows
Retrace's Python frames to a trace function, replay does not. It checks
that sys.gettrace() is its own function and prints the counts, which
depend on every event it was given. Then a trace function that raises,
which makes CPython remove it.

    python debug_own_tracer.py
"""
import sys
import threading
import time

HERE = __file__
counts = {"call": 0, "line": 0, "return": 0, "exception": 0, "opcode": 0, "c_call": 0, "other": 0}
lines = []
others = set()


def local_tracer(frame, event, arg):
    counts[event] += 1
    if event == "line":
        lines.append(frame.f_lineno)
    return local_tracer


def global_tracer(frame, event, arg):
    if "/retrace/" in frame.f_code.co_filename:
        return None                     # no local tracer: no more events there
    if frame.f_code.co_filename != HERE:
        counts["other"] += 1
        others.add(frame.f_code.co_name)
        return None
    counts[event] += 1
    if frame.f_code.co_name == "opcodes":
        frame.f_trace_opcodes = True
    return local_tracer


def profiler(frame, event, arg):
    if event == "c_call" and frame.f_code.co_filename == HERE:
        counts["c_call"] += 1


def raising_tracer(frame, event, arg):
    if event == "line" and frame.f_code.co_name == "opcodes":
        raise RuntimeError("the tracer gave up")
    return raising_tracer


def risky(x):
    if x % 3 == 0:
        raise ValueError(x)
    return x + 1


def opcodes(n):
    return n * 2 + 1


def work(rounds):
    total = 0
    for i in range(rounds):
        try:
            total += risky(i)
        except ValueError:
            total -= 1
        total += opcodes(i)
    return total


def worker(results, n):
    results.append(work(n) + int(time.time() > 0))


def main():
    print("settrace", sys.settrace.__module__, sys.settrace.__qualname__, repr(sys.settrace),
          sys.settrace.__doc__.splitlines()[0])
    sys.settrace(global_tracer)
    threading.settrace(global_tracer)
    sys.setprofile(profiler)
    assert sys.gettrace() is global_tracer, sys.gettrace()
    started = time.time()
    results = []
    threads = [threading.Thread(target=worker, args=(results, 5 + t)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = work(10)
    sys.setprofile(None)
    sys.settrace(None)
    assert sys.gettrace() is None
    print("results", sorted(results), total, time.time() >= started)
    print("events", sorted(counts.items()))
    print("lines", len(lines), sum(lines), "others", len(others))
    sys.settrace(raising_tracer)
    try:
        work(3)
    except RuntimeError as exc:
        print("raised", exc, sys.gettrace())
    print("done", work(4))


main()
