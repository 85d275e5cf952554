"""psycopg2 callbacks into Python: a typecaster made with new_type and an
adapter registered with register_adapter print each call; the values they
make are the program's own objects in replay. Also threads with separate
connections."""
import sys
import threading

import psycopg2
import psycopg2.extensions as ext


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def adapt_point(p):
    print(f"  adapt_point({p!r})")
    return ext.AsIs(f"point({p.x}, {p.y})")


def cast_point(value, cursor):
    print(f"  cast_point({value!r}, cursor is {type(cursor).__name__})")
    if value is None:
        return None
    x, y = value.strip("()").split(",")
    return Point(float(x), float(y))


ext.register_adapter(Point, adapt_point)
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("select null::point")
oid = cur.description[0].type_code
POINT = ext.new_type((oid,), "POINT", cast_point)
ext.register_type(POINT, conn)
cur.execute("drop table if exists shape; create table shape (id serial, p point)")
cur.execute("insert into shape (p) values (%s), (%s), (null)", (Point(1, 2), Point(-3, 4.5)))
cur.execute("select id, p from shape order by id")
for row in cur.fetchall():
    print(f"row: {row!r} {type(row[1]).__name__}")
show_cast = cur.cast(oid, "(7,8)")
print(f"cast: {show_cast!r}")
conn.commit()


def worker(k, results):
    c = psycopg2.connect(sys.argv[1])
    with c, c.cursor() as wc:
        wc.execute("select %s * 10, pg_backend_pid() > 0", (k,))
        results[k] = wc.fetchone()
    c.close()
    sys.stdout.write(f"worker {k} done\n")   # one write: whole lines from threads


results = {}
threads = [threading.Thread(target=worker, args=(k, results)) for k in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"threads: {sorted(results.items())!r}")
conn.close()
