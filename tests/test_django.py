"""Django (examples/django_demo), recorded under load and replayed with the
database stopped.

The migrations run before the recorded run, as a deployment step
(`manage.py migrate`, not recorded); the recorded process is the server only:
`manage.py runserver --noreload` (threaded, with its system checks) or gunicorn with
forked sync workers, started through the .pth hook. examples/load.py sends
orders (one transaction each) and invoice requests from another process,
serves the exchange rates the views fetch over HTTP, and stops the server
(SIGINT for runserver, which dies from SIGTERM; SIGTERM for gunicorn). Then
the database is stopped (PostgreSQL) or deleted (SQLite), and the replay
must print the same log: every answer, and the traceback of the invoice
view that crashed on the legacy product.

runserver runs Django's system checks first: Django keeps them in sets of
functions, which iterate in an order that follows memory addresses; Retrace's
shim (src/retrace/_shims.py) makes them run in registration order in both
runs, or the replay would diverge where the first check imports modules.
"""
import re

from conftest import PY, REPO, run
from web_servers import (free_port, gunicorn, record_under_load, replay_everywhere,
                         replay_forked_server, traceback_of)

PROJECT = REPO / "examples" / "django_demo"
LOAD = REPO / "examples" / "load.py"
CRASH = b"TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'"


def database_env(world, pg_cluster=None):
    if pg_cluster is not None:
        return {"DATABASE_URL": pg_cluster.url}
    return {"RETRACE_DEMO_SQLITE": world.root / "shop.sqlite3"}


def migrate(world, db_env):
    result = run([PY, "manage.py", "migrate", "--no-input"], cwd=PROJECT,
                 env=world.record_env(**db_env))
    assert result.code == 0, result.describe()
    assert b"Applying orders.0002_catalogue... OK" in result.out, result.describe()


def record_shop(world, server_cmd, db_env, stop):
    port, rates_port = free_port(), free_port()
    migrate(world, db_env)
    cmd = [str(c).format(port=port) for c in server_cmd]
    env = {"RETRACE_DEMO_RATES_URL": f"http://127.0.0.1:{rates_port}/rates", **db_env}
    rec, answers = record_under_load(
        world, "django", cmd, cwd=PROJECT, env=env,
        load_cmd=[LOAD, "--url", f"http://127.0.0.1:{port}", "--rates-port", rates_port,
                  "--stop-pid", "{pid}", "--stop-signal", stop])
    assert traceback_of(rec.err, CRASH), rec.describe()
    assert b"POST /orders -> 201" in answers.out, answers.describe()
    return rec


RUNSERVER = [PY, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"]
GUNICORN = [PY, "{gunicorn}", "--no-control-socket", "--workers", "2",
            "--bind", "127.0.0.1:{port}", "shop.wsgi"]


def gunicorn_cmd():
    return [str(c).replace("{gunicorn}", str(gunicorn())) for c in GUNICORN]


def test_runserver_on_sqlite(world, installed_hook):
    rec = record_shop(world, RUNSERVER, database_env(world), "INT")
    # Django 6 says "Starting WSGI development server at"
    assert re.search(rb"Starting (WSGI )?development server at http://127\.0\.0\.1:", rec.out), \
        rec.describe()
    (world.root / "shop.sqlite3").unlink()
    replay_everywhere(world, rec)


def test_runserver_on_postgresql(world, installed_hook, pg_cluster):
    rec = record_shop(world, RUNSERVER, database_env(world, pg_cluster), "INT")
    pg_cluster.stop()
    replay_everywhere(world, rec)


def test_gunicorn_on_postgresql(world, installed_hook, pg_cluster):
    rec = record_shop(world, gunicorn_cmd(), database_env(world, pg_cluster), "TERM")
    pg_cluster.stop()
    replay_forked_server(world, rec, b"Starting gunicorn", CRASH)
