"""Helpers for the web framework tests (test_flask.py, test_django.py): a
server recorded through the .pth hook while a load process sends requests,
its output split per process, and the comparisons of a replay with it.

A server's stdout and stderr go to files, not pipes: a server blocked on a
full pipe while the load waits for its answers would hang the test.
"""
import contextlib
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (PY, TIMEOUT, Run, _diff, _kill_group, assert_same_run, run,
                      unshare_net_works)

BIN = Path(PY).parent
# A log record starts with "[date] [pid]" (gunicorn) or "date time [pid]"
# (the apps' logging format); the lines after it (a traceback) belong to it.
RECORD_START = re.compile(rb"^(\[[^\]]+\] |\d{4}-\d\d-\d\d [\d:,]+ )\[(\d+)\]")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn():
    path = BIN / "gunicorn"
    if not path.exists():
        pytest.skip("gunicorn is not installed in this environment")
    return path


class Server:
    """A server process started now; finish() waits for it to exit."""

    def __init__(self, cmd, *, cwd, env, root, name="server"):
        self.cmd = [str(c) for c in cmd]
        self.out_path, self.err_path = root / f"{name}.out", root / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        self.pid = self.proc.pid

    def finish(self, timeout=TIMEOUT):
        """Wait for the server to exit (the load stopped it); a Run of it."""
        start = time.monotonic()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait(timeout=30)
            pytest.fail(f"the server did not exit within {timeout:.0f} s\n"
                        + self.result().describe(), pytrace=False)
        result = self.result(time.monotonic() - start)
        if result.code < 0:
            pytest.fail(f"the server was killed by {signal.Signals(-result.code).name}\n"
                        + result.describe(), pytrace=False)
        return result

    def result(self, seconds=0.0):
        return Run(self.cmd, self.proc.returncode, self.out_path.read_bytes(),
                   self.err_path.read_bytes(), seconds)

    def kill(self):
        if self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def serving(cmd, **kw):
    server = Server(cmd, **kw)
    try:
        yield server
    finally:
        server.kill()


def load(script, *args, cwd, env):
    """Run the load script to completion; it must succeed."""
    result = run([PY, script, *args], cwd=cwd, env=env)
    assert result.code == 0, "the load script failed\n" + result.describe()
    return result


def records(err):
    """stderr as (pid, record) pairs, in order; a record keeps its traceback."""
    found = []
    for line in err.splitlines(keepends=True):
        match = RECORD_START.match(line)
        if match:
            found.append((int(match.group(2)), line))
        elif found:
            pid, text = found[-1]
            found[-1] = (pid, text + line)
        else:
            found.append((None, line))
    return found


def of_process(err, pid):
    return b"".join(text for p, text in records(err) if p == pid)


def pids(err):
    return sorted({pid for pid, _ in records(err) if pid is not None})


def assert_answers_logged(load_out, server_err):
    """Every answer the load got ("METHOD PATH -> STATUS BODY") is in the
    server's log: the log shows the responses, and a replayed log equal to
    it shows the same responses."""
    missing = [line for line in load_out.decode().splitlines()
               if line.strip() and f"{line}\n" not in server_err.decode()]
    assert not missing, \
        f"answers not in the server log: {missing[:5]}\n{server_err.decode()[:3000]}"


def assert_same_output(recorded, replayed, what):
    assert replayed == recorded, f"{what} differs from the recording:\n{_diff(recorded, replayed)}"


def traceback_of(err, exception):
    """The whole log record holding the traceback that ends with `exception`."""
    for _, text in records(err):
        if b"Traceback (most recent call last)" in text and exception in text:
            return text
    return None


def wait_for_children(trace, count, timeout=10):
    """The child traces TRACE.PID of a forking server, once `count` exist."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(trace.parent.glob(trace.name + ".*"))
        if len(found) >= count or time.monotonic() > deadline:
            return {int(p.name.rsplit(".", 1)[1]): p for p in found}
        time.sleep(0.1)


def hook_env(world, trace, **extra):
    """The recording environment of a server started through the hook."""
    return world.record_env(RETRACE_RECORDING=str(trace), **extra)



def record_under_load(world, name, cmd, *, cwd, env, load_cmd, load_env=None):
    """Start cmd recorded through the hook, run load_cmd (a list; "{pid}" in
    it becomes the server's pid) from another process, wait for the server
    to exit. Returns (the server's Run with .trace, the load's Run)."""
    trace = world.new_trace(name)
    with serving(cmd, cwd=cwd, env=hook_env(world, trace, **env), root=world.root) as server:
        answers = load(*[str(a).replace("{pid}", str(server.pid)) for a in load_cmd],
                       cwd=world.work, env=world.record_env(**(load_env or {})))
        rec = server.finish()
    rec.trace = trace
    assert rec.code == 0, rec.describe()
    assert trace.exists(), "the hook made no recording\n" + rec.describe()
    assert_answers_logged(answers.out, rec.err)
    return rec, answers


def replay_everywhere(world, rec, *args):
    """Replay twice, then without network: each exactly like the recording."""
    for attempt in (1, 2):
        assert_same_run(rec, world.retrace("replay", rec.trace, *args), f"replay {attempt}")
    if unshare_net_works():
        assert_same_run(rec, world.retrace("replay", rec.trace, *args, prefix=["unshare", "-n"]),
                        "replay without network")


def replay_forked_server(world, rec, master_banner, crash):
    """A forking server (gunicorn): the master's replay prints the master's
    log; each worker's replay (--pid) prints the master's log up to its fork,
    then exactly the worker's; the worker that crashed shows the traceback,
    also without network. Returns the workers' pids."""
    master = [p for p in pids(rec.err) if master_banner in of_process(rec.err, p)]
    assert len(master) == 1, rec.describe()
    master = master[0]
    workers = sorted(set(pids(rec.err)) - {master})
    children = wait_for_children(rec.trace, len(workers))
    assert sorted(children) == workers, (children, rec.describe())
    crashed = [w for w in workers if traceback_of(of_process(rec.err, w), crash)]
    assert len(crashed) == 1, rec.describe()

    replay = world.replay(rec.trace)
    assert replay.code == 0, replay.describe()
    assert_same_output(of_process(rec.err, master), replay.err, "the master's replayed log")
    for worker in workers:
        for attempt in (1, 2):
            replay = world.retrace("replay", rec.trace, "--pid", worker)
            assert replay.code == 0, replay.describe()
            assert_same_output(of_process(rec.err, worker), of_process(replay.err, worker),
                               f"worker {worker}'s replayed log")
            before_fork = of_process(replay.err, master)
            assert before_fork and of_process(rec.err, master).startswith(before_fork), \
                replay.describe()
    replay = world.replay(children[crashed[0]])
    assert traceback_of(replay.err, crash) == traceback_of(rec.err, crash), replay.describe()
    if unshare_net_works():
        offline = world.retrace("replay", rec.trace, "--pid", crashed[0],
                                prefix=["unshare", "-n"])
        assert offline.err == replay.err, offline.describe()
    return workers
