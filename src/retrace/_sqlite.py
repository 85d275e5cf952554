"""sqlite3 (`_sqlite3`) specifics for _drivers.py.

Stand-ins.  A replayed `sqlite3.Connection` is a real connection of the
program's class opened on a private, empty in-memory database, and a
replayed `Cursor` a real cursor on one shared private connection: C code of
the module that reads their structs (sqlite3.Row reads the cursor's
description, deallocation closes the database) finds valid state, while
every method that would reach the program's database is an event and never
runs on them.

Cursor state.  `description` and `lastrowid` are plain members that the C
code and sqlite3.Row read directly: the calls that set them (execute,
executemany, executescript, and cursor() for a new cursor) are statement
boundaries that record their new values, and replay stores them into the
stand-in, so reading them is no event.  `rowcount` is an event (fetching the rows of an INSERT ... RETURNING
changes it).  A new cursor of a replayed connection gets the connection and
its row factory.

Factories.  A `factory` given to connect() or cursor() is the program's
class: the driver is given it as a callback (_drivers.constructor), so that
replay makes the connection or cursor with the program's own __init__.  The
C Connection.__init__ it calls is an event, replayed by opening the private
in-memory database.

Replay checks that each statement and its parameters are the recorded ones:
a program that runs another query stops with a divergence.
"""
import _sqlite3

from . import _engine

_members = {}      # name -> the original member descriptor of Cursor or Connection
_private = None    # the connection replayed cursors are made on

# Factories that need no replay (text_factory=str is the default)
PLAIN_FACTORIES = (str, bytes, bytearray)


def prepare(module):
    for name in ("description", "lastrowid", "connection", "row_factory"):
        _members[name] = module.Cursor.__dict__[name]
    _members["connection_row_factory"] = module.Connection.__dict__["row_factory"]
    _members["connection_init"] = module.Connection.__dict__["__init__"]


def finish(module):
    pass


def _open_private(conn):
    _members["connection_init"](conn, ":memory:", check_same_thread=False)


def _standin_connection(cls):
    conn = cls.__new__(cls)
    _open_private(conn)
    return conn


def _standin_cursor(cls):
    global _private
    if _private is None:
        _private = _sqlite3.Connection(":memory:", check_same_thread=False)
    cursor = cls.__new__(cls)
    _sqlite3.Cursor.__init__(cursor, _private)
    return cursor


STANDINS = {"Connection": _standin_connection, "Cursor": _standin_cursor}

# Connection.__init__ is an event (a factory subclass's __init__ calls it):
# replay opens the private in-memory database instead of the program's.
REPLAY = {"_sqlite3.Connection.__init__": lambda recorded, conn, *args, **kwargs:
          _open_private(conn)}


def execute(cls, name, qualname, orig):
    """A call that runs a statement or makes a cursor: recorded with the
    statement, the CRC-32 of its parameters (replay checks both) and the
    new description and lastrowid of the cursor it returns, which replay
    stores into it (_engine's statement boundary, all in C)."""
    def replay(cursor, obj, *args, **kwargs):
        if cursor is not obj:   # a new cursor of connection obj
            _engine.set_member(cursor, _members["connection"], obj)
            _engine.set_member(cursor, _members["row_factory"],
                               _members["connection_row_factory"].__get__(obj))
        return cursor

    return _engine.BoundaryMethod(qualname, orig, receiver=True, statement=True,
                                  members=(_members["description"], _members["lastrowid"]),
                                  replay=replay)
