"""sqlite3 basics: every value the program sees is printed with its type."""
import sqlite3
import sys


def show(label, value):
    print(f"{label}: {type(value).__name__} {value!r}")


conn = sqlite3.connect(sys.argv[1])
show("isinstance Connection", isinstance(conn, sqlite3.Connection))
show("isolation_level", conn.isolation_level)
cur = conn.cursor()
show("isinstance Cursor", isinstance(cur, sqlite3.Cursor))
show("cursor.connection is conn", cur.connection is conn)
cur.executescript("""
    create table item (id integer primary key, name text unique not null, price real,
                       qty integer, data blob, note text);
    create table log (id integer primary key, msg text);
""")
show("description after script", cur.description)
cur.execute("insert into item (name, price, qty, data) values (?, ?, ?, ?)",
            ("apple", 1.25, 3, b"\x00\xffbytes"))
show("lastrowid", cur.lastrowid)
show("rowcount", cur.rowcount)
cur.executemany("insert into item (name, price, qty, note) values (?, ?, ?, ?)",
                ((f"item{i}", i * 0.5, i, None if i % 2 else "even") for i in range(5)))
show("executemany rowcount", cur.rowcount)
cur.execute("insert into item (name, qty) values (:name, :qty)", {"name": "big", "qty": 2**62})
show("named lastrowid", cur.lastrowid)
show("in_transaction before commit", conn.in_transaction)
conn.commit()
show("in_transaction after commit", conn.in_transaction)
cur.execute("select id, name, price, qty, data, note from item order by id")
show("description", cur.description)
show("fetchone", cur.fetchone())
show("fetchmany", cur.fetchmany(2))
show("arraysize", cur.arraysize)
show("fetchall", cur.fetchall())
show("fetchone at end", cur.fetchone())
for row in conn.execute("select name, qty * 2 from item where qty > ? order by name", (1,)):
    show("iterated", row)
cur.execute("update item set qty = qty + 1 where price < 1")
show("update rowcount", cur.rowcount)
conn.rollback()
show("after rollback", conn.execute("select sum(qty) from item").fetchone())
with conn:
    conn.execute("insert into log (msg) values ('in with')")
show("committed by with", conn.execute("select msg from log").fetchall())
try:
    with conn:
        conn.execute("insert into log (msg) values ('rolled back')")
        raise RuntimeError("boom")
except RuntimeError as e:
    show("with error", e)
show("rolled back by with", conn.execute("select count(*) from log").fetchone())
try:
    conn.execute("insert into item (name) values ('apple')")
except sqlite3.IntegrityError as e:
    show("IntegrityError", e)
    show("sqlite_errorcode", e.sqlite_errorcode)
    show("sqlite_errorname", e.sqlite_errorname)
try:
    conn.execute("select nope from item")
except sqlite3.OperationalError as e:
    show("OperationalError", e)
conn.isolation_level = None
show("isolation_level now", conn.isolation_level)
conn.execute("insert into log (msg) values ('autocommit')")
show("in_transaction autocommit", conn.in_transaction)
show("total_changes", conn.total_changes)
show("getlimit", conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) > 0)
cur.close()
try:
    cur.execute("select 1")
except sqlite3.ProgrammingError as e:
    show("closed cursor", e)
conn.close()
try:
    conn.execute("select 1")
except sqlite3.ProgrammingError as e:
    show("closed connection", e)
print("done")
