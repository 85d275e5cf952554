"""The quickstart (`make demo`): record a Flask service under load, take its
database and its peers away, and replay the crash offline.

1. `retrace install` puts the recording hook into this environment (and the
   demo removes it again at the end if it was not there before).
2. RETRACE_RECORDING=recordings/flask.retrace python examples/flask_demo.py
   serves the shop; examples/load.py, another process, sends it orders and
   invoice requests, serves the exchange rates it asks for, and stops it with
   SIGTERM. One order is of a legacy product without a price: its invoice
   crashes, and Flask logs the traceback and answers 500.
3. The database file is deleted; the load script and its rate service are gone.
4. `retrace replay recordings/flask.retrace` runs the server again from the
   recording alone: the same log, line for line, with the same traceback.

With DATABASE_URL (postgresql://...) set, the shop runs on PostgreSQL
instead of SQLite; stop the server (database) before step 4 to see that
replay does not need it.
"""
import os
import socket
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RECORDINGS = os.path.join(REPO, "recordings")
TRACE = os.path.join(RECORDINGS, "flask.retrace")
DATABASE = os.path.join(RECORDINGS, "shop.sqlite3")
CRASH = "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def retrace(*args):
    return subprocess.run([sys.executable, "-m", "retrace", *args], cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def say(text):
    print(f"\n=== {text}", flush=True)


def hook_installed():
    return os.path.exists(os.path.join(sysconfig.get_path("purelib"), "retrace-hook.pth"))


def crash_record(log):
    """The log record of the crash: from its ERROR line to the exception."""
    lines = log.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(CRASH))
    start = max(i for i in range(end) if " ERROR " in lines[i])
    return "\n".join(lines[start:end + 1])


def record(port, rates_port):
    env = dict(os.environ, RETRACE_RECORDING=os.path.relpath(TRACE, REPO),
               RETRACE_DEMO_SQLITE=DATABASE,
               RETRACE_DEMO_RATES_URL=f"http://127.0.0.1:{rates_port}/rates")
    say(f"RETRACE_RECORDING={os.path.relpath(TRACE, REPO)} python examples/flask_demo.py "
        f"--port {port}   (in the background)")
    out_path, err_path = (os.path.join(RECORDINGS, "flask-server." + n) for n in ("out", "err"))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        server = subprocess.Popen([sys.executable, "examples/flask_demo.py", "--port", str(port)],
                                  cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=err)
    try:
        say(f"python examples/load.py --url http://127.0.0.1:{port} --rates-port {rates_port} "
            "--stop")
        load = subprocess.run([sys.executable, "examples/load.py", "--url",
                               f"http://127.0.0.1:{port}", "--rates-port", str(rates_port),
                               "--stop"], cwd=REPO, stdin=subprocess.DEVNULL, timeout=300)
        status = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    with open(out_path) as out, open(err_path) as err:
        recorded = out.read(), err.read()
    if load.returncode != 0 or status != 0:
        sys.exit(f"the recorded server failed (exit status {status}):\n{recorded[1]}")
    say(f"the server's log, as recorded ({len(recorded[1].splitlines())} lines)")
    sys.stdout.write(recorded[1])
    return recorded


def replay(recorded):
    say(f"retrace inspect {os.path.relpath(TRACE, REPO)}")
    sys.stdout.write(retrace("inspect", TRACE).stdout)
    for n in (1, 2):
        say(f"retrace replay {os.path.relpath(TRACE, REPO)}   (replay {n}, "
            "no database, no load, no rate service)")
        run = retrace("replay", TRACE)
        if run.returncode != 0:
            sys.stdout.write(run.stderr)
            sys.exit(f"the replay failed (exit status {run.returncode})")
        print(f"the replayed log has {len(run.stderr.splitlines())} lines; the crash in it:\n")
        print(crash_record(run.stderr))
        same = (run.stdout, run.stderr) == recorded
        print(f"\nreplay {n} {'matches' if same else 'DOES NOT MATCH'} the recorded run byte for "
              "byte (stdout and the log on stderr)")
        if not same:
            sys.exit(1)


def main():
    os.makedirs(RECORDINGS, exist_ok=True)
    for path in [DATABASE] + [os.path.join(RECORDINGS, f) for f in os.listdir(RECORDINGS)
                              if f.startswith("flask.retrace")]:
        if os.path.exists(path):
            os.remove(path)
    installed_here = not hook_installed()
    if installed_here:
        say("retrace install")
        print(retrace("install").stdout.strip())
    try:
        recorded = record(free_port(), free_port())
    finally:
        if installed_here:
            retrace("uninstall")
    if not os.environ.get("DATABASE_URL"):
        os.remove(DATABASE)
        say(f"deleted {os.path.relpath(DATABASE, REPO)}: the database is gone")
    replay(recorded)


if __name__ == "__main__":
    main()
