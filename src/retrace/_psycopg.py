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

Replay checks that each statement (execute, executemany, callproc, mogrify)
is the recorded one.
"""
import io

from . import _drivers, _engine
from ._drivers import check_statement, statement

PLAIN_FACTORIES = ()

DIAG_FIELDS = ["column_name", "constraint_name", "context", "datatype_name",
               "internal_position", "internal_query", "message_detail", "message_hint",
               "message_primary", "schema_name", "severity", "severity_nonlocalized",
               "source_file", "source_function", "source_line", "sqlstate",
               "statement_position", "table_name"]
COLUMN_FIELDS = ["name", "type_code", "display_size", "internal_size", "precision", "scale",
                 "null_ok", "table_oid", "table_column"]

_module = None


def prepare(module):
    global _module
    _module = module


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
        "psycopg2._psycopg.cursor.description",
        lambda cur: (_columns(description.__get__(cur)), description.__get__(cur)),
        replay=lambda fields, cur: _rebuild_columns(fields), split=True, receiver=True)))
    notifies = connection.__dict__["notifies"]
    _engine.patch_type(connection, "notifies", property(_engine.BoundaryMethod(
        "psycopg2._psycopg.connection.notifies",
        lambda conn: ([(n.pid, n.channel, n.payload) for n in notifies.__get__(conn)],
                      notifies.__get__(conn)),
        replay=lambda recorded, conn: [module.Notify(*n) for n in recorded],
        split=True, receiver=True)))
    _real_diag = module.Error.__dict__["diag"]
    _engine.exception_extras(module.Error, _record_diag)
    _engine.patch_type(module.Error, "diag", property(_diag))


def _standin(cls):
    return cls.__new__(cls)


STANDINS = {"connection": _standin, "cursor": _standin, "ConnectionInfo": _standin}


def execute(cls, name, qualname, orig):
    """A statement: recorded with its text, which replay checks."""
    many = name == "executemany"

    def record(obj, *args, **kwargs):
        if many and len(args) > 1:
            # consumed here, in both runs, not by the driver out of sight
            args = (args[0], list(args[1]), *args[2:])
        result = orig(obj, *args, **kwargs)
        return (result, statement(args, kwargs)), result

    def replay(recorded, obj, *args, **kwargs):
        if many and len(args) > 1:
            list(args[1])
        result, sql = recorded
        check_statement(qualname, sql, statement(args, kwargs))
        return result

    return _engine.BoundaryMethod(qualname, record, replay=replay, split=True, receiver=True)


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
