"""Threads, each with its own sqlite3 connection to one database file.  Each
also reads through cursors of its own class (made by a factory), whose
handles come with their first call, while the other threads make cursors."""
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


class Probe(sqlite3.Cursor):
    def __init__(self, conn, k):
        super().__init__(conn)
        self.k = k


def worker(k):
    conn = sqlite3.connect(path, timeout=60)
    for n in range(5):
        probe = conn.cursor(lambda c: Probe(c, k))
        seen = probe.execute("select count(*) from events where worker = ?", (k,)).fetchone()
        say(f"worker {k} probe {probe.k} sees {seen[0]} of its rows before {n}")
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
