"""A cursor factory used before and after a fork: the child's cursors keep
their __init__ state when the child replays."""
import os
import sqlite3
import sys


class Tagged(sqlite3.Cursor):
    def __init__(self, conn):
        super().__init__(conn)
        self.tag = f"tagged in {'child' if os.getpid() != parent else 'parent'}"


parent = os.getpid()
conn = sqlite3.connect(sys.argv[1])
conn.execute("create table t (x integer)")
conn.execute("insert into t values (1)")
conn.commit()
cur = conn.cursor(Tagged)
print("parent:", cur.tag, cur.execute("select x from t").fetchone(), flush=True)
pid = os.fork()
if pid == 0:
    child = sqlite3.connect(sys.argv[1])
    cur = child.cursor(Tagged)
    print("child:", cur.tag, cur.execute("select x + 1 from t").fetchone(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent done", flush=True)
