"""psycopg2 at the boundary, against a real PostgreSQL server (the
`pg_cluster` fixture: a throwaway cluster of this test's own).  Each program
runs plainly, is recorded, and is replayed after the cluster is stopped: the
replay prints exactly what the recording printed, and the recording what the
plain run printed (threads aside, whose lines may come in another order)."""
import pytest

from conftest import Case, assert_same_run, replay_edited

pytest.importorskip("psycopg2")


def pg_case(world, name, cluster):
    return Case(world, name, [world.programs / f"{name}.py"], [cluster.dsn], world.work, {})


def record_then_replay(world, pg_cluster, name, *, sort_plain=False):
    case = pg_case(world, name, pg_cluster)
    plain = case.plain()
    assert plain.code == 0, plain.describe()
    rec = case.record()
    assert rec.code == 0, rec.describe()
    if sort_plain:
        assert sorted(rec.out.splitlines()) == sorted(plain.out.splitlines())
    else:
        assert rec.out == plain.out, (plain.describe(), rec.describe())
    assert rec.err == plain.err == b""
    pg_cluster.stop()
    assert not pg_cluster.running()
    assert_same_run(rec, world.replay(rec.trace))
    return rec.out.decode().splitlines()


def test_connection_cursor_values_and_errors_replay_with_the_server_stopped(world, pg_cluster):
    out = record_then_replay(world, pg_cluster, "db_pg_basic")
    for line in [
        "isinstance connection: bool True", "isinstance cursor: bool True",
        "info type: type <class 'psycopg2.extensions.ConnectionInfo'>",
        "info.parameter_status: str 'UTF8'", "info.transaction_status: int 0",
        "info.backend_pid is an int: bool True",
        "cursor.connection is conn: bool True", "returning: tuple (1,)",
        "statusmessage: str 'INSERT 0 1'", "executemany rowcount: int 5",
        "  price: Decimal Decimal('19.99')",
        "  at: datetime datetime.datetime(2024, 3, 4, 10, 6, 7, 890123, "
        "tzinfo=datetime.timezone.utc)",
        "  span: timedelta datetime.timedelta(days=3, seconds=7, microseconds=5)",
        "  grid: list [[1, 2], [3, 4]]", "  data: tuple ('memoryview', b'\\x00\\x01\\xffbin')",
        "  docb: dict {'nested': {'x': True}}",
        "  ref: UUID UUID('12345678-1234-5678-1234-567812345678')",
        "mogrify: bytes b\"select 1, 'it''s', ARRAY[1,2]\"", "callproc: tuple (Decimal('12.00'),)",
        "error class: type <class 'psycopg2.errors.UniqueViolation'>", "pgcode: str '23505'",
        "diag.constraint_name: str 'item_name_key'", "error cursor is cur: bool True",
        "copy from rowcount: int 2", "count: tuple (9,)", "notices: list ['NOTICE:  hello 42\\n']",
        "notifies: list [('chan', 'payload')]", "notify type: str 'Notify'",
        "named cursor name: str 'server_side'", "closed after close: int 1", "done"]:
        assert line in out, line
    assert any(line.startswith("description: tuple (Column(name='id', type_code=23)")
               for line in out)


def test_typecasters_adapters_and_threads_replay(world, pg_cluster):
    out = record_then_replay(world, pg_cluster, "db_pg_callbacks", sort_plain=True)
    for line in ["  adapt_point(Point(1, 2))", "  cast_point('(-3,4.5)', cursor is cursor)",
                 "row: (1, Point(1.0, 2.0)) Point", "cast: Point(7.0, 8.0)",
                 "threads: [(0, (0, True)), (1, (10, True)), (2, (20, True))]"]:
        assert line in out, line


def test_connect_to_a_server_that_is_down_replays_as_recorded(world, pg_cluster):
    program = world.programs / "db_pg_down.py"
    program.write_text(
        "import sys, psycopg2\n"
        "conn = psycopg2.connect(sys.argv[1])\n"
        "cur = conn.cursor()\n"
        "cur.execute('select 6 * 7')\n"
        "print('answer', cur.fetchone())\n")
    rec = Case(world, "down", [program], [pg_cluster.dsn], world.work, {}).record()
    assert rec.code == 0 and rec.out == b"answer (42,)\n", rec.describe()
    pg_cluster.stop()
    assert_same_run(rec, world.replay(rec.trace))


@pytest.mark.parametrize("old, new, reason, shown", [
    ("where price > %s order by name", "where price < %s order by name",
     "the program runs another statement than the recorded run",
     ["where price > %s order by name", "where price < %s order by name"]),
    ('(decimal.Decimal("0.3"),)', '(decimal.Decimal("0.4"),)',
     "the program passes other parameters to the statement than the recorded run",
     ["where price > %s order by name", "Decimal('0.4')"]),
])
def test_another_statement_is_a_divergence(world, pg_cluster, old, new, reason, shown):
    rec = pg_case(world, "db_pg_basic", pg_cluster).record()
    assert rec.code == 0, rec.describe()
    pg_cluster.stop()
    replayed = replay_edited(world, rec.trace, "db_pg_basic", old, new)
    err = replayed.err.decode()
    assert reason in err
    for text in shown:
        assert text in err, text
    assert rec.out.startswith(replayed.out)


def test_extras_cursors_and_factories_replay(world, pg_cluster):
    """psycopg2.extras' cursors, and the program's own connection, cursor and
    row factories: rows keep their types, factories their __init__ state."""
    out = record_then_replay(world, pg_cluster, "db_pg_extras")
    for line in [
        "connection class: type <class '__main__.AuditedConnection'>", "label: str 'audited'",
        "DictCursor fetchone: DictRow [1, 'apple', 3]", "  row['name']: str 'apple'",
        "  row.keys(): list ['id', 'name', 'qty']",
        "DictCursor iteration: list [{'name': 'apple', 'qty': 3}, {'name': 'plum', 'qty': 7}]",
        "RealDictCursor fetchone: tuple ('RealDictRow', {'id': 1, 'name': 'apple'})",
        "RealDictCursor iteration: list [3, 0, 7]", "  row.name: str 'apple'",
        "NamedTupleCursor rest: list [(2, 'pear'), (3, 'plum')]",
        "named RealDictCursor: list ['apple', 'pear', 'plum']", "AuditedCursor runs: int 1",
        "Pair row: Pair [1, 3]", "  width: int 2",
        "statements on the connection: list ['select count(*) from fruit', "
        "'select id, qty from fruit order by id']",
        "connection cursor_factory: str 'plum'",
        "  cursor class: type <class 'psycopg2.extras.DictCursor'>",
        "RealDictConnection row: tuple ('RealDictRow', {'id': 1, 'name': 'apple'})",
        "connection() made directly: tuple (42,)", "done"]:
        assert line in out, line

