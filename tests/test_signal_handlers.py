"""Python signal handlers replay where they ran in the recording.

A program installs handlers for SIGUSR1 (prints, reads the clock) and SIGTERM
(raises SystemExit); the test sends it signals at random moments while the
main thread computes (the handler runs between two bytecodes), sleeps (inside
an external call) or waits in Thread.join (inside a lock wait) while another
thread makes external calls. The replay gets no signal at all and must print
the same lines, in the same places, and exit the same way.
"""
import random
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import TIMEOUT, Run, _kill_group, assert_same_run, retrace_cmd

PROGRAM = textwrap.dedent("""\
    import os, signal, sys, threading, time

    seen = 0
    stop = False

    def on_usr1(signum, frame):
        global seen
        seen += 1
        print(f"signal {seen} at {time.monotonic()}", flush=True)

    def on_term(signum, frame):
        global stop
        stop = True
        raise SystemExit(f"terminated after {seen} signals")

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    assert signal.getsignal(signal.SIGUSR1) is on_usr1

    def ticker():
        while not stop:
            time.sleep(0.002)
            os.urandom(4)

    how = sys.argv[1]
    print("ready", flush=True)
    if how == "join":
        worker = threading.Thread(target=ticker)
        worker.start()
        worker.join()
    n = 0
    while True:
        n += 1
        if how == "sleep":
            time.sleep(0.003)
        elif n % 3000 == 0:
            time.monotonic()
""")


@pytest.mark.parametrize("how", ["busy", "sleep", "join"])
def test_handlers_replay_in_place(world, how):
    prog = world.root / "signals.py"
    prog.write_text(PROGRAM)
    trace = world.new_trace("signals")
    cmd = [str(c) for c in retrace_cmd("record", "-o", trace, prog, how)]
    proc = subprocess.Popen(cmd, cwd=world.work, env=world.record_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        printed = [proc.stdout.readline()]
        assert printed == [b"ready\n"]
        for i in range(1, 6):
            time.sleep(random.uniform(0.01, 0.06))
            proc.send_signal(signal.SIGUSR1)
            printed.append(proc.stdout.readline())
            assert printed[-1].startswith(f"signal {i} at ".encode()), printed
        time.sleep(random.uniform(0.01, 0.06))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        _kill_group(proc)
    rec = Run(cmd, proc.returncode, b"".join(printed) + out, err, 0.0)
    assert rec.code == 1 and rec.err == b"terminated after 5 signals\n", rec.describe()
    assert world.inspect(trace)["events"].get("signal.handler") == 6
    for attempt in (1, 2):
        assert_same_run(rec, world.replay(trace), f"replay {attempt}")
