"""sqlite3 connection and cursor factories of the program's own: their Python
__init__ state is there in replay too; a Connection made directly (not
through connect()) replays without the database file."""
import sqlite3
import sys


def show(label, value):
    print(f"{label}: {type(value).__name__} {value!r}")


class AuditedConnection(sqlite3.Connection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.label = "audited"
        self.statements = []


class AuditedCursor(sqlite3.Cursor):
    def __init__(self, conn):
        super().__init__(conn)
        self.runs = 0

    def execute(self, sql, params=()):
        self.runs += 1
        self.connection.statements.append(sql)
        return super().execute(sql, params)


conn = sqlite3.connect(sys.argv[1], factory=AuditedConnection)
show("connection class", type(conn))
show("label", conn.label)
conn.execute("create table fruit (id integer primary key, name text)")
conn.executemany("insert into fruit (name) values (?)", [("apple",), ("pear",)])
conn.commit()
cur = conn.cursor(factory=AuditedCursor)
show("cursor class", type(cur))
show("cursor.connection is conn", cur.connection is conn)
cur.execute("select name from fruit order by id")
show("rows", cur.fetchall())
cur.execute("select count(*) from fruit where name like ?", ("p%",))
show("count", cur.fetchone())
show("runs", cur.runs)
show("statements", conn.statements)
conn.row_factory = sqlite3.Row
cur = conn.cursor(AuditedCursor)
show("Row by name", cur.execute("select name from fruit where id = 2").fetchone()["name"])
conn.close()

direct = sqlite3.Connection(sys.argv[1])
show("made directly", direct.execute("select name from fruit where id = 1").fetchone())
direct.close()
try:
    sqlite3.Connection(sys.argv[1] + ".missing/dir/x.db")
except sqlite3.OperationalError as e:
    show("connection error", e)
print("done")
