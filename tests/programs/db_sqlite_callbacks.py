"""sqlite3 callbacks into Python and value types: each callback prints what
it is called with, and the program prints every value it gets back."""
import datetime
import decimal
import sqlite3
import sys
import uuid


def show(label, value):
    print(f"{label}: {type(value).__name__} {value!r}")


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


adapted = []


def adapt_point(p):
    adapted.append(p)
    print(f"  adapt_point({p!r})")
    return f"{p.x};{p.y}"


def convert_point(data):
    print(f"  convert_point({data!r})")
    x, y = map(float, data.split(b";"))
    return Point(x, y)


sqlite3.register_adapter(Point, adapt_point)
sqlite3.register_converter("point", convert_point)
sqlite3.register_adapter(decimal.Decimal, str)
sqlite3.register_converter("decimal", lambda b: decimal.Decimal(b.decode()))
sqlite3.register_adapter(uuid.UUID, lambda u: u.bytes)
sqlite3.register_converter("uuid", lambda b: uuid.UUID(bytes=b))
sqlite3.register_adapter(datetime.datetime, lambda d: d.isoformat())
sqlite3.register_converter("tstz", lambda b: datetime.datetime.fromisoformat(b.decode()))

conn = sqlite3.connect(sys.argv[1], detect_types=sqlite3.PARSE_DECLTYPES)
statements = []
conn.set_trace_callback(lambda sql: statements.append(sql))
conn.execute("create table shape (id integer primary key, p point, price decimal, u uuid, "
             "at tstz, name text)")
when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456,
                         tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
conn.execute("insert into shape (p, price, u, at, name) values (?, ?, ?, ?, ?)",
             (Point(1, 2), decimal.Decimal("12.50"), uuid.UUID(int=0x1234), when, "first"))
conn.executemany("insert into shape (p, name) values (?, ?)",
                 [(Point(i, -i), f"n{i}") for i in range(3)])
show("adapted the program's own objects", [a.x for a in adapted])
for row in conn.execute("select p, price, u, at, name from shape order by id"):
    for value in row:
        show("  value", value)


def double(x):
    print(f"  double({x!r})")
    return x * 2


conn.create_function("double", 1, double)
show("function", conn.execute("select double(id) from shape order by id").fetchall())


class Spread:
    def __init__(self):
        self.values = []

    def step(self, value):
        print(f"  Spread.step({value!r})")
        self.values.append(value)

    def finalize(self):
        print(f"  Spread.finalize() over {len(self.values)}")
        return max(self.values) - min(self.values)


conn.create_aggregate("spread", 1, Spread)
show("aggregate", conn.execute("select spread(id) from shape").fetchone())


class RunningSum:
    def __init__(self):
        self.total = 0

    def step(self, value):
        self.total += value

    def inverse(self, value):
        self.total -= value

    def value(self):
        print(f"  RunningSum.value() = {self.total}")
        return self.total

    def finalize(self):
        return self.total


if hasattr(conn, "create_window_function"):
    conn.create_window_function("runsum", 1, RunningSum)
    show("window", conn.execute(
        "select id, runsum(id) over (order by id rows between 1 preceding and current row) "
        "from shape").fetchall())


def reverse_order(a, b):
    print(f"  collate({a!r}, {b!r})")
    return (a < b) - (a > b)


conn.create_collation("reverse", reverse_order)
show("collation", conn.execute("select name from shape order by name collate reverse").fetchall())

seen = []


def authorizer(action, arg1, arg2, dbname, source):
    seen.append((action, arg1, arg2))
    return sqlite3.SQLITE_DENY if arg2 == "price" else sqlite3.SQLITE_OK


conn.set_authorizer(authorizer)
try:
    conn.execute("select price from shape")
except sqlite3.DatabaseError as e:
    show("denied", e)
conn.set_authorizer(None)
show("authorizer saw", sorted(set(seen))[:4])

ticks = []
conn.set_progress_handler(lambda: ticks.append(1) and 0, 1)
conn.execute("select count(*) from shape a, shape b").fetchone()
conn.set_progress_handler(None, 1)
show("progress handler called", len(ticks) > 0)


def dict_factory(cursor, row):
    return {col[0]: value for col, value in zip(cursor.description, row)}


conn.row_factory = dict_factory
show("row_factory is dict_factory", conn.row_factory is dict_factory)
show("dict rows", conn.execute("select id, name from shape order by id limit 2").fetchall())
conn.row_factory = sqlite3.Row
cur = conn.cursor()
cur.execute("select id, name from shape order by id")
row = cur.fetchone()
show("Row", type(row).__name__)
show("Row keys", row.keys())
show("Row by name", row["name"])
show("Rows", [tuple(r) for r in cur.fetchall()])
conn.row_factory = None
conn.text_factory = lambda b: b.decode().upper()
show("text_factory", conn.execute("select name from shape order by id").fetchall())
conn.text_factory = str
show("statements traced", len(statements))
show("first statement", statements[0])
conn.close()
