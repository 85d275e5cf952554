"""Flask, recorded in production conditions and replayed offline.

The server is started with the .pth hook (RETRACE_RECORDING=FILE python ...),
on a free port; a separate load process sends it concurrent requests, serves
the peer it calls over HTTP, and stops it with SIGTERM. Then the load, the
peer and the database are gone, and the replay must print exactly what the
server printed: every log line (each answer is logged with its body), and
the traceback Flask logged for the request that crashed on rare data.
Replays run without any network where `unshare -n` works.

- tests/programs/web_flask.py (no database): werkzeug's threaded server, and
  gunicorn with forked sync workers, whose master and workers each replay.
- examples/flask_demo.py, the quickstart: on SQLite, and on PostgreSQL.
"""
import pytest

from conftest import PY, REPO, retrace_cmd, run
from web_servers import (free_port, gunicorn, record_under_load, replay_everywhere,
                         replay_forked_server, traceback_of, wait_for_children)

DEMO = REPO / "examples" / "flask_demo.py"
DEMO_LOAD = REPO / "examples" / "load.py"
NOTES_CRASH = b"TypeError: 'NoneType' object is not iterable"
DEMO_CRASH = b"TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'"


def record_notes(world, cmd, cwd):
    """Record a web_flask server under web_load.py's requests; it stops the
    server with SIGTERM."""
    port, peer_port = free_port(), free_port()
    peer = f"http://127.0.0.1:{peer_port}/quote"
    cmd = [str(c).format(port=port, peer=peer) for c in cmd]
    return record_under_load(world, "notes", cmd, cwd=cwd, env={"WEB_PEER_URL": peer},
                             load_cmd=[world.programs / "web_load.py", f"http://127.0.0.1:{port}",
                                       peer_port, 12, "{pid}"],
                             load_env={"PYTHONPATH": REPO / "examples"})


def test_werkzeug_threaded_server(world, installed_hook):
    rec, answers = record_notes(world, [PY, world.programs / "web_flask.py", "{port}", "{peer}"],
                                world.work)
    assert traceback_of(rec.err, NOTES_CRASH), rec.describe()
    assert b"-> 500 text/html" in answers.out, answers.describe()
    assert b'/quote?n=2 -> 200 {"peer":{"EUR":' in rec.err, rec.describe()
    assert rec.err.rstrip().endswith(b"INFO notes: stopped"), rec.describe()
    replay_everywhere(world, rec)


@pytest.mark.parametrize("control", ["off", "on"])
def test_gunicorn_sync_workers(world, installed_hook, control):
    """The master forks two workers; each process has its own trace, and each
    replays: the master alone, a worker from the master's trace up to its fork
    and then its own. With the control socket on, the master also runs its
    asyncio thread once the workers are up."""
    socket = ["--no-control-socket"] if control == "off" else \
        ["--control-socket", world.root / "gunicorn.ctl"]
    rec, _ = record_notes(world, [PY, gunicorn(), *socket, "--workers", "2",
                                  "--bind", "127.0.0.1:{port}", "web_flask:app"], world.programs)
    workers = replay_forked_server(world, rec, b"Starting gunicorn", NOTES_CRASH)
    assert len(workers) == 2


def test_fork_handlers_are_not_events(world):
    """os.register_at_fork handlers (logging's lock) run inside the fork:
    a child of a process that logs replays."""
    prog = world.root / "fork_logging.py"
    prog.write_text(
        "import logging, os, time\n"
        "logging.basicConfig(format='%(process)d %(message)s', level=logging.INFO)\n"
        "logging.info('parent at %s', time.time())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    logging.info('child at %s', time.time())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "logging.info('parent done')\n")
    trace = world.new_trace("fork_logging")
    rec = run(retrace_cmd("record", "-o", trace, prog), cwd=world.work, env=world.record_env())
    assert rec.code == 0 and rec.err.count(b"\n") == 3, rec.describe()
    (child,) = wait_for_children(trace, 1).values()
    replay = world.replay(trace)
    assert replay.code == 0 and b"child at" not in replay.err, replay.describe()
    replay = world.replay(child)
    assert replay.code == 0, replay.describe()
    assert replay.err.splitlines() == rec.err.splitlines()[:2], replay.describe()


# --------------------------------------------------------------------------
# The quickstart: examples/flask_demo.py on a database

def record_demo(world, **env):
    port, rates_port = free_port(), free_port()
    env = {"RETRACE_DEMO_SQLITE": world.root / "shop.sqlite3",
           "RETRACE_DEMO_RATES_URL": f"http://127.0.0.1:{rates_port}/rates", **env}
    rec, _ = record_under_load(
        world, "flask_demo", [PY, DEMO, "--port", port], cwd=world.work, env=env,
        load_cmd=[DEMO_LOAD, "--url", f"http://127.0.0.1:{port}", "--rates-port", rates_port,
                  "--stop"])
    assert traceback_of(rec.err, DEMO_CRASH), rec.describe()
    assert b'"currency":"EUR"' in rec.err or b'"currency":"GBP"' in rec.err, rec.describe()
    return rec


def test_demo_on_sqlite(world, installed_hook):
    rec = record_demo(world)
    (world.root / "shop.sqlite3").unlink()
    replay_everywhere(world, rec)


def test_demo_on_postgresql(world, installed_hook, pg_cluster):
    rec = record_demo(world, DATABASE_URL=pg_cluster.url)
    pg_cluster.stop()
    replay_everywhere(world, rec)
