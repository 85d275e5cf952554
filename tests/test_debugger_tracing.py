"""The replay debugger on a program with its own trace function.

tests/programs/debug_own_tracer.py installs trace functions with
sys.settrace and threading.settrace (and a profile function) as coverage
tools do, and prints what they saw. Under the debugger the stepper's trace
function stays and calls the program's (docs/debugger.md, "The program's
trace function"): the program's output, tracer counts included, is the
recorded one, its lines are counted in every thread, and positions keep
their invariants there.
"""
import secrets

from test_debugger import drive, line_of, record

PROGRAM = "debug_own_tracer"


def test_program_tracer_sees_the_recorded_events(world):
    rec = record(world, PROGRAM)
    program = str(world.programs / f"{PROGRAM}.py")
    recorded = rec.out.decode()
    assert "('line', 0)" not in recorded and "raised the tracer gave up None" in recorded, recorded
    result = drive(world, """
        out = []
        d = Debugger(sys.argv[1], on_output=lambda stream, text: out.append(text))
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]))
        hits, threads, tracer = 0, set(), []
        while d.cont().reason == "breakpoint":
            hits += 1
            threads.add(d.stop.thread)
            tracer.append(d.evaluate("sys.gettrace() is global_tracer").value)
        end = d.stop
        d.remove_breakpoint(1)
        d.add_breakpoint(sys.argv[2], int(sys.argv[4]))
        d.goto(0)
        after = d.cont()
        emit({"hits": hits, "threads": sorted(threads), "tracer": tracer,
              "end": [end.reason, end.exit_status, end.step], "output": "".join(out),
              "after": [after.reason, after.line, d.evaluate("sys.gettrace()").value]})
    """, rec.trace, program, line_of(program, "total += opcodes(i)"),
        line_of(program, 'print("done"'))
    # work(5) and work(6) in two threads, work(10), work(3) cut short, work(4)
    assert result["hits"] == 5 + 6 + 10 + 1 + 4, result
    assert len(result["threads"]) == 3, result
    assert result["tracer"] == ["True"] * 21 + ["False"] * 5, result
    assert result["end"][:2] == ["end", 0], result
    assert result["output"] == recorded
    assert result["after"] == ["breakpoint", line_of(program, 'print("done"'), "None"], result


def test_positions_under_the_program_tracer(world):
    """goto N then K steps is goto N+K, and K reverse steps go back to N,
    the tracer's counts included, for random N in the traced part that runs on
    one thread (a step follows its thread)."""
    rec = record(world, PROGRAM)
    program = str(world.programs / f"{PROGRAM}.py")
    seed = secrets.randbelow(10**6)
    result = drive(world, """
        import random
        d = Debugger(sys.argv[1])
        d.add_breakpoint(sys.argv[2], int(sys.argv[3]))
        first = d.cont().step
        d.remove_breakpoint(1)
        d.goto(10**9)
        total, rng, cases = d.total_steps, random.Random(int(sys.argv[4])), []

        def state():
            s = snap(d)
            s["counts"] = d.evaluate("sorted(counts.items())").value
            return s

        for _ in range(6):
            n, k = rng.randrange(first, total - 60), rng.randrange(1, 40)
            d.goto(n)
            before = state()
            for _ in range(k):
                d.step()
            stepped = state()
            d.goto(n + k)
            direct = state()
            for _ in range(k):
                d.reverse_step()
            cases.append([n, k, before, stepped, direct, state()])
        emit({"first": first, "total": total, "cases": cases})
    """, rec.trace, program, line_of(program, "total = work(10)"), seed)
    assert result["total"] - result["first"] > 150, result   # its lines are counted
    for n, k, before, stepped, direct, back in result["cases"]:
        assert before["step"] == back["step"] == n and stepped["step"] == n + k, (seed, n, k)
        assert stepped == direct, f"seed {seed}: goto {n} + {k} steps != goto {n + k}"
        assert back == before, f"seed {seed}: {k} steps and {k} reverse steps from {n}"
