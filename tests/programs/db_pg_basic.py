"""psycopg2 against a real server: every value the program sees is printed
with its type (run-to-run values such as pids and oids are not printed)."""
import datetime
import decimal
import io
import sys
import uuid

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
import psycopg2.extras


def show(label, value):
    if isinstance(value, memoryview):
        value = ("memoryview", value.tobytes())
    print(f"{label}: {type(value).__name__} {value!r}")


psycopg2.extras.register_uuid()
conn = psycopg2.connect(sys.argv[1])
show("isinstance connection", isinstance(conn, ext.connection))
show("server_version", conn.server_version)
show("encoding", conn.encoding)
show("status", conn.status)
show("closed", conn.closed)
show("server_encoding", conn.get_parameter_status("server_encoding"))
show("transaction status", conn.get_transaction_status())
show("isolation_level", conn.isolation_level)
info = conn.info
show("info type", type(info))
show("info.server_version", info.server_version)
show("info.dbname", info.dbname)
show("info.parameter_status", info.parameter_status("server_encoding"))
show("info.transaction_status", info.transaction_status)
show("info.backend_pid is an int", isinstance(info.backend_pid, int))
with conn.cursor() as cur:
    show("isinstance cursor", isinstance(cur, ext.cursor))
    show("cursor.connection is conn", cur.connection is conn)
    cur.execute("""
        drop table if exists item cascade;
        create table item (id serial primary key, name text unique not null, price numeric(10, 2),
                           at timestamptz, day date, t time, span interval, tags text[],
                           grid int[], data bytea, doc json, docb jsonb, ref uuid, flag boolean,
                           ratio double precision);
        create or replace function add_tax(p numeric, rate numeric) returns numeric
            language sql as 'select round(p * (1 + rate), 2)';
    """)
    show("statusmessage create", cur.statusmessage)
    when = datetime.datetime(2024, 3, 4, 5, 6, 7, 890123,
                             tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    cur.execute(
        "insert into item (name, price, at, day, t, span, tags, grid, data, doc, docb, ref, "
        "flag, ratio) values (%(name)s, %(price)s, %(at)s, %(day)s, %(t)s, %(span)s, %(tags)s, "
        "%(grid)s, %(data)s, %(doc)s, %(docb)s, %(ref)s, %(flag)s, %(ratio)s) returning id",
        {"name": "first", "price": decimal.Decimal("19.99"), "at": when,
         "day": datetime.date(2024, 2, 29), "t": datetime.time(23, 59, 1),
         "span": datetime.timedelta(days=3, seconds=7, microseconds=5),
         "tags": ["a", "b c", None], "grid": [[1, 2], [3, 4]], "data": b"\x00\x01\xffbin",
         "doc": psycopg2.extras.Json({"k": [1, 2.5, None]}),
         "docb": psycopg2.extras.Json({"nested": {"x": True}}),
         "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"), "flag": True,
         "ratio": 0.1})
    show("returning", cur.fetchone())
    show("rowcount", cur.rowcount)
    show("statusmessage", cur.statusmessage)
    show("lastrowid", cur.lastrowid)
    show("query", cur.query[:40])
    cur.executemany("insert into item (name, price) values (%s, %s)",
                    ((f"item{i}", decimal.Decimal(i) / 4) for i in range(5)))
    show("executemany rowcount", cur.rowcount)
    conn.commit()
    cur.execute("select * from item order by id")
    show("description", cur.description)
    show("description names", [c.name for c in cur.description])
    first = cur.fetchone()
    for column, value in zip(cur.description, first):
        show(f"  {column.name}", value)
    show("rownumber", cur.rownumber)
    show("fetchmany", [r[:3] for r in cur.fetchmany(2)])
    show("fetchall", [r[:3] for r in cur.fetchall()])
    show("fetchone at end", cur.fetchone())
    cur.execute("select name from item where price > %s order by name", (decimal.Decimal("0.3"),))
    for row in cur:
        show("iterated", row)
    show("mogrify", cur.mogrify("select %s, %s, %s", (1, "it's", [1, 2])))
    cur.callproc("add_tax", (decimal.Decimal("10.00"), decimal.Decimal("0.2")))
    show("callproc", cur.fetchone())
    try:
        cur.execute("insert into item (name) values ('first')")
    except psycopg2.errors.UniqueViolation as e:
        show("error class", type(e))
        show("isinstance IntegrityError", isinstance(e, psycopg2.IntegrityError))
        show("pgcode", e.pgcode)
        show("pgerror", e.pgerror)
        show("diag.constraint_name", e.diag.constraint_name)
        show("diag.message_primary", e.diag.message_primary)
        show("diag.table_name", e.diag.table_name)
        show("diag.sqlstate", e.diag.sqlstate)
        show("error cursor is cur", e.cursor is cur)
    show("transaction status after error", conn.get_transaction_status())
    conn.rollback()
    try:
        cur.execute("select nope from item")
    except psycopg2.ProgrammingError as e:
        show("undefined column", (type(e).__name__, e.pgcode, str(e).splitlines()[0]))
    conn.rollback()
    out = io.StringIO()
    cur.copy_expert("copy (select id, name, price from item order by id) to stdout with csv",
                    out)
    show("copy to", out.getvalue())
    cur.copy_expert("copy item (name, price) from stdin with csv",
                    io.StringIO("copied1,1.5\ncopied2,2.5\n"))
    show("copy from rowcount", cur.rowcount)
    binary = io.BytesIO()
    cur.copy_to(binary, "item", columns=("name",))
    show("copy_to bytes", binary.getvalue()[:30])
    cur.copy_from(io.StringIO("copied3\t3.5\n"), "item", columns=("name", "price"))
    cur.execute("select count(*) from item")
    show("count", cur.fetchone())
    conn.commit()

conn.autocommit = True
show("autocommit", conn.autocommit)
with conn.cursor() as cur:
    cur.execute("do $$ begin raise notice 'hello %', 42; end $$")
    show("notices", [n for n in conn.notices if "hello" in n])
    cur.execute("listen chan")
    cur.execute("notify chan, 'payload'")
    conn.poll()
    show("notifies", [(n.channel, n.payload) for n in conn.notifies])
    show("notify type", type(conn.notifies[0]).__name__)
conn.autocommit = False
conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
show("isolation_level now", conn.isolation_level)
show("readonly", conn.readonly)
conn.set_session(isolation_level="READ COMMITTED", readonly=False)
with conn:
    with conn.cursor("server_side") as named:
        named.itersize = 2
        named.execute("select id, name from item order by id")
        show("named cursor name", named.name)
        show("named rows", [row for row in named])
with conn:
    with conn.cursor() as cur:
        cur.execute("update item set price = price + 1 where price is not null")
        show("update rowcount", cur.rowcount)
show("committed by with", conn.get_transaction_status())
conn.close()
show("closed after close", conn.closed)
try:
    conn.cursor()
except psycopg2.InterfaceError as e:
    show("cursor on closed connection", e)
print("done")
