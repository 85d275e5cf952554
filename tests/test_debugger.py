"""The replay debugger (issue 6): retrace.debugger and `retrace debug`.

Every test records a real program first. The debugger's API is driven from a
child Python process (a few lines of script, with a timeout like every
command here); the terminal front end is driven through `retrace debug` with
-c and stdin. Expected values come from the recorded run itself (its output,
what the LLM provider really sent), from forward moves checked against
reverse ones, or from the program's source, never from the debugger alone.
"""
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import PY, REPO, Case, assert_error_exit, run

EXAMPLE = REPO / "examples" / "llm_classify"
DRIVER_TIMEOUT = 240

PRELUDE = textwrap.dedent("""\
    import json, sys
    from retrace.debugger import Debugger, DebuggerError

    def snap(d, thread=None):
        s = d.stop
        frames = d.frames(thread) if s.reason != "end" else []
        names = [(v.name, v.value) for v in d.variables(thread=thread)] if frames else []
        return {"step": s.step, "k": s.raise_index, "thread": s.thread,
                "file": s.file, "line": s.line, "function": s.function,
                "frames": [(f.function, f.line) for f in frames], "locals": names}

    def emit(value):
        print(json.dumps(value))
    """)


def drive(world, script, *args, timeout=DRIVER_TIMEOUT):
    """Run PRELUDE + script with args in sys.argv; returns what it emit()ted."""
    result = run([PY, "-c", PRELUDE + textwrap.dedent(script), *map(str, args)],
                 cwd=world.work, env=world.replay_env(), timeout=timeout)
    assert result.code == 0, result.describe()
    return json.loads(result.out.decode().splitlines()[-1])


def debug_cli(world, trace, *args, stdin=None, cwd=None):
    return world.retrace("debug", trace, *args, stdin=stdin, cwd=cwd)


def record(world, name, *args, expect=0, env=None):
    case = Case(world, name, [world.programs / f"{name}.py"], list(args), world.work, env or {})
    rec = case.record()
    assert rec.code == expect, rec.describe()
    return rec


def line_of(path, marker):
    for number, text in enumerate(Path(path).read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


# --------------------------------------------------------------------------
# The LLM crash: from the crash back to the provider's reply


@pytest.fixture
def logging_provider(tmp_path):
    """examples/llm_classify's provider, noting every text it sends."""
    log = tmp_path / "sent.jsonl"
    proc = subprocess.Popen([PY, str(Path(__file__).parent / "programs" / "debug_provider.py"),
                             str(log), "--port", "0", "--text-rate", "0.3"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(EXAMPLE)))
    line = proc.stdout.readline().decode()
    match = re.match(r"listening on (http://\S+)", line)
    try:
        assert match, f"the provider did not start: {line!r}"
        yield proc, match.group(1), log
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_llm_crash_steps_back_to_the_provider_reply(world, logging_provider):
    proc, url, log = logging_provider
    case = Case(world, "classify", [EXAMPLE / "classify.py"], ["40"], world.work, {"LLM_URL": url})
    for _ in range(8):
        rec = case.record()
        if rec.code != 0:
            break
    assert rec.code == 1 and b"JSONDecodeError" in rec.err, rec.describe()
    proc.kill()
    proc.wait(timeout=30)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    crashing = sent[-1]             # requests are sequential: the last reply crashed it
    with pytest.raises(ValueError):
        json.loads(crashing)

    result = drive(world, """
        d = Debugger(sys.argv[1])
        crash = d.to_crash()
        steps = 0
        while not (d.stop.function == "classify_intent" and
                   "json.loads" in open(d.stop.file).read().splitlines()[d.stop.line - 1]):
            d.reverse_step()
            steps += 1
            assert steps < 500, d.stop
        var = d.evaluate("response")
        emit({"crash": [crash.reason, crash.function, crash.exception], "steps": steps,
              "at": [d.stop.step, crash.step], "value": var.value, "type": var.type})
    """, rec.trace)
    assert result["crash"][0] == "crash"
    assert result["crash"][2][0] == "JSONDecodeError"
    assert result["steps"] > 1 and result["at"][0] < result["at"][1]
    assert result["type"] == "str"
    assert result["value"] == repr(crashing)

    # the same from the terminal: up three frames from the crash, backwards
    cli = debug_cli(world, rec.trace, "--at-crash", "-c", "rr", "-c", "rr", "-c", "rr",
                    "-c", "p response", "-c", "q")
    assert cli.code == 0, cli.describe()
    out = cli.out.decode()
    assert "--Crash-- JSONDecodeError" in out, cli.describe()
    assert f"\n{crashing!r}\n" in out, cli.describe()
    assert "classify.py(50)classify_intent()" in out or "classify_intent()" in out


# --------------------------------------------------------------------------
# Positions


def test_position_invariants(world):
    """For random N and K: goto N then K steps is goto N+K (frames, line and
    locals alike), and K reverse steps from there are back at N."""
    rec = record(world, "debug_loops")
    seed = secrets.randbelow(10**6)
    result = drive(world, """
        import random
        d = Debugger(sys.argv[1])
        d.goto(10**9)
        total, rng, cases = d.total_steps, random.Random(int(sys.argv[2])), []
        for _ in range(8):
            n, k = rng.randrange(total - 60), rng.randrange(1, 50)
            d.goto(n)
            before = snap(d)
            for _ in range(k):
                d.step()
            stepped = snap(d)
            d.goto(n + k)
            direct = snap(d)
            for _ in range(k):
                d.reverse_step()
            cases.append([n, k, before, stepped, direct, snap(d)])
        emit({"total": total, "cases": cases})
    """, rec.trace, seed)
    assert result["total"] > 2000
    for n, k, before, stepped, direct, back in result["cases"]:
        assert before["step"] == back["step"] == n and stepped["step"] == n + k, (seed, n, k)
        assert stepped["function"] is not None and stepped["locals"] is not None
        assert stepped == direct, f"seed {seed}: goto {n} + {k} steps != goto {n + k}"
        assert back == before, f"seed {seed}: {k} steps and {k} reverse steps from {n}"


def test_reverse_moves_by_frame(world):
    """next/reverse next, step out/reverse step out, restart frame and
    last_run_of, checked against forward single steps."""
    rec = record(world, "debug_loops")
    program = str(world.programs / "debug_loops.py")
    result = drive(world, """
        d = Debugger(sys.argv[1])
        line = int(sys.argv[3])
        d.add_breakpoint(sys.argv[2], line, condition="i == 7")
        hit = d.cont()                           # in main, at `value = fib(...) + seed`
        d.remove_breakpoint(1)
        trail = [snap(d)]
        while True:                              # single steps to the next line of main
            d.step()
            trail.append(snap(d))
            if d.stop.function == "main":
                break
        d.goto(hit.step)
        d.next()
        nexted = snap(d)
        d.reverse_next()
        back = snap(d)
        d.step()                                  # into fib
        inside = snap(d)
        start = d.frames()[0].start
        d.step(); d.step()                        # deeper, into fib(n - 1)
        d.restart_frame([f.start for f in d.frames()].index(start))
        restarted = snap(d)
        d.reverse_step_out()
        out_back = snap(d)
        d.step(); d.step_out()
        stepped_out = snap(d)
        d.goto(10**9)
        last = d.last_run_of(sys.argv[2], line)
        emit({"hit": hit.step, "trail": trail, "nexted": nexted, "back": back, "inside": inside,
              "start": start, "restarted": restarted, "out_back": out_back,
              "stepped_out": stepped_out, "last": snap(d), "last_none": last is None})
    """, rec.trace, program, line_of(program, "value = fib(i % 12) + seed"))
    trail = result["trail"]
    assert result["nexted"] == trail[-1]                     # next = single steps to main's next line
    assert result["back"] == trail[0]                        # reverse next undoes it
    assert result["inside"]["function"] == "fib" and result["inside"]["step"] == result["hit"] + 1
    assert result["start"] == result["hit"] + 1
    assert result["restarted"] == result["inside"]           # back to the frame's first line
    assert result["out_back"] == trail[0]                    # the call site in main
    assert result["stepped_out"]["function"] == "main"
    assert result["stepped_out"]["step"] > result["inside"]["step"]
    assert not result["last_none"]
    assert result["last"]["line"] == line_of(program, "value = fib(i % 12) + seed")
    assert ("i", "59") in [tuple(v) for v in result["last"]["locals"]]


# --------------------------------------------------------------------------
# Breakpoints


def test_reverse_continue_finds_the_previous_conditional_hit(world):
    rec = record(world, "debug_loops")
    program = str(world.programs / "debug_loops.py")
    result = drive(world, """
        d = Debugger(sys.argv[1])
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]), condition="i % 7 == 3")
        forward = []
        while d.cont().reason == "breakpoint":
            forward.append([d.stop.step, d.evaluate("i").value, d.stop.breakpoint_ids])
        backward = []
        while d.reverse_continue().reason == "breakpoint":
            backward.append([d.stop.step, d.evaluate("i").value, d.stop.breakpoint_ids])
        middle = (forward[3][0] + forward[4][0]) // 2
        d.goto(middle)
        d.reverse_continue()
        emit({"forward": forward, "backward": backward, "from_middle": d.stop.step})
    """, rec.trace, program, line_of(program, "items.append(value)"))
    forward = result["forward"]
    assert [int(i) for _, i, _ in forward] == [i for i in range(60) if i % 7 == 3]
    assert all(ids == [1] for _, _, ids in forward)
    assert result["backward"] == forward[::-1]
    assert result["from_middle"] == forward[3][0]


def test_reverse_continue_and_hit_conditions(world):
    """Hit counts are counted by forward moves; reverse continue stops at every
    earlier hit whose condition holds, whatever its count, and leaves the
    counts as they are (docs/debugger.md, Breakpoints)."""
    rec = record(world, "debug_loops")
    program = str(world.programs / "debug_loops.py")
    result = drive(world, """
        d = Debugger(sys.argv[1])
        bp = d.add_breakpoint(sys.argv[2], int(sys.argv[3]), hit_condition="% 20",
                              condition="i % 2 == 0")
        forward = []
        while d.cont().reason == "breakpoint":
            forward.append(d.evaluate("i").value)
        hits = d.breakpoints()[0]["hits"]
        backward = []
        for _ in range(3):
            d.reverse_continue()
            backward.append([d.stop.reason, d.evaluate("i").value])
        after = d.breakpoints()[0]["hits"]
        again = [d.cont().reason, d.breakpoints()[0]["hits"]]
        emit({"forward": forward, "hits": hits, "backward": backward, "after": after,
              "again": again})
    """, rec.trace, program, line_of(program, "items.append(value)"))
    assert result["forward"] == ["38"]           # the 20th even i (counting from i == 0)
    assert result["hits"] == 30
    assert result["backward"] == [["breakpoint", "58"], ["breakpoint", "56"],
                                  ["breakpoint", "54"]]
    assert result["after"] == 30
    assert result["again"] == ["end", 32]        # counting on from 30: 56 and 58 are 31, 32


def test_breakpoint_kinds(world):
    """Function breakpoints, hit counts, temporary breakpoints, logpoints and
    exception breakpoints."""
    rec = record(world, "debug_loops")
    program = str(world.programs / "debug_loops.py")
    append = line_of(program, "items.append(value)")
    result = drive(world, """
        out = []
        d = Debugger(sys.argv[1], on_output=lambda stream, text: out.append([stream, text]))
        f, line = sys.argv[2], int(sys.argv[3])
        fb = d.add_function_breakpoint("risky")
        first = [d.cont().reason, d.stop.function, d.evaluate("x").value, d.stop.breakpoint_ids]
        d.remove_breakpoint(fb)
        d.goto(0)
        hb = d.add_breakpoint(f, line, hit_condition="5")
        fifth = [d.cont().reason, d.evaluate("i").value]
        after = d.cont().reason
        d.remove_breakpoint(hb)
        d.goto(0)
        d.add_breakpoint(f, line, temporary=True)
        temp = [d.cont().reason, d.evaluate("i").value, len(d.breakpoints())]
        d.goto(0)
        d.add_breakpoint(f, line, log_message="item {i} is {value}")
        end = d.cont().reason
        logs = [text for stream, text in out if stream == "console"]
        d.remove_breakpoint(4)
        d.goto(0)
        d.set_exception_breakpoints(raised=True)
        exc = d.cont()
        exc2 = d.cont()
        back = d.reverse_continue()
        last = d.to_last_exception()
        emit({"first": first, "fifth": fifth, "after": after, "temp": temp, "end": end,
              "logs": logs, "exc": [exc.reason, exc.exception, exc.function],
              "exc2": [exc2.step, exc2.exception], "back": back.step, "exc1": exc.step,
              "last": [last.reason, last.exception], "info": d.exception_info()["type"]})
    """, rec.trace, program, append)
    assert result["first"] == ["function breakpoint", "risky", "0", [1]]
    assert result["fifth"] == ["breakpoint", "4"]
    assert result["after"] == "end"
    assert result["temp"] == ["breakpoint", "0", 0]
    assert result["end"] == "end"
    printed = rec.out.decode().splitlines()
    assert len(result["logs"]) == 60
    assert result["logs"][0].startswith("item 0 is -")
    assert result["logs"][0] == f"item 0 is {printed[0].split()[1]}\n"   # "0: VALUE ..."
    assert result["exc"] == ["exception", ["ValueError", "bad 0"], "risky"]
    assert result["exc2"][1] == ["ValueError", "bad 5"]
    assert result["back"] == result["exc1"]
    assert result["last"] == ["exception", ["ValueError", "bad 55"]]
    assert result["info"] == "ValueError"


def test_raised_exceptions_in_user_code_only(world):
    """user_code_only: continue and reverse continue pass over the raises inside
    the standard library (filtered in the replay process) and stop at the
    program's own, the same ones single steps find."""
    rec = record(world, "debug_raises")
    program = str(world.programs / "debug_raises.py")
    result = drive(world, """
        d = Debugger(sys.argv[1])
        d.set_exception_breakpoints(raised=True)
        first = d.cont()
        d.goto(0)
        d.set_exception_breakpoints(raised=True, user_code_only=True)
        forward = []
        while d.cont().reason == "exception":
            forward.append([d.stop.step, d.stop.file, d.stop.line, d.stop.exception,
                            d.evaluate("text").value])
        backward = []
        while d.reverse_continue().reason == "exception":
            backward.append([d.stop.step, d.stop.file, d.stop.line, d.stop.exception,
                             d.evaluate("text").value])
        emit({"first": [first.reason, first.file], "forward": forward, "backward": backward,
              "back_at": d.stop.reason})
    """, rec.trace)
    assert result["first"][0] == "exception"
    assert result["first"][1] != program and "re" in result["first"][1], result["first"]
    parse = line_of(program, "# PARSE")
    assert [(f, line, text) for _, f, line, _, text in result["forward"]] == \
        [(program, parse, "'x'"), (program, parse, "'y'")]
    assert result["forward"][0][3] == ["ValueError", "invalid literal for int() with base 10: 'x'"]
    assert result["backward"] == result["forward"][::-1]
    assert result["back_at"] == "start"

    cli = debug_cli(world, rec.trace, "-c", "catch mine", "-c", "c", "-c", "p text", "-c", "c",
                    "-c", "p text", "-c", "catch", "-c", "q")
    out = cli.out.decode()
    assert cli.code == 0, cli.describe()
    assert out.count("--Exception-- ValueError: invalid literal") == 2, out
    assert f"debug_raises.py({parse})parse()" in out
    assert 0 < out.index("\n'x'\n") < out.index("\n'y'\n"), out
    assert out.count("Exceptions stop wherever your code raises") == 2, out


def test_pause_stops_a_forward_move(world):
    rec = record(world, "debug_loops", 600)     # seconds of replay
    result = drive(world, """
        import threading
        out = []
        d = Debugger(sys.argv[1], on_output=lambda stream, text: out.append(text))
        threading.Timer(0.3, d.pause).start()
        paused = d.cont()
        where = snap(d)
        d.reverse_step()
        d.step()
        again = snap(d)
        end = d.cont()
        emit({"paused": [paused.reason, paused.step], "total": d.total_steps, "where": where,
              "again": again, "end": end.reason, "output": "".join(out)})
    """, rec.trace)
    reason, step = result["paused"]
    assert reason == "pause" and 0 < step < result["total"] and step % 1024 == 0, result["paused"]
    assert result["where"] == result["again"]
    assert result["end"] == "end" and result["output"] == rec.out.decode()


def test_pause_stops_a_reverse_move(world):
    """pause() during reverse continue (a search back through the whole run
    for a breakpoint that never hits) stops where the search had got to, with
    reason "pause", at a position that shows the same place when reached
    again; no replay process is left after close()."""
    rec = record(world, "debug_loops", 600)
    program = str(world.programs / "debug_loops.py")
    result = drive(world, """
        import os, threading, time
        d = Debugger(sys.argv[1])
        d.goto(10**9)
        end = d.stop.step
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]), condition="i < 0")
        threading.Timer(0.5, d.pause).start()
        started = time.monotonic()
        paused = d.reverse_continue()
        where = snap(d)
        d.step(); d.reverse_step()
        again = snap(d)
        pids = [p.pid for p in d._procs]
        d.close()
        alive = []
        for pid in pids:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                alive.append(pid)
        emit({"end": end, "paused": [paused.reason, paused.step], "where": where,
              "again": again, "alive": alive, "pids": len(pids)})
    """, rec.trace, program, line_of(program, "items.append(value)"))
    reason, step = result["paused"]
    assert reason == "pause" and 0 < step < result["end"], result["paused"]
    assert result["where"] == result["again"]
    assert result["where"]["function"] is not None
    assert result["pids"] and not result["alive"], result


# --------------------------------------------------------------------------
# Inspection never perturbs


def test_evaluation_changes_nothing_afterwards(world):
    rec = record(world, "debug_loops")
    program = str(world.programs / "debug_loops.py")
    result = drive(world, """
        out = []
        d = Debugger(sys.argv[1], on_output=lambda stream, text: out.append(text))
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]), condition="i == 30")
        d.cont()
        items = d.evaluate("items").value
        popped = d.evaluate("items.pop()").value
        clock = d.evaluate("time.time()")
        opened = d.evaluate("open('/etc/hostname').read()")
        drawn = d.evaluate("random.random()").value
        printed = d.evaluate("print('hello') or 5")
        again = d.evaluate("items").value
        locals_now = snap(d)
        d.step(); d.step()
        later = snap(d)
        d.cont()
        emit({"items": items, "popped": popped, "clock": [clock.type, clock.value],
              "opened": [opened.type, opened.value], "drawn": drawn, "again": again,
              "printed": [printed.value, printed.output], "output": "".join(out),
              "later": later, "total": d.total_steps, "locals": locals_now})
    """, rec.trace, program, line_of(program, "items.append(value)"))
    items = eval(result["items"])
    assert len(items) == 30
    assert result["popped"] == repr(items[-1])
    assert result["again"] == result["items"]                  # the pop happened elsewhere
    assert result["clock"][0] == "error" and "time.time" in result["clock"][1]
    assert "external call" in result["clock"][1]
    assert result["opened"][0] == "error" and "external call" in result["opened"][1]
    assert result["printed"] == ["5", "hello\n"]
    # the program's own output, clock readings and last random draw included, is
    # exactly what it printed when recorded: nothing evaluated reached the replay
    assert result["output"] == rec.out.decode()
    assert rec.out.decode().split()[-1] == result["drawn"]     # the next draw, seen in place

    plain = drive(world, """
        d = Debugger(sys.argv[1])
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]), condition="i == 30")
        d.cont()
        d.step(); d.step()
        later = snap(d)
        d.cont()
        emit({"later": later, "total": d.total_steps})
    """, rec.trace, program, line_of(program, "items.append(value)"))
    assert plain == {"later": result["later"], "total": result["total"]}


# --------------------------------------------------------------------------
# Threads


def test_multithreaded_recording(world):
    rec = record(world, "threads_counter")
    program = str(world.programs / "threads_counter.py")
    result = drive(world, """
        out = []
        d = Debugger(sys.argv[1], on_output=lambda stream, text: out.append(text))
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]), condition="counter == 17")
        hit = d.cont()
        threads = d.threads()
        worker = snap(d)
        try:
            d.to_last_exception()         # learns the end from a copy of an earlier checkpoint
        except DebuggerError as exc:
            assert "raised no exception" in str(exc), exc
        d.goto(hit.step)
        stacks = {t: [f.function for f in d.frames(t)] for t, _ in threads}
        ticket = d.evaluate("counter").value
        d.reverse_step()
        prev = snap(d)
        d.step()
        again = snap(d)
        d.goto(0)
        d.goto(hit.step)                  # by replaying from the start, all threads again
        replayed = snap(d)
        d.remove_breakpoint(1)
        d.cont()
        emit({"threads": threads, "worker": worker, "stacks": stacks, "ticket": ticket,
              "prev": prev, "again": again, "replayed": replayed, "output": "".join(out)})
    """, rec.trace, program, line_of(program, "ticket = counter"))
    worker = result["worker"]
    assert worker["function"] == "worker" and worker["thread"] > 0
    assert result["ticket"] == "17"
    names = dict((t, n) for t, n in result["threads"])
    assert names[0] == "MainThread" and len(names) >= 2
    assert result["stacks"][str(worker["thread"])][0] == "worker"
    assert result["prev"]["thread"] == worker["thread"] and result["prev"]["step"] < worker["step"]
    assert result["again"] == worker
    assert result["replayed"] == worker
    assert result["output"] == rec.out.decode()
    ticket_line = [line for line in rec.out.decode().splitlines() if line.endswith("ticket 17")]
    assert ticket_line and ticket_line[0].startswith(f"w{worker['thread'] - 1}:")


# --------------------------------------------------------------------------
# The terminal front end


def test_cli_session_from_stdin(world):
    rec = record(world, "debug_loops")
    program = world.programs / "debug_loops.py"
    append = line_of(program, "items.append(value)")
    commands = "\n".join([
        f"b {program}:{append}, i == 12", "c", "p i", "pp items[:2]", "w", "ll", "l",
        "u", "p i", "d", "s", "info", "rs", "rn", "rr", "rc", "n", "r",
        "tbreak risky", "b", "cl 1", "b", "goto 3", "thread", "c", "c", "q"]) + "\n"
    result = debug_cli(world, rec.trace, stdin=commands.encode())
    assert result.code == 0, result.describe()
    out = result.out.decode()
    assert f"Breakpoint 1 at {program}:{append}" in out
    assert re.search(r"\(retrace \d+\) Breakpoint 1\n> .*debug_loops.py\(%d\)main\(\)" % append, out)
    assert re.search(r"\(retrace \d+\) 12\n", out)               # p i (after the prompt)
    assert re.search(r"^ +\d+ B->\s+items.append\(value\)$", out, re.M)   # ll / l
    assert "NameError: name 'i' is not defined" in out          # p i in the module frame (u)
    assert re.search(r"\(retrace \d+\) step \d+, thread 0, event index \d+, stopped by step", out)
    assert "Temporary breakpoint 2 at function risky" in out
    assert "Deleted breakpoint 1" in out
    assert "(retrace 3) * 0 MainThread" in out                  # the prompt after goto 3
    risky = line_of(program, "if x % 5 == 0")
    assert out.count(f"> {program}({risky})risky()") == 1       # tbreak: once
    assert "--End-- the program ended after" in out
    assert rec.out.decode().splitlines()[0] in out              # the program's own output
    assert "Traceback" not in result.err.decode(), result.describe()


def test_cli_at_crash(world):
    rec = record(world, "crash", expect=1)
    result = debug_cli(world, rec.trace, "--at-crash", "-c", "info", "-c", "w", "-c", "q")
    assert result.code == 0, result.describe()
    out = result.out.decode()
    assert "--Crash--" in out and "stopped by crash" in out, result.describe()
    assert rec.err.decode().strip().splitlines()[-1].split(":")[0].split(".")[-1] in out
    fine = record(world, "debug_loops")
    result = debug_cli(world, fine.trace, "--at-crash", "-c", "info", "-c", "q")
    assert result.code == 0, result.describe()
    assert "*** the recorded run ended without an uncaught exception (exit status 0)" in \
        result.out.decode() and "step 0 of" in result.out.decode(), result.describe()


def test_the_end_stop_carries_the_exit_status(world):
    """Stop.exit_status at the end: the recorded status (sys.exit(7); 1 for a
    crash), also in the terminal's --End-- line."""
    rec = record(world, "exit7", expect=7)
    crashed = record(world, "crash", expect=1)
    result = drive(world, """
        statuses = []
        for trace in sys.argv[1:]:
            d = Debugger(trace)
            d.set_exception_breakpoints(uncaught=False)
            end = d.cont()
            statuses.append([end.reason, end.exit_status])
            d.close()
        emit(statuses)
    """, rec.trace, crashed.trace)
    assert result == [["end", 7], ["end", 1]]
    cli = debug_cli(world, rec.trace, "-c", "c", "-c", "q")
    assert "--End-- the program ended after" in cli.out.decode()
    assert ", exit status 7\n" in cli.out.decode(), cli.describe()


def test_bad_recordings_give_clear_errors(world, tmp_path):
    missing = debug_cli(world, tmp_path / "nope.retrace", "-c", "q")
    assert_error_exit(missing, "no such file")
    junk = tmp_path / "junk.retrace"
    junk.write_bytes(os.urandom(300))
    assert_error_exit(debug_cli(world, junk, "-c", "q"), "not a Retrace trace")
    empty = tmp_path / "empty.retrace"
    empty.write_bytes(b"")
    assert_error_exit(debug_cli(world, empty, "-c", "q"), "empty")
    rec = record(world, "debug_loops")
    assert_error_exit(debug_cli(world, rec.trace, "--map", "nonsense", "-c", "q"), "--map")
    assert_error_exit(debug_cli(world, rec.trace, "--pid", "4242", "-c", "q"), "no such file")

    # made by another Python: refused, naming both versions
    from retrace import _engine
    header, records, _ = _engine._read_records(str(rec.trace))
    head = _engine.decode(header)
    head["version_info"] = (3, 9, 18)
    foreign = tmp_path / "foreign.retrace"
    _engine._write_records(str(foreign), _engine.encode(head), records)
    assert_error_exit(debug_cli(world, foreign, "-c", "q"), r"recorded with Python 3\.9",
                      re.escape("%d.%d" % sys.version_info[:2]))

    # a recording cut short: the replay runs to the cut, then says so
    data = rec.trace.read_bytes()
    cut = tmp_path / "cut.retrace"
    first_chunk = 20 + int.from_bytes(data[12:16], "little")
    cut.write_bytes(data[:first_chunk + 10])
    assert_error_exit(debug_cli(world, cut, "-c", "q"), "cut short")
    busy = record(world, "busy_clock", 4, 50)            # several chunks
    data = busy.trace.read_bytes()
    cut.write_bytes(data[:len(data) * 3 // 5])
    result = debug_cli(world, cut, "-c", "c", "-c", "info", "-c", "c", "-c", "q")
    assert result.code == 0, result.describe()
    out = result.out.decode()
    assert "--Exception-- ReplayDivergence" in out and "cut short" in out, result.describe()
    assert "--End--" in out and "Traceback" not in result.err.decode(), result.describe()


def test_forked_child_and_map(world):
    rec = record(world, "proc_fork")
    children = [p for p in rec.trace.parent.iterdir() if p.name.startswith(rec.trace.name + ".")]
    assert len(children) == 1
    pid = children[0].name.rsplit(".", 1)[1]
    program = world.programs / "proc_fork.py"
    child_line = line_of(program, 'print("child:", message')
    result = debug_cli(world, rec.trace, "--pid", pid, "-c", f"b {program}:{child_line}",
                       "-c", "c", "-c", "p message", "-c", "c", "-c", "q")
    assert result.code == 0, result.describe()
    child_said = [line for line in rec.out.decode().splitlines() if line.startswith("child:")][0]
    assert repr(child_said.split(": ", 1)[1]) in result.out.decode(), result.describe()

    # the program moved: --map finds it; a changed file is named
    moved = world.elsewhere / "moved"
    shutil.copytree(world.programs, moved)
    loops = record(world, "debug_loops")
    shutil.rmtree(world.programs)
    (moved / "debug_loops.py").write_text((moved / "debug_loops.py").read_text() + "# edited\n")
    append = line_of(moved / "debug_loops.py", "items.append(value)")
    result = debug_cli(world, loops.trace, "--map", f"{world.root / 'programs'}={moved}",
                       "-c", f"b {moved / 'debug_loops.py'}:{append}, i == 2", "-c", "c",
                       "-c", "p i", "-c", "q", cwd=world.elsewhere)
    assert result.code == 0, result.describe()
    out = result.out.decode()
    assert "source files changed since the recording" in out and "debug_loops.py" in out
    assert f"{moved / 'debug_loops.py'}({append})main()" in out and "\n2\n" in out
