"""What recording costs on the database drivers, as ratios against a plain run.

    python bench/db.py [--rounds N] [--quick] [--dsn DSN]

Each workload runs as its own process, plainly and under `retrace record`,
interleaved round by round (so machine noise hits both alike); the time is
measured inside the process, around the query loop only:

  sqlite3 point query   execute("select ... where id = ?") + fetchone() on an
                        indexed in-memory table of 1000 rows
  sqlite3 fetchall      one query returning 100 rows of 3 columns
  psycopg2 point query  the same point query on PostgreSQL over loopback TCP
                        (skipped unless --dsn, or a server at the default DSN,
                        is reachable)

Prints µs per query, plain and recorded, and their ratio: median (min .. max)
over the rounds.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable
HERE = os.path.abspath(__file__)
DEFAULT_DSN = "host=127.0.0.1 dbname=test user=postgres connect_timeout=2"


# -- the workloads (run in a child process) ----------------------------------

def workload(kind, n, dsn):
    if kind.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(":memory:")
        conn.execute("create table t (id integer primary key, name text, v real)")
        conn.executemany("insert into t values (?, ?, ?)",
                         [(i, f"name{i}", i / 3) for i in range(1000)])
        mark = "?"
    else:
        import psycopg2
        conn = psycopg2.connect(dsn)
        setup = conn.cursor()
        setup.execute("create temporary table t (id integer primary key, name text, v real)")
        setup.executemany("insert into t values (%s, %s, %s)",
                          [(i, f"name{i}", i / 3) for i in range(1000)])
        mark = "%s"
    cur = conn.cursor()
    point = f"select name, v from t where id = {mark}"
    start = time.perf_counter_ns()
    for i in range(n):
        if kind.endswith("fetchall"):
            cur.execute("select id, name, v from t where id < 100")
            cur.fetchall()
        else:
            cur.execute(point, (i % 1000,))
            cur.fetchone()
    print((time.perf_counter_ns() - start) / n / 1000)   # µs per query


# -- the driver ---------------------------------------------------------------

def measure(kind, n, dsn, record, tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    args = [HERE, "--run", kind, str(n), dsn]
    if record:
        args = ["-m", "retrace", "record", "-o", os.path.join(tmp, "bench.retrace"), "--", *args]
    out = subprocess.run([PY, *args], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def summary(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} .. " \
           f"{fmt.format(max(values))})"


def server_reachable(dsn):
    try:
        import psycopg2
        psycopg2.connect(dsn).close()
        return True
    except Exception:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.run:
        kind, n, dsn = opts.run
        return workload(kind, int(n), dsn)
    scale = 10 if opts.quick else 1
    kinds = {"sqlite3 point query": 50000 // scale, "sqlite3 fetchall": 5000 // scale}
    if server_reachable(opts.dsn):
        kinds["psycopg2 point query"] = 5000 // scale
    results = {(k, m): [] for k in kinds for m in ("plain", "record")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.rounds):
            for kind, n in kinds.items():
                for mode in ("plain", "record"):
                    results[kind, mode].append(measure(kind, n, opts.dsn, mode == "record", tmp))
    print(f"Python {sys.version.split()[0]}, {opts.rounds} rounds; µs per query, "
          "median (min .. max)")
    for kind in kinds:
        plain, rec = results[kind, "plain"], results[kind, "record"]
        ratios = [r / p for p, r in zip(plain, rec)]
        print(f"{kind:22s} plain {summary(plain)}  recorded {summary(rec)}  "
              f"ratio {summary(ratios, '{:.2f}x')}")


if __name__ == "__main__":
    main()
