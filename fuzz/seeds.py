"""Seed inputs for fuzz_reader: encoded values of every kind the codec has,
record payloads as the reader sees them, and a small real recording.

    python fuzz/seeds.py DIR
"""
import datetime
import decimal
import os
import subprocess
import sys
import tempfile
import uuid

from retrace import _engine

VALUES = [
    None, True, False, 0, -1, 2**64 + 7, -(2**200), 1.5, float("nan"), "", "text", "é☃",
    b"", b"\x00\xff" * 8, bytearray(b"ba"), (1, "a"), [1, [2, [3]]], {"k": (1, 2)},
    {1, 2}, frozenset({"x"}), datetime.datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=3))),
    datetime.date(2026, 1, 2), datetime.time(1, 2, 3), datetime.timedelta(days=-1, seconds=5),
    decimal.Decimal("-1.25E+7"), uuid.UUID(int=12345), os.stat("."), os.times(),
    OSError(2, "No such file", "x"), ValueError("bad", 3), KeyError("k"), object(),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    for i, value in enumerate(VALUES):
        with open(os.path.join(out, f"value-{i:02d}"), "wb") as f:
            f.write(_engine.encode(value))
    # Record payloads, framed the way a chunk holds them (varint length + record).
    records = [b"D\x01\x0atime.time", b"C\x00\x01\x00" + _engine.encode(1.5),
               b"C\x00\x01\x01" + _engine.encode(OSError(2, "x")),
               b"X\x01\x80\x08", b"E" + _engine.encode({"exit_code": 0, "exception": None})]
    with open(os.path.join(out, "chunk-payload"), "wb") as f:
        f.write(b"".join(bytes([len(r)]) + r for r in records))
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "t.retrace")
        _engine._write_records(trace, _engine.encode({"target": {}}), records)
        with open(trace, "rb") as f, open(os.path.join(out, "written"), "wb") as g:
            g.write(f.read())
        program = os.path.join(tmp, "p.py")
        with open(program, "w") as f:
            f.write("import os, time, random\nprint(time.time(), os.urandom(4), random.random())\n"
                    "open(__file__).read()\n")
        subprocess.run([sys.executable, "-m", "retrace", "record", "-o", trace, program],
                       check=True, stdout=subprocess.DEVNULL)
        with open(trace, "rb") as f, open(os.path.join(out, "recorded"), "wb") as g:
            g.write(f.read())


if __name__ == "__main__":
    main(sys.argv[1])
