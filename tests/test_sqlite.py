"""sqlite3 at the boundary: record against a real database file, delete the
file, replay.  The programs print the type and repr of every value they get
from the driver and every call the driver makes into them; the replay must
print exactly the same, and so must a plain run (the values are
deterministic).  Replay creates no database file."""
import shutil

import pytest

from conftest import Case, assert_same_run, replay_edited, run, retrace_cmd


def sqlite_case(world, name):
    db = world.root / "data" / "app.sqlite"
    db.parent.mkdir(exist_ok=True)
    return Case(world, name, [world.programs / f"{name}.py"], [db], world.work, {}), db


def record_then_replay(world, name, *, compare_plain=True, sort_plain=False):
    case, db = sqlite_case(world, name)
    plain = case.plain()
    assert plain.code == 0, plain.describe()
    shutil.rmtree(db.parent)
    db.parent.mkdir()
    rec = case.record()
    assert rec.code == 0, rec.describe()
    assert db.exists()
    if compare_plain:
        if sort_plain:   # threads print in their own order
            assert sorted(rec.out.splitlines()) == sorted(plain.out.splitlines())
        else:
            assert rec.out == plain.out, (plain.describe(), rec.describe())
    shutil.rmtree(db.parent)          # replay needs no database
    replayed = world.replay(rec.trace)
    assert_same_run(rec, replayed)
    assert not db.parent.exists(), "replay created the database directory"
    return rec


def lines(result):
    return result.out.decode().splitlines()


def test_basic_calls_replay_without_the_database(world):
    rec = record_then_replay(world, "db_sqlite_basic")
    out = lines(rec)
    assert "isinstance Connection: bool True" in out
    assert "cursor.connection is conn: bool True" in out
    assert "lastrowid: int 1" in out
    assert "fetchone: tuple (1, 'apple', 1.25, 3, b'\\x00\\xffbytes', None)" in out
    assert "sqlite_errorname: str 'SQLITE_CONSTRAINT_UNIQUE'" in out
    assert "total_changes: int 12" in out
    assert out[-1] == "done"


def test_callbacks_and_values_replay(world):
    rec = record_then_replay(world, "db_sqlite_callbacks")
    out = lines(rec)
    # the driver's calls into the program happen again in replay (they print)
    for line in ["  adapt_point(Point(1, 2))", "  convert_point(b'1;2')", "  double(4)",
                 "  Spread.finalize() over 4", "  collate('n0', 'n1')",
                 "adapted the program's own objects: list [1, 0, 1, 2]",
                 "  value: Point Point(1.0, 2.0)", "  value: Decimal Decimal('12.5')",
                 "  value: UUID UUID('00000000-0000-0000-0000-000000001234')",
                 "aggregate: tuple (3,)", "Row by name: str 'first'",
                 "Row keys: list ['id', 'name']", "progress handler called: bool True",
                 "dict rows: list [{'id': 1, 'name': 'first'}, {'id': 2, 'name': 'n0'}]",
                 "text_factory: list [('FIRST',), ('N0',), ('N1',), ('N2',)]",
                 "statements traced: int 15"]:
        assert line in out, line
    assert any(line.startswith("window: list [(1, 1), (2, 3)") for line in out)


def test_threads_with_their_own_connections(world):
    rec = record_then_replay(world, "db_sqlite_threads", sort_plain=True)
    assert "summary: [(0, 5, 10), (1, 5, 10), (2, 5, 10)]" in lines(rec)


OTHER_STATEMENT = "the program runs another statement than the recorded run"
OTHER_PARAMETERS = "the program passes other parameters to the statement than the recorded run"


@pytest.mark.parametrize("old, new, reason, shown", [
    ("where qty > ? order by name", "where qty >= ? order by name", OTHER_STATEMENT,
     ["where qty > ? order by name", "where qty >= ? order by name"]),
    # the trace holds a CRC-32 of the parameters: the replay's ones are shown
    ('("apple", 1.25, 3, ', '("apple", 1.5, 3, ', OTHER_PARAMETERS,
     ["('apple', 1.5, 3, b'\\x00\\xffbytes')"]),
    ('for i in range(5)))', 'for i in range(4)))', OTHER_PARAMETERS, ["[('item0', 0.0, 0, 'even')"]),
])
def test_another_statement_in_replay_is_a_divergence(world, old, new, reason, shown):
    case, db = sqlite_case(world, "db_sqlite_basic")
    rec = case.record()
    assert rec.code == 0, rec.describe()
    shutil.rmtree(db.parent)
    replayed = replay_edited(world, rec.trace, "db_sqlite_basic", old, new)
    err = replayed.err.decode()
    assert reason in err
    for text in shown:
        assert text in err, text
    assert str(world.programs / "db_sqlite_basic.py") in err   # named as changed
    assert rec.out.startswith(replayed.out)


def test_a_call_on_another_connection_is_a_divergence(world, tmp_path):
    program = world.programs / "db_sqlite_two.py"
    program.write_text(
        "import sqlite3, sys\n"
        "a = sqlite3.connect(sys.argv[1]); b = sqlite3.connect(':memory:')\n"
        "target = a if len(sys.argv) < 3 else b\n"
        "print(target.execute('select 41 + 1').fetchone())\n")
    db = world.root / "two.sqlite"
    rec = Case(world, "two", [program], [db], world.work, {}).record()
    assert rec.code == 0 and rec.out == b"(42,)\n", rec.describe()
    # the same program told (through its recorded argv, edited here) to use b
    program.write_text(program.read_text().replace("len(sys.argv) < 3", "False"))
    replayed = world.replay(rec.trace)
    assert replayed.code == 3, replayed.describe()
    assert "the call is made on another object than in the recording" in replayed.err.decode()


def test_factories_replay_with_their_state(world):
    """connect(factory=...) and cursor(factory=...) classes of the program's
    own keep their __init__ state in replay; a Connection made directly
    opens no file in replay."""
    out = lines(record_then_replay(world, "db_sqlite_factories"))
    for line in ["connection class: type <class '__main__.AuditedConnection'>",
                 "label: str 'audited'", "cursor class: type <class '__main__.AuditedCursor'>",
                 "cursor.connection is conn: bool True", "runs: int 2",
                 "statements: list ['select name from fruit order by id', "
                 "'select count(*) from fruit where name like ?']",
                 "Row by name: str 'pear'", "made directly: tuple ('apple',)",
                 "connection error: OperationalError OperationalError('unable to open database "
                 "file')", "done"]:
        assert line in out, line



def test_factory_in_a_forked_child_replays(world):
    """A factory class given to the driver before a fork is given again, with
    a number of the child's own trace, in the child."""
    from web_servers import wait_for_children
    case, db = sqlite_case(world, "db_sqlite_fork")
    rec = case.record()
    assert rec.code == 0, rec.describe()
    assert b"child: tagged in child (2,)" in rec.out, rec.describe()
    shutil.rmtree(db.parent)
    (child,) = wait_for_children(rec.trace, 1).values()
    replayed = world.replay(child)
    assert replayed.code == 0, replayed.describe()
    assert replayed.out == b"parent: tagged in parent (1,)\nchild: tagged in child (2,)\n", \
        replayed.describe()


def test_statements_replay_under_payload_redaction(world):
    """RETRACE_REDACT masks what it matches in the recorded statement text
    too; replay checks its statements as masked alike."""
    case, db = sqlite_case(world, "db_sqlite_basic")
    rec = case.record(RETRACE_REDACT="order by name")
    assert rec.code == 0, rec.describe()
    shutil.rmtree(db.parent)
    assert_same_run(rec, world.replay(rec.trace))
    # a statement that differs elsewhere still diverges
    replayed = replay_edited(world, rec.trace, "db_sqlite_basic", "where qty > ? order by name",
                             "where qty >= ? order by name")
    assert OTHER_STATEMENT in replayed.err.decode()
