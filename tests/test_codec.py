"""Tests of the trace value encoding (csrc/codec.c, docs/trace-format-values.md)."""
import collections
import copy
import datetime as dt
import decimal
import enum
import gc
import json
import math
import os
import pickle
import pwd
import random
import struct
import subprocess
import sys
import time
import uuid
import weakref
import zoneinfo

import pytest

from retrace import _engine
from retrace.errors import TraceCorrupt

MAX_DEPTH = 200


def rt(v):
    return _engine.decode(_engine.encode(v))


def tag(v):
    return _engine.encode(v)[:1]


def same(a, b):
    """Equal, with the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


# Hand-built encodings, following docs/trace-format-values.md.
def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def str_value(s):
    raw = s.encode("utf-8", "surrogatepass")
    return b"s" + varint(len(raw)) + raw


# ---- scalars --------------------------------------------------------------


@pytest.mark.parametrize("v", [None, True, False])
def test_singletons(v):
    assert rt(v) is v


INT64 = [0, 1, -1, 63, -64, 64, 2**31, -(2**31), 2**63 - 1, -(2**63)]
BIG = [2**63, -(2**63) - 1, 2**64, -(2**64), 2**200, -(2**200), 3**9000, -(3**9000) + 7]


@pytest.mark.parametrize("v", INT64)
def test_small_ints(v):
    assert tag(v) == b"i"
    assert same(rt(v), v)


@pytest.mark.parametrize("v", BIG, ids=lambda v: "%d bits" % v.bit_length())
def test_big_ints(v):
    assert tag(v) == b"I"
    assert same(rt(v), v)


def test_int_encoding_is_compact():
    assert len(_engine.encode(-1)) == 2
    assert len(_engine.encode(2**70)) < 12


FLOAT_BITS = [
    0x0000000000000000,  # 0.0
    0x8000000000000000,  # -0.0
    0x7FF0000000000000,  # inf
    0xFFF0000000000000,  # -inf
    0x7FF8000000000000,  # nan
    0xFFF8000000000000,  # -nan
    0x7FF8DEADBEEF0001,  # nan with a payload
    0x0000000000000001,  # smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # max
    0x3FF8000000000000,  # 1.5
]


@pytest.mark.parametrize("bits", FLOAT_BITS)
def test_floats_bit_exact(bits):
    v = struct.unpack("<Q", struct.pack("<Q", bits))[0]
    f = struct.unpack("<d", struct.pack("<Q", v))[0]
    assert tag(f) == b"f"
    back = rt(f)
    assert type(back) is float
    assert struct.pack("<d", back) == struct.pack("<d", f)


@pytest.mark.parametrize(
    "s", ["", "abc", "h\xe9llo", "\u20ac\U0001f600", "\x00nul", "\ud800", "a\udfffb", "\udc80" * 3]
)
def test_str(s):
    assert tag(s) == b"s"
    assert same(rt(s), s)


def test_bytes_and_bytearray():
    for v in [b"", b"\x00\xff" * 100, bytearray(), bytearray(b"abc")]:
        assert same(rt(v), v)
    assert tag(b"x") == b"b"
    assert tag(bytearray(b"x")) == b"a"


def test_memoryview_stays_a_memoryview_of_its_bytes():
    # psycopg2 returns bytea as a memoryview: replay must give the same type
    for view, content in [(memoryview(b"hello"), b"hello"),
                          (memoryview(b"abcdef")[::2], b"ace"),       # not contiguous
                          (memoryview(bytearray(b"rw")), b"rw")]:
        back = rt(view)
        assert tag(view) == b"m" and type(back) is memoryview and back.tobytes() == content
        assert back.readonly
    m = memoryview(b"gone")
    m.release()
    assert isinstance(rt(m), _engine.Opaque)


# ---- containers -------------------------------------------------------------


def test_empty_containers():
    for v in [(), [], {}, set(), frozenset()]:
        back = rt(v)
        assert type(back) is type(v) and back == v


def test_nested_containers():
    v = {"a": [1, (2, 3.5, None), {"b": {frozenset({1, 2}), (4,)}}], 7: b"x", (1, 2): [[[]]]}
    assert same(rt(v), v)
    back = rt(v)
    assert type(back["a"][2]["b"]) is set


def test_dict_order_is_kept():
    d = {}
    for k in [5, "z", 1, "a", 3.5, None, (0,)]:
        d[k] = str(k)
    del d[1]
    d[1] = "again"
    back = rt(d)
    assert list(back.items()) == list(d.items())


def test_tags_of_containers():
    assert [tag(v) for v in [(), [], set(), frozenset(), {}]] == [b"t", b"l", b"S", b"Z", b"d"]


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class Ratio(float):
    pass


class MySet(set):
    pass


class MyDecimal(decimal.Decimal):
    def __str__(self):
        return "not a number"


Point = collections.namedtuple("Point", "x y")


def test_subclasses_encode_as_their_base():
    assert same(rt(Color.RED), 1)
    assert same(rt(Name("n")), "n")
    assert same(rt(Ratio(0.5)), 0.5)
    assert same(rt(Point(1, 2)), (1, 2))
    assert same(rt(collections.defaultdict(int, a=1)), {"a": 1})
    assert same(rt(MySet({1})), {1})
    assert same(rt(MyDecimal("1.5")), decimal.Decimal("1.5"))
    od = collections.OrderedDict([("a", 1), ("b", 2), ("c", 3)])
    od.move_to_end("a")
    assert same(rt(od), {"b": 2, "c": 3, "a": 1})


def test_bool_is_not_an_int():
    assert same(rt([True, 1, False, 0]), [True, 1, False, 0])


# ---- datetime -------------------------------------------------------------------


def paris():
    try:
        return zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone data")


def check_datetime(v):
    back = rt(v)
    assert type(back) is type(v)
    assert back == v
    assert back.fold == v.fold
    assert back.tzinfo == v.tzinfo
    if v.tzinfo is not None:
        assert back.tzname() == v.tzname()
        assert back.utcoffset() == v.utcoffset()
    return back


def test_datetime_naive_and_extremes():
    for v in [dt.datetime(2024, 2, 29, 23, 59, 59, 999999), dt.datetime.min, dt.datetime.max]:
        assert tag(v) == b"D"
        check_datetime(v)


def test_datetime_utc_is_the_singleton():
    back = check_datetime(dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc))
    assert back.tzinfo is dt.timezone.utc


def test_datetime_named_timezone():
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
    back = check_datetime(dt.datetime(2024, 1, 2, 3, 4, tzinfo=ist))
    assert back.tzname() == "IST"
    minus = dt.timezone(-dt.timedelta(hours=3, seconds=1, microseconds=5))
    back = check_datetime(dt.datetime(2024, 1, 2, tzinfo=minus))
    assert repr(back.tzinfo) == repr(minus)


def test_datetime_zoneinfo_and_fold():
    tz = paris()
    # 02:30 happens twice on 2023-10-29 in Paris; fold picks the second one.
    for fold in (0, 1):
        v = dt.datetime(2023, 10, 29, 2, 30, fold=fold, tzinfo=tz)
        back = check_datetime(v)
        assert back.tzinfo.key == "Europe/Paris"
    assert rt(dt.datetime(2023, 10, 29, 2, 30, fold=1, tzinfo=tz)).utcoffset() == dt.timedelta(hours=1)


def test_date_time_timedelta():
    for v in [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29)]:
        assert tag(v) == b"e"
        assert same(rt(v), v)
    for v in [dt.time(), dt.time(23, 59, 59, 999999, fold=1),
              dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-2), "X"))]:
        assert tag(v) == b"h"
        back = rt(v)
        assert same(back, v) and back.fold == v.fold and back.tzname() == v.tzname()
    for v in [dt.timedelta(), dt.timedelta(days=-1, seconds=5, microseconds=6), -dt.timedelta(weeks=3, microseconds=1),
              dt.timedelta.min, dt.timedelta.max]:
        assert tag(v) == b"x"
        assert same(rt(v), v)


class MyDateTime(dt.datetime):
    pass


class FixedTZ(dt.tzinfo):
    def utcoffset(self, d):
        return dt.timedelta(hours=1)


def test_datetime_subclass_and_foreign_tzinfo():
    back = rt(MyDateTime(2020, 5, 6, 7))
    assert type(back) is dt.datetime and back == dt.datetime(2020, 5, 6, 7)
    v = dt.datetime(2020, 5, 6, tzinfo=FixedTZ())
    back = rt(v)
    assert isinstance(back, _engine.Opaque)
    assert back.type_name == "datetime.datetime"


# ---- Decimal, UUID ----------------------------------------------------------------


@pytest.mark.parametrize("s", ["-1.23E+5", "NaN", "-sNaN12", "-0", "Infinity", "0.000", "1E+999999", "3.14159265358979323846264338327950288"])
def test_decimal(s):
    v = decimal.Decimal(s)
    assert tag(v) == b"C"
    back = rt(v)
    assert type(back) is decimal.Decimal and str(back) == str(v)


def test_uuid():
    for v in [uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.uuid1()]:
        assert tag(v) == b"U"
        back = rt(v)
        assert type(back) is uuid.UUID and back == v


# ---- struct sequences -------------------------------------------------------------


def test_stat_result(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10)
    st = os.stat(p)
    assert tag(st) == b"q"
    back = rt(st)
    assert type(back) is os.stat_result
    assert back == st
    for name in ["st_size", "st_mtime_ns", "st_atime_ns", "st_ctime_ns", "st_ino", "st_blocks"]:
        assert getattr(back, name) == getattr(st, name)
    for name in ["st_atime", "st_mtime", "st_ctime"]:
        assert type(getattr(back, name)) is float
        assert getattr(back, name) == getattr(st, name)


def test_struct_time_keeps_zone():
    for v in [time.localtime(), time.gmtime(0), time.localtime(1_700_000_000)]:
        back = rt(v)
        assert type(back) is time.struct_time
        assert back == v
        assert back.tm_zone == v.tm_zone and back.tm_gmtoff == v.tm_gmtoff


def test_other_struct_sequences():
    for v in [os.terminal_size((80, 24)), os.uname(), os.times(), *pwd.getpwall()[:1]]:
        back = rt(v)
        assert type(back) is type(v) and back == v


def test_struct_sequence_without_findable_type_is_a_tuple():
    # sys.flags' type cannot be found by name (sys.flags is the instance).
    back = rt(sys.flags)
    assert same(back, tuple(sys.flags))


class FakeStructSeq(tuple):
    n_fields = 50
    n_sequence_fields = 1
    n_unnamed_fields = 0


def test_fake_struct_sequence_is_a_plain_tuple():
    assert same(rt(FakeStructSeq((1,))), (1,))
    bad = b"q" + str_value(__name__ + ".FakeStructSeq") + varint(1) + b"i\x02"
    with pytest.raises(TraceCorrupt, match="not a struct sequence"):
        _engine.decode(bad)


# ---- exceptions -------------------------------------------------------------------


class PgError(Exception):
    """Like a database driver's error: __init__ does not take args back."""

    inits = 0

    def __init__(self, message, code):
        type(self).inits += 1
        super().__init__(message)
        self.pgcode = code
        self.unencodable = object()


class NewCounting(ValueError):
    news = []

    def __new__(cls, *args):
        cls.news.append(args)
        return super().__new__(cls, *args)


def test_oserror():
    e = FileNotFoundError(2, "No such file", "x.txt")
    assert tag(e) == b"E"
    back = rt(e)
    assert type(back) is FileNotFoundError
    assert (back.errno, back.strerror, back.filename, back.filename2) == (2, "No such file", "x.txt", None)
    assert back.args == e.args and str(back) == str(e)
    e = PermissionError(13, "Denied", "a", None, "b")
    back = rt(e)
    assert (back.filename, back.filename2) == ("a", "b") and str(back) == str(e)
    e = OSError("plain message")
    back = rt(e)
    assert type(back) is OSError and back.errno is None and str(back) == str(e)


def test_oserror_from_a_real_call(tmp_path):
    with pytest.raises(OSError) as info:
        open(tmp_path / "missing")
    back = rt(info.value)
    assert type(back) is FileNotFoundError
    assert back.errno == info.value.errno and str(back) == str(info.value)


def test_json_decode_error():
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads('{"a": 1,,}')
    e = info.value
    back = rt(e)
    assert type(back) is json.JSONDecodeError
    assert (back.msg, back.pos, back.lineno, back.colno, back.doc) == (e.msg, e.pos, e.lineno, e.colno, e.doc)
    assert str(back) == str(e)


def test_user_exception_is_rebuilt_without_running_init():
    e = PgError("duplicate key", "23505")
    e.add_note("while inserting")
    inits = PgError.inits
    back = rt(e)
    assert PgError.inits == inits
    assert type(back) is PgError
    assert back.args == ("duplicate key",) and str(back) == "duplicate key"
    assert back.pgcode == "23505"
    assert back.__notes__ == ["while inserting"]
    assert not hasattr(back, "unencodable")   # OPAQUE attributes are dropped


def test_python_new_is_not_run():
    e = NewCounting("x")
    calls = len(NewCounting.news)
    back = rt(e)
    assert len(NewCounting.news) == calls
    assert type(back) is NewCounting and back.args == ("x",)


def test_builtin_exception_fields():
    back = rt(StopIteration(5))
    assert type(back) is StopIteration and back.value == 5
    back = rt(SystemExit(3))
    assert back.code == 3
    back = rt(KeyError("k"))
    assert type(back) is KeyError and str(back) == str(KeyError("k"))
    e = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    back = rt(e)
    assert (back.object, back.start, back.end, back.reason) == (e.object, e.start, e.end, e.reason)
    assert str(back) == str(e)


def test_exception_group():
    eg = ExceptionGroup("many", [ValueError(1), TypeError("t")])
    back = rt(eg)
    assert type(back) is ExceptionGroup and back.message == "many"
    assert [type(x) for x in back.exceptions] == [ValueError, TypeError]


def test_exception_context_is_not_kept():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as e:
        back = rt(e)
    assert back.__traceback__ is None and back.__cause__ is None and back.__context__ is None


def test_local_exception_class_becomes_nearest_findable_base():
    class LocalError(LookupError):
        pass

    back = rt(LocalError("lost"))
    assert type(back) is LookupError and back.args == ("lost",)


def test_exception_in_main(tmp_path):
    script = (
        "from retrace import _engine\n"
        "class AppError(Exception):\n"
        "    pass\n"
        "e = AppError('boom', 3)\n"
        "e.detail = {'k': [1]}\n"
        "back = _engine.decode(_engine.encode(e))\n"
        "assert type(back) is AppError, type(back)\n"
        "assert back.args == ('boom', 3) and back.detail == {'k': [1]}\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy())
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_exception_args_containing_itself():
    e = ValueError()
    e.args = ([e],)
    back = rt(e)
    assert type(back) is ValueError
    assert isinstance(back.args[0][0], _engine.Opaque)


def test_class_names_are_remembered_per_class():
    # The codec remembers the name lookup of each class; repeats must encode
    # the same, fallbacks included, also once many classes went through it.
    def local_error():
        class LocalError(LookupError):
            pass

        return LocalError("lost")

    values = [os.stat("/"), sys.flags, FileNotFoundError(2, "gone", "f"), PgError("m", "1")]
    first = [_engine.encode(v) for v in values]
    locals_ = [local_error() for _ in range(100)]
    for e in locals_:
        assert _engine.encode(e) == _engine.encode(LookupError("lost"))
    assert [_engine.encode(v) for v in values] == first
    assert first[1][:1] == b"t"
    ref = weakref.ref(type(locals_[0]))
    del locals_, e
    for _ in range(100):
        _engine.encode(local_error())
    gc.collect()
    assert ref() is None   # forgotten classes are not kept alive


# ---- OPAQUE ------------------------------------------------------------------------


class Thing:
    def __repr__(self):
        return "Thing(" + "x" * 500 + ")"


class BadRepr:
    def __repr__(self):
        raise ValueError("no repr")


class InterruptingRepr:
    def __repr__(self):
        raise KeyboardInterrupt


def test_opaque():
    o = object()
    back = rt(o)
    assert type(back) is _engine.Opaque
    assert back.type_name == "builtins.object"
    assert back.repr == repr(o)
    assert repr(back) == "<retrace: unrecorded builtins.object value %s>" % repr(o)
    with pytest.raises(AttributeError):
        back.repr = "other"


def test_opaque_repr_is_truncated_and_failures_tolerated():
    back = rt(Thing())
    assert back.type_name == __name__ + ".Thing"
    assert back.repr == repr(Thing())[:200]
    back = rt([BadRepr()])
    assert back[0].repr == "<repr failed>"
    with pytest.raises(KeyboardInterrupt):
        _engine.encode(InterruptingRepr())


def test_opaque_reencodes_and_copies():
    enc = _engine.encode(rt)   # a function
    back = _engine.decode(enc)
    assert _engine.encode(back) == enc
    for clone in [copy.deepcopy(back), pickle.loads(pickle.dumps(back))]:
        assert type(clone) is _engine.Opaque
        assert (clone.type_name, clone.repr) == (back.type_name, back.repr)


def test_self_containing_containers():
    lst = [1]
    lst.append(lst)
    back = rt(lst)
    assert back[0] == 1 and isinstance(back[1], _engine.Opaque) and back[1].type_name == "builtins.list"
    d = {"k": 1}
    d["self"] = d
    back = rt(d)
    assert back["k"] == 1 and isinstance(back["self"], _engine.Opaque)


def nest(v, levels, kind=list):
    for _ in range(levels):
        v = kind([v]) if kind is not dict else {"k": v}
    return v


def unnest(v):
    depth = 0
    while type(v) in (list, tuple, dict):
        v = v["k"] if isinstance(v, dict) else v[0]
        depth += 1
    return depth, v


def test_deep_nesting_becomes_opaque_at_the_limit():
    back = rt(nest(0, 1000))
    depth, inner = unnest(back)
    assert depth == MAX_DEPTH
    assert isinstance(inner, _engine.Opaque) and inner.type_name == "builtins.list"
    depth, inner = unnest(rt(nest(0, 100_000, dict)))
    assert depth == MAX_DEPTH and isinstance(inner, _engine.Opaque)


@pytest.mark.parametrize("kind", [list, tuple, dict])
def test_every_value_near_the_limit_decodes(kind):
    inners = [0, ValueError("e"), os.stat("/"), {2}, dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)]
    for inner in inners:
        for levels in range(MAX_DEPTH - 4, MAX_DEPTH + 2):
            depth, back = unnest(rt(nest(inner, levels, kind)))
            if isinstance(back, _engine.Opaque):
                continue
            assert depth == levels
            assert type(back) is type(inner)


class Shrinker:
    def __init__(self, victim):
        self.victim = victim

    def __repr__(self):
        self.victim.clear()
        return "Shrinker()"


def test_container_mutated_while_encoding():
    lst = [1, 2, 3]
    lst.insert(0, Shrinker(lst))
    back = rt(lst)
    assert isinstance(back, _engine.Opaque) and back.type_name == "builtins.list"
    d = {"a": 1, "b": 2}
    d["s"] = Shrinker(d)
    d["c"] = 3
    back = rt(d)
    assert isinstance(back, _engine.Opaque) and back.type_name == "builtins.dict"


# ---- hostile input -------------------------------------------------------------------


def test_corrupt_inputs():
    cases = {
        b"": "truncated",
        b"?": "unknown value tag",
        b"H\x00": "unknown external object #0",
        b"H\x07": "unknown external object #7",
        b"n\x05" + str_value("builtins.int"): "out of order",
        b"n\x01" + str_value("builtins.int"): "not a type of external objects",
        b"R\x00": "reference #0 to an object of the call out of range",
        b"m\x05ab": "ends early|truncated",
        b"l" + varint(2**62): "exceeds the remaining data",
        b"d" + varint(3) + b"NNNN": "exceeds the remaining data",
        b"s" + varint(2**40) + b"abc": "truncated",
        b"i" + b"\xff" * 10 + b"\x01": "malformed",
        b"s\x02\xc3\x28": "bad str value",
        b"I\x05\x01": "truncated",
        b"t\x01" * (MAX_DEPTH + 1) + b"N": "nested deeper",
        b"e" + varint(2 * 2024) + b"\x0d\x01": "bad date",
        b"x\x00\x00" + varint(2 * 2_000_000): "out of range",
        b"D" + varint(2 * 2024) + b"\x01\x01\x00\x00\x00\x00\x00" + b"k" + str_value("../../etc/passwd"): "time zone",
        b"C" + str_value("not a number"): "bad Decimal",
        b"S\x01l\x00": "bad set item",
        b"d\x01l\x00N": "bad dict key",
        b"E" + str_value("builtins.len") + b"t\x00d\x00": "not a class",
        b"E" + str_value("builtins.int") + b"t\x00d\x00": "not an exception class",
        b"E" + str_value("builtins.ValueError") + b"N" + b"d\x00": "args must be a tuple",
        b"E" + str_value("builtins.ValueError") + b"t\x00d\x01i\x00N": "names must be str",
        b"E" + str_value("builtins.UnicodeDecodeError") + b"t\x01i\x00d\x00": "cannot rebuild",
        b"q" + str_value("builtins.tuple") + b"\x00": "not a struct sequence",
        b"q" + str_value("os.stat_result") + b"\x01N": "bad struct sequence",
        b"O" + str_value("x") + b"i\x00": "expected a str value",
        b"NN": "trailing bytes",
    }
    for data, message in cases.items():
        with pytest.raises(TraceCorrupt, match=message):
            _engine.decode(data)


def test_exception_chain_cannot_exhaust_the_stack():
    link = b"E" + str_value("builtins.ValueError")
    with pytest.raises(TraceCorrupt, match="nested deeper"):
        _engine.decode(link * 100_000 + b"t\x00d\x00")


def test_decoding_never_imports():
    for name in ["this", "antigravity", "tkinter.ttk"]:
        assert name not in sys.modules
        with pytest.raises(TraceCorrupt, match="module not imported"):
            _engine.decode(b"E" + str_value(name + ".Anything") + b"t\x00d\x00")
        assert name not in sys.modules


def test_module_getattr_is_not_used():
    # A module's __getattr__ (PEP 562) would run code: names come from its __dict__.
    mod = type(sys)("retrace_test_lazy")
    mod.__getattr__ = lambda name: ValueError
    sys.modules[mod.__name__] = mod
    try:
        with pytest.raises(TraceCorrupt, match="unknown type"):
            _engine.decode(b"E" + str_value("retrace_test_lazy.Lazy") + b"t\x00d\x00")
    finally:
        del sys.modules[mod.__name__]


def sample_values():
    e = PgError("m", "c")
    e.add_note("n")
    samples = [
        None, True, -5, 2**100, -0.0, math.inf, "h\xe9\ud800", b"raw", bytearray(b"ba"),
        (1, [2.5, {"k": {3}}], frozenset({"f"})),
        dt.datetime(2021, 3, 4, 5, 6, 7, 8, fold=1, tzinfo=dt.timezone(dt.timedelta(hours=2), "EET")),
        dt.datetime(2021, 3, 4, tzinfo=dt.timezone.utc), dt.date(2000, 1, 1),
        dt.time(1, 2, 3, 4, tzinfo=dt.timezone.utc), dt.timedelta(-3, 4, 5),
        decimal.Decimal("-1.5E+3"), uuid.UUID(int=12345),
        os.terminal_size((1, 2)), time.gmtime(0),
        FileNotFoundError(2, "nf", "f"), e, json.JSONDecodeError("msg", "doc", 1),
        object(), nest(1, 5),
    ]
    try:
        samples.append(dt.datetime(2020, 6, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))
    except zoneinfo.ZoneInfoNotFoundError:
        pass
    return samples


def decode_or_corrupt(data):
    try:
        _engine.decode(data)
    except TraceCorrupt:
        pass


@pytest.mark.parametrize("value", sample_values(), ids=lambda v: type(v).__name__)
def test_truncations_and_bit_flips(value):
    enc = _engine.encode(value)
    for n in range(len(enc)):
        with pytest.raises(TraceCorrupt):
            _engine.decode(enc[:n])
    buf = bytearray(enc)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            decode_or_corrupt(bytes(buf))
            buf[i] ^= 1 << bit


def test_random_bytes():
    rng = random.Random(1234)
    tags = b"NTFiIfsbatlSZdDehxCUqEOHz k?"
    for _ in range(4000):
        n = rng.randrange(0, 40)
        data = bytes(rng.choice(tags) if rng.random() < 0.3 else rng.randrange(256) for _ in range(n))
        decode_or_corrupt(data)


def test_mutated_encodings():
    rng = random.Random(99)
    encodings = [_engine.encode(v) for v in sample_values()]
    for _ in range(4000):
        data = bytearray(rng.choice(encodings))
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and pos < len(data):
                data[pos] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = bytes([rng.randrange(256)])
            elif pos < len(data):
                del data[pos]
        decode_or_corrupt(bytes(data))
