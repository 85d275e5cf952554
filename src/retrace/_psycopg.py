"""psycopg2 (`psycopg2._psycopg`) specifics for _drivers.py.

Stand-ins.  A replayed connection or cursor is an instance of the program's
class made by the type's tp_new without tp_init: no libpq connection, no
result behind it (psycopg2's dealloc and repr accept that).  Every method and
attribute that reads libpq state is an event, so nothing reads the empty
struct; `psycopg2.connect` to a server that is down returns one as it did in
the recording.

Values that are C objects of psycopg2 are rebuilt: `cursor.description`
(Column), `connection.notifies` (Notify), and an exception's `diag`
(Diagnostics reads the C library's result, so its fields are recorded with
the exception and replay returns an object with the same fields).  An
exception keeps its class (psycopg2.errors.UniqueViolation ...), pgcode,
pgerror and cursor (the codec keeps the C members of exception classes).

COPY: the file object given to copy_expert/copy_from/copy_to is handed to
the driver behind a proxy whose read/write are callbacks, so that replay
reads and writes the program's file as the recording did.

Factories.  A connection_factory or cursor_factory of the program's (a
subclass with its own __init__, psycopg2.extras' DictCursor ...) makes the
object in replay too: cursor factories are given to the driver as callbacks
(_drivers.constructor), connection factories are called here (connect); the
C __init__ they call is an event, which replay does not run.  Rows of a
cursor with a row_factory are made outside the fetch events (rows).

Replay checks that each statement (execute, executemany, callproc, mogrify)
and its parameters are the recorded ones.
"""
import functools
import io

from . import _drivers, _engine
from ._settings import fallback_to

PLAIN_FACTORIES = ()

DIAG_FIELDS = ["column_name", "constraint_name", "context", "datatype_name",
               "internal_position", "internal_query", "message_detail", "message_hint",
               "message_primary", "schema_name", "severity", "severity_nonlocalized",
               "source_file", "source_function", "source_line", "sqlstate",
               "statement_position", "table_name"]
COLUMN_FIELDS = ["name", "type_code", "display_size", "internal_size", "precision", "scale",
                 "null_ok", "table_oid", "table_column"]

_module = None
_row_factory = None   # cursor.row_factory, the member descriptor


def prepare(module):
    global _module, _row_factory
    _module = module
    _row_factory = module.cursor.__dict__["row_factory"]


class Diagnostics:
    """What `exc.diag` is in replay: the recorded fields."""

    def __init__(self, fields):
        self.__dict__.update(fields)


Diagnostics.__module__, Diagnostics.__qualname__ = "psycopg2.extensions", "Diagnostics"


def _record_diag(exc):
    diag = _real_diag.__get__(exc)
    return {"diag": {f: getattr(diag, f, None) for f in DIAG_FIELDS}}


def _diag(exc):
    recorded = exc.__dict__.get("diag")
    return Diagnostics(recorded) if isinstance(recorded, dict) else _real_diag.__get__(exc)


def _columns(description):
    return None if description is None else tuple(
        tuple(getattr(c, f) for f in COLUMN_FIELDS) for c in description)


def _rebuild_columns(fields):
    if fields is None:
        return None
    return tuple(_module.Column(**dict(zip(COLUMN_FIELDS, values))) for values in fields)


def finish(module):
    global _real_diag
    cursor, connection = module.cursor, module.connection
    description = cursor.__dict__["description"]
    _engine.patch_type(cursor, "description", property(_engine.BoundaryMethod(
        "psycopg2._psycopg.cursor.description", _recording(description.__get__, _columns),
        replay=lambda fields, cur: _rebuild_columns(fields), split=True, receiver=True,
        fallback=fallback_to(description.__get__))))
    notifies = connection.__dict__["notifies"]
    _engine.patch_type(connection, "notifies", property(_engine.BoundaryMethod(
        "psycopg2._psycopg.connection.notifies",
        _recording(notifies.__get__, lambda got: [(n.pid, n.channel, n.payload) for n in got]),
        replay=lambda recorded, conn: [module.Notify(*n) for n in recorded],
        split=True, receiver=True, fallback=fallback_to(notifies.__get__))))
    _real_diag = module.Error.__dict__["diag"]
    _engine.exception_extras(module.Error, _record_diag)
    _engine.patch_type(module.Error, "diag", property(_diag))


def _recording(get, record):
    """A split recording function: (record(value), value) of value = get(obj)."""
    def recording(obj):
        value = _engine.world(get, obj)
        return record(value), value
    return recording


def _standin(cls):
    return cls.__new__(cls)


STANDINS = {"connection": _standin, "cursor": _standin, "ConnectionInfo": _standin}


def connect(event, orig):
    """_connect(dsn, connection_factory=None, async=0, async_=0).  The driver
    makes the connection by calling connection_factory(dsn[, async]); a
    factory of the program's is called here instead, in both runs, so that
    replay makes the connection with the program's own __init__, whose call
    of the C connection.__init__ (which connects) is the event.  (Given to
    the driver as a callback, its arguments would be recorded: the DSN,
    with its password.)"""
    def _connect(*args, **kwargs):
        factory = kwargs.get("connection_factory", args[1] if len(args) > 1 else None)
        if factory is None or _drivers.is_c_type(factory):
            return event(*args, **kwargs)
        dsn = args[0] if args else kwargs.get("dsn")
        async_ = kwargs.get("async_", args[3] if len(args) > 3 else 0) or \
            kwargs.get("async", args[2] if len(args) > 2 else 0)
        return factory(dsn, async_) if async_ else factory(dsn)

    _connect.__name__ = _connect.__qualname__ = orig.__name__
    _connect.__doc__ = orig.__doc__
    _connect.__wrapped__ = orig
    return _connect


FUNCTIONS = {"_connect": connect}


def rows(cls, name, qualname, orig):
    """A fetch (fetchone, fetchmany, fetchall, __next__).  psycopg2 makes a
    row with the cursor's row_factory(cursor) and then fills it by index,
    after the factory returned, so the filled row is no value a callback
    made.  Here the driver makes plain tuples inside the event (the row
    factory is set aside for the call), which the trace holds, and the rows
    are made from them outside the event, in both runs, as the driver makes
    them: the program's row factory (DictRow, RealDictRow, its own) runs
    with its own events, and each value is set by index."""
    row_factory = _row_factory

    def tuples(fetch, cur, args, kwargs):
        factory = row_factory.__get__(cur)
        if factory is None:
            return fetch(cur, *args, **kwargs)
        row_factory.__set__(cur, None)
        try:
            return fetch(cur, *args, **kwargs)
        finally:
            row_factory.__set__(cur, factory)

    def fetch_tuples(cur, *args, **kwargs):
        return tuples(recorded_fetch, cur, args, kwargs)

    def unrecorded(done, cur, *args, **kwargs):
        """The fetch without Retrace, where fetch_tuples failed."""
        return done[0] if done else tuples(orig, cur, args, kwargs)

    recorded_fetch = functools.partial(_engine.world, orig)
    event = _engine.BoundaryMethod(qualname, fetch_tuples, receiver=True, fallback=unrecorded)
    one = name in ("fetchone", "__next__")

    def fetch(cur, *args, **kwargs):
        got = event(cur, *args, **kwargs)
        factory = row_factory.__get__(cur)
        if factory is None or got is None:
            return got
        return _make_row(cur, factory, got) if one else [_make_row(cur, factory, t) for t in got]

    fetch.__name__ = fetch.__qualname__ = orig.__name__
    fetch.__doc__ = orig.__doc__
    fetch.__wrapped__ = orig
    return fetch


def _make_row(cursor, factory, values):
    row = factory(cursor)
    for i, value in enumerate(values):
        row[i] = value
    return row


def execute(cls, name, qualname, orig):
    """A statement: recorded with its text and the CRC-32 of its parameters,
    which replay checks."""
    return _engine.BoundaryMethod(qualname, orig, receiver=True, statement=True)


class _TextFile(io.TextIOBase):
    """A text file as psycopg2 sees it (it decodes for io.TextIOBase files)."""


class _BinaryFile:
    pass


def file_callbacks(file):
    """The program's file behind a proxy whose read, readline and write are
    callbacks."""
    if file is None or isinstance(file, (_TextFile, _BinaryFile)):
        return file
    proxy = _TextFile() if isinstance(file, io.TextIOBase) else _BinaryFile()
    for name in ("read", "readline", "write"):
        method = getattr(file, name, None)
        if method is not None:
            setattr(proxy, name, _drivers.callback(method))
    return proxy
