"""psycopg2.extras cursors and the program's own connection and cursor
factories: the rows keep their types (DictRow, RealDictRow, the namedtuple
Record), and the factories' Python __init__ state is there in replay too."""
import sys

import psycopg2
import psycopg2.extensions as ext
import psycopg2.extras as extras


def show(label, value):
    print(f"{label}: {type(value).__name__} {value!r}")


def real_dict(row):
    """A RealDictRow (an OrderedDict, whose repr differs across versions)."""
    return (type(row).__name__, dict(row))


class AuditedConnection(ext.connection):
    """A connection factory with Python state of its own."""

    def __init__(self, dsn, *args, **kwargs):
        super().__init__(dsn, *args, **kwargs)
        self.statements = []
        self.label = "audited"


class AuditedCursor(ext.cursor):
    """A cursor factory that keeps the statements it ran on its connection."""

    def __init__(self, conn, *args, **kwargs):
        super().__init__(conn, *args, **kwargs)
        self.runs = 0

    def execute(self, query, vars=None):
        self.runs += 1
        self.connection.statements.append(query)
        return super().execute(query, vars)


class Pair(list):
    """A row factory of the program's own: the driver fills it by index."""

    def __init__(self, cursor):
        super().__init__([None] * len(cursor.description))
        self.width = len(cursor.description)


conn = psycopg2.connect(sys.argv[1], connection_factory=AuditedConnection)
show("connection class", type(conn))
show("label", conn.label)
with conn.cursor() as cur:
    cur.execute("drop table if exists fruit; "
                "create table fruit (id int primary key, name text, qty int)")
    cur.executemany("insert into fruit values (%s, %s, %s)",
                    [(1, "apple", 3), (2, "pear", 0), (3, "plum", 7)])
conn.commit()

with conn.cursor(cursor_factory=extras.DictCursor) as cur:
    cur.execute("select id, name, qty from fruit order by id")
    row = cur.fetchone()
    show("DictCursor fetchone", row)
    show("  row['name']", row["name"])
    show("  row[2]", row[2])
    show("  row.keys()", list(row.keys()))
    rows = cur.fetchall()
    show("DictCursor fetchall", rows)
    show("  names", [r["name"] for r in rows])
    cur.execute("select name, qty from fruit where qty > %s order by id", (0,))
    show("DictCursor iteration", [dict(r) for r in cur])

with conn.cursor(cursor_factory=extras.RealDictCursor) as cur:
    cur.execute("select id, name from fruit order by id")
    show("RealDictCursor fetchone", real_dict(cur.fetchone()))
    show("RealDictCursor fetchmany", [real_dict(r) for r in cur.fetchmany(2)])
    cur.execute("select qty from fruit order by id")
    show("RealDictCursor iteration", [r["qty"] for r in cur])

with conn.cursor(cursor_factory=extras.NamedTupleCursor) as cur:
    cur.execute("select id, name from fruit order by id")
    row = cur.fetchone()
    show("NamedTupleCursor fetchone", tuple(row))
    show("  row.name", row.name)
    show("  fields", row._fields)
    show("NamedTupleCursor rest", [(r.id, r.name) for r in cur])

with conn.cursor("named_dict", cursor_factory=extras.RealDictCursor) as cur:
    cur.itersize = 2
    cur.execute("select id, name from fruit order by id")
    show("named RealDictCursor", [r["name"] for r in cur])

with conn.cursor(cursor_factory=AuditedCursor) as cur:
    cur.execute("select count(*) from fruit")
    show("AuditedCursor runs", cur.runs)
    show("AuditedCursor count", cur.fetchone())
    cur.row_factory = Pair
    cur.execute("select id, qty from fruit order by id")
    row = cur.fetchone()
    show("Pair row", row)
    show("  width", row.width)
    show("Pair rows", cur.fetchall())
show("statements on the connection", conn.statements)

conn.cursor_factory = extras.DictCursor
with conn.cursor() as cur:
    cur.execute("select name from fruit where id = %s", (3,))
    show("connection cursor_factory", cur.fetchone()["name"])
    show("  cursor class", type(cur))
conn.close()

dict_conn = psycopg2.connect(sys.argv[1], connection_factory=extras.RealDictConnection)
with dict_conn.cursor() as cur:
    cur.execute("select id, name from fruit where id = 1")
    show("RealDictConnection row", real_dict(cur.fetchone()))
dict_conn.close()

direct = ext.connection(sys.argv[1])
with direct.cursor() as cur:
    cur.execute("select 40 + 2")
    show("connection() made directly", cur.fetchone())
direct.close()
print("done")
