"""Threads, each with its own sqlite3 connection to one database file."""
import sqlite3
import sys
import threading

path = sys.argv[1]
setup = sqlite3.connect(path)
setup.execute("create table events (worker integer, n integer, square integer)")
setup.commit()
lock = threading.Lock()


def say(line):
    sys.stdout.write(line + "\n")   # one write: whole lines, whatever the threads do


def worker(k):
    conn = sqlite3.connect(path, timeout=60)
    for n in range(5):
        with lock, conn:
            cur = conn.execute("insert into events values (?, ?, ?)", (k, n, n * n))
            say(f"worker {k} inserted {n}: rowcount {cur.rowcount}, lastrowid "
                f"{type(cur.lastrowid).__name__} {cur.lastrowid > 0}")
    total = conn.execute("select sum(square) from events where worker = ?", (k,)).fetchone()
    say(f"worker {k} total: {total!r}")
    conn.close()


threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
rows = setup.execute("select worker, count(*), sum(n) from events group by worker").fetchall()
print(f"summary: {rows!r}")
setup.close()
