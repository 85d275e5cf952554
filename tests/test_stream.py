"""Tests of the trace stream (csrc/stream.c): the file layout of
docs/trace-format-stream.md, the background writer, and how the reader tells
a recording cut short from a damaged file.

The engine only exports whole-trace helpers (_write_records, _read_records),
so tests that need to append over time drive the C writer through ctypes.
"""
import ctypes
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib
from collections import namedtuple

import pytest

import retrace
from retrace import _engine
from retrace.errors import TraceCorrupt

FILE_MAGIC = b"RETRACE\x01"
CHUNK_MAGIC = 0x4B435452
CHUNK_ZLIB = 1
CHUNK_HEADER = struct.Struct("<IIIIIQII")  # 36 bytes
FLUSH_INTERVAL = 0.1



class Limits(ctypes.Structure):
    _fields_ = [("max_size", ctypes.c_uint64), ("max_memory", ctypes.c_uint64),
                ("flight", ctypes.c_int)]


_lib = ctypes.CDLL(_engine.__file__)
_lib.rt_writer_open.restype = ctypes.c_void_p
_lib.rt_writer_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                ctypes.POINTER(Limits), ctypes.c_char_p, ctypes.c_size_t]
_lib.rt_writer_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
_lib.rt_writer_flush.argtypes = [ctypes.c_void_p]
_lib.rt_writer_close.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
_lib.rt_writer_error.restype = ctypes.c_char_p
_lib.rt_writer_error.argtypes = [ctypes.c_void_p]
_lib.rt_reader_open.restype = ctypes.c_void_p
_lib.rt_reader_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
_lib.rt_reader_next.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                ctypes.POINTER(ctypes.c_size_t)]
_lib.rt_reader_chunk_count.restype = ctypes.c_uint64
_lib.rt_reader_chunk_count.argtypes = [ctypes.c_void_p]
_lib.rt_reader_file_size.restype = ctypes.c_uint64
_lib.rt_reader_file_size.argtypes = [ctypes.c_void_p]
_lib.rt_reader_close.argtypes = [ctypes.c_void_p]


class Writer:
    """The C trace writer, one record at a time."""

    def __init__(self, path, header=b"HDR", limits=None):
        err = ctypes.create_string_buffer(512)
        self.w = _lib.rt_writer_open(os.fsencode(path), header, len(header), limits, err,
                                     len(err))
        if not self.w:
            raise OSError(err.value.decode())

    def append(self, rec):
        return _lib.rt_writer_append(self.w, rec, len(rec))

    def flush(self):
        return _lib.rt_writer_flush(self.w)

    def error(self):
        e = _lib.rt_writer_error(self.w)
        return e.decode() if e is not None else None

    def close(self):
        err = ctypes.create_string_buffer(512)
        rc = _lib.rt_writer_close(self.w, err, len(err))
        self.w = None
        return rc, err.value.decode()


def read(path):
    return _engine._read_records(os.fspath(path))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


Chunk = namedtuple("Chunk", "offset end flags stored_len raw_len first records")


def parse(data):
    """Split a trace by the documented layout, independently of the C reader.
    Returns (header, offset of the first chunk, [Chunk])."""
    assert data[:8] == FILE_MAGIC
    version, hlen = struct.unpack_from("<II", data, 8)
    assert version == 2
    header = data[16:16 + hlen]
    assert struct.unpack_from("<I", data, 16 + hlen)[0] == zlib.crc32(header)
    start = off = 16 + hlen + 4
    chunks = []
    total = 0
    while off < len(data):
        magic, flags, stored, raw_len, count, first, pcrc, hcrc = CHUNK_HEADER.unpack_from(data, off)
        assert magic == CHUNK_MAGIC
        assert hcrc == zlib.crc32(data[off:off + 32])
        payload = data[off + 36:off + 36 + stored]
        assert len(payload) == stored and zlib.crc32(payload) == pcrc
        raw = zlib.decompress(payload) if flags & CHUNK_ZLIB else payload
        assert len(raw) == raw_len and first == total
        records, p = [], 0
        while p < len(raw):
            n, shift = 0, 0
            while True:
                b = raw[p]
                p += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            records.append(raw[p:p + n])
            p += n
        assert p == len(raw) and len(records) == count
        total += count
        chunks.append(Chunk(off, off + 36 + stored, flags, stored, raw_len, first, records))
        off += 36 + stored
    return header, start, chunks


def file_header(header=b"HDR", version=2, magic=FILE_MAGIC):
    return magic + struct.pack("<II", version, len(header)) + header + struct.pack("<I", zlib.crc32(header))


def chunk(records, first, *, compress=False, flags=None, count=None, raw_len=None):
    """A chunk built by hand; the keyword arguments lie in its header."""
    raw = b"".join(varint(len(r)) + r for r in records)
    payload = zlib.compress(raw) if compress else raw
    fields = struct.pack(
        "<IIIIIQI", CHUNK_MAGIC,
        (CHUNK_ZLIB if compress else 0) if flags is None else flags,
        len(payload), len(raw) if raw_len is None else raw_len,
        len(records) if count is None else count, first, zlib.crc32(payload))
    return fields + struct.pack("<I", zlib.crc32(fields)) + payload


def incompressible(i, n=1500):
    return b"%08d" % i + random.Random(i).randbytes(n)


@pytest.fixture
def multi_chunk_trace(tmp_path):
    """A small trace of four chunks (raw and compressed) and its records."""
    path = tmp_path / "small.rt"
    groups = [
        [b"", b"a", b"bb"],
        [b"xyz" * 40, b"q"],                 # compresses
        [incompressible(7, 40)],
        [b"last", b"", b"x" * 130],          # compresses; length needs a 2-byte varint
    ]
    w = Writer(path, b"hdr")
    for g in groups:
        for rec in g:
            assert w.append(rec) == 0
        assert w.flush() == 0
    assert w.close() == (0, "")
    data = path.read_bytes()
    _, start, chunks = parse(data)
    assert [c.records for c in chunks] == groups
    assert {c.flags for c in chunks} == {0, CHUNK_ZLIB}
    return data, start, chunks, [r for g in groups for r in g]


# ---- round trips ------------------------------------------------------------

def test_round_trip_varied_sizes_in_order(tmp_path):
    path = tmp_path / "t.rt"
    records = [b"", b"\x00", os.urandom(100_000), os.urandom(1_500_000), b"z" * 3_000_000]
    records += [b"rec %d " % i * (i % 50) for i in range(5000)]
    random.Random(1).shuffle(records)
    header = bytes(range(256)) * 3
    _engine._write_records(str(path), header, records)
    assert read(path) == (header, records, -1)
    got_header, _, chunks = parse(path.read_bytes())
    assert got_header == header
    assert [r for c in chunks for r in c.records] == records


def test_empty_trace_has_header_only(tmp_path):
    path = tmp_path / "t.rt"
    _engine._write_records(str(path), b"", [])
    assert path.read_bytes() == file_header(b"")
    assert read(path) == (b"", [], -1)


def test_compressible_and_incompressible_chunks(tmp_path):
    text, noise = tmp_path / "text.rt", tmp_path / "noise.rt"
    text_records = [b"the same words again and again %d" % (i % 10) for i in range(2000)]
    noise_records = [os.urandom(1000) for _ in range(200)]
    _engine._write_records(str(text), b"H", text_records)
    _engine._write_records(str(noise), b"H", noise_records)
    assert read(text)[1] == text_records
    assert read(noise)[1] == noise_records
    (c,) = parse(text.read_bytes())[2]
    assert c.flags == CHUNK_ZLIB and c.stored_len < c.raw_len // 5
    (c,) = parse(noise.read_bytes())[2]
    assert c.flags == 0 and c.stored_len == c.raw_len


def test_hand_built_trace_is_read(tmp_path):
    """The reader agrees with the documented layout, not only with the writer."""
    path = tmp_path / "t.rt"
    path.write_bytes(file_header(b"hh") + chunk([b"a", b""], 0)
                     + chunk([b"b" * 300], 2, compress=True) + chunk([b"c"], 3))
    assert read(path) == (b"hh", [b"a", b"", b"b" * 300, b"c"], -1)


def test_file_mode_is_0600_even_if_it_existed(tmp_path):
    path = tmp_path / "t.rt"
    path.write_bytes(b"old contents that must go away" * 100)
    os.chmod(path, 0o644)
    _engine._write_records(str(path), b"H", [b"new"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read(path) == (b"H", [b"new"], -1)


def test_reader_counts_chunks_and_size(multi_chunk_trace, tmp_path):
    data, _, chunks, records = multi_chunk_trace
    path = tmp_path / "small.rt"
    err = ctypes.create_string_buffer(256)
    r = _lib.rt_reader_open(os.fsencode(path), err, len(err))
    assert r, err.value
    rec, n = ctypes.c_void_p(), ctypes.c_size_t()
    got = []
    while _lib.rt_reader_next(r, ctypes.byref(rec), ctypes.byref(n)) == 1:
        got.append(ctypes.string_at(rec, n.value) if n.value else b"")
    assert got == records
    assert _lib.rt_reader_chunk_count(r) == len(chunks)
    assert _lib.rt_reader_file_size(r) == len(data)
    _lib.rt_reader_close(r)


# ---- the background writer --------------------------------------------------

def test_slow_appends_reach_the_file_without_a_flush(tmp_path):
    path = tmp_path / "t.rt"
    w = Writer(path)
    records = [b"slow %d" % i for i in range(4)]
    for i, rec in enumerate(records):
        assert w.append(rec) == 0
        time.sleep(3 * FLUSH_INTERVAL)
        # The writer thread wrote it on its own, while the writer is open.
        assert read(path)[1] == records[:i + 1]
    assert w.close() == (0, "")
    chunks = parse(path.read_bytes())[2]
    assert [c.records for c in chunks] == [[r] for r in records]


def test_flush_writes_everything_appended(tmp_path):
    path = tmp_path / "t.rt"
    w = Writer(path)
    records = [b"%d" % i * 20 for i in range(3000)]
    for rec in records[:1000]:
        w.append(rec)
    assert w.flush() == 0
    assert read(path)[1] == records[:1000]
    for rec in records[1000:]:
        w.append(rec)
    assert w.flush() == 0
    assert read(path)[1] == records
    assert w.flush() == 0          # nothing pending: still returns
    assert w.close() == (0, "")


def test_concurrent_appends_keep_each_threads_order(tmp_path):
    path = tmp_path / "t.rt"
    w = Writer(path)
    per_thread = 3000

    def work(t):
        for i in range(per_thread):
            assert w.append(b"%d:%d:" % (t, i) + b"x" * (i % 300)) == 0
            if i % 1000 == 0:
                assert w.flush() == 0

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert w.close() == (0, "")
    _, records, truncated = read(path)
    assert truncated == -1 and len(records) == 6 * per_thread
    seen = {t: [] for t in range(6)}
    for rec in records:
        t, i, _ = rec.split(b":", 2)
        seen[int(t)].append(int(i))
    assert all(seen[t] == list(range(per_thread)) for t in seen)


def test_record_over_the_memory_cap_cuts_the_recording(tmp_path, capfd):
    path = tmp_path / "t.rt"
    w = Writer(path)
    assert w.append(b"before") == 0
    assert w.append(bytes(64 * 1024 * 1024 + 1)) == -1
    assert w.append(b"after") == -1      # no gap: nothing goes in after the cut ...
    assert w.append(b"E-end") == 0       # ... but the end of the run
    assert w.error() is None             # not an I/O error
    assert w.close() == (0, "")
    # The cut record: 'X', reason 2 (memory), the limit (64 MiB) as a varint.
    assert read(path)[1] == [b"before", b"X\x02\x80\x80\x80\x20", b"E-end"]
    err = capfd.readouterr().err
    assert err == ("retrace: recording stopped: the trace writer fell behind: more than "
                   "67108864 bytes were waiting to be written (RETRACE_MAX_MEMORY); the trace "
                   "keeps everything before this point and the program goes on unrecorded\n")


def test_forked_child_does_not_hang_on_the_missing_thread(tmp_path):
    path = tmp_path / "t.rt"
    w = Writer(path)
    assert w.append(b"parent") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads
        pid = os.fork()
    if pid == 0:
        ok = w.flush() == -1 and w.close()[0] == 0
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 10
    while (res := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if res == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert res[0] == pid and os.waitstatus_to_exitcode(res[1]) == 0
    assert w.close() == (0, "")
    assert read(path)[1] == [b"parent"]


HELPER = textwrap.dedent("""
    import ctypes, random, sys, time
    from retrace import _engine
    lib = ctypes.CDLL(_engine.__file__)
    lib.rt_writer_open.restype = ctypes.c_void_p
    lib.rt_writer_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                   ctypes.c_char_p, ctypes.c_size_t]
    lib.rt_writer_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    err = ctypes.create_string_buffer(256)
    w = lib.rt_writer_open(sys.argv[1].encode(), b"H", 1, err, 256)
    assert w, err.value
    i = 0
    while True:
        rec = b"%08d" % i + random.Random(i).randbytes(i % 3000)
        assert lib.rt_writer_append(w, rec, len(rec)) == 0
        print(i, flush=True)
        i += 1
        time.sleep(0.002)
""")


def test_sigkill_leaves_a_readable_prefix(tmp_path):
    path = tmp_path / "killed.rt"
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)
    env = dict(os.environ)
    lib_dir = os.path.dirname(os.path.dirname(retrace.__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [lib_dir, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, str(helper), str(path)],
                            stdout=subprocess.PIPE, env=env)
    arrivals = []
    try:
        stop_at = time.monotonic() + 1.5
        while time.monotonic() < stop_at:
            line = proc.stdout.readline()
            assert line, "the helper died"
            arrivals.append((int(line), time.monotonic()))
    finally:
        kill_time = time.monotonic()
        proc.kill()
        proc.wait()
        proc.stdout.close()
    _, records, truncated = read(path)
    assert records == [b"%08d" % i + random.Random(i).randbytes(i % 3000)
                       for i in range(len(records))]
    durable = [i for i, t in arrivals if t < kill_time - 0.2]
    assert durable and len(records) > max(durable)
    # A cut-off chunk can only be the last thing in the file.
    assert truncated == -1 or truncated < path.stat().st_size


# ---- truncation and corruption ---------------------------------------------

def test_truncation_at_every_offset(multi_chunk_trace, tmp_path):
    data, start, chunks, _ = multi_chunk_trace
    path = tmp_path / "cut.rt"
    for size in range(len(data)):
        path.write_bytes(data[:size])
        if size < start:
            with pytest.raises(TraceCorrupt):
                read(path)
            continue
        whole = [c for c in chunks if c.end <= size]
        cut = [c for c in chunks if c.offset < size < c.end]
        header, records, truncated = read(path)
        assert header == b"hdr"
        assert records == [r for c in whole for r in c.records]
        assert truncated == (cut[0].offset if cut else -1)


def test_every_single_bit_flip_is_detected(multi_chunk_trace, tmp_path):
    data, _, _, records = multi_chunk_trace
    path = tmp_path / "flip.rt"
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(damaged)
        try:
            result = read(path)
        except TraceCorrupt:
            continue
        # Checksums cover every byte, so this is a failure in any case; it
        # would at least have to be the original data.
        assert result == (b"hdr", records, -1)
        pytest.fail(f"flipping bit {bit} went unnoticed")


def test_chunk_corruption_names_the_offset(multi_chunk_trace, tmp_path):
    data, _, chunks, _ = multi_chunk_trace
    path = tmp_path / "bad.rt"
    c = chunks[2]
    damaged = bytearray(data)
    damaged[c.offset + 40] ^= 0xFF
    path.write_bytes(damaged)
    with pytest.raises(TraceCorrupt, match=f"^chunk at offset {c.offset} is corrupt: "
                                           "payload checksum mismatch$"):
        read(path)
    damaged = bytearray(data)
    damaged[c.offset + 9] ^= 0x01   # stored length
    path.write_bytes(damaged)
    with pytest.raises(TraceCorrupt, match=f"chunk at offset {c.offset} is corrupt: "
                                           "header checksum mismatch"):
        read(path)


@pytest.mark.parametrize("content, message", [
    (b"", "file is empty"),
    (b"\x7fELF" + bytes(100), r"not a Retrace trace \(bad magic\)"),
    (b"RETRACE", r"bad magic"),
    (file_header(magic=b"RETRACE\x02"), r"bad magic"),
    (FILE_MAGIC + b"\x01\x00", "file ends inside the file header"),
    (file_header(version=3), r"trace format version 3 is not supported by this Retrace \(supports 2\)"),
    (file_header(version=1), r"trace format version 1 is not supported by this Retrace \(supports 2\)"),
    (file_header(version=0), r"trace format version 0 is not supported"),
    (file_header(b"header")[:-3], "file ends inside the file header: the length at offset 12 says 6 bytes"),
    (file_header(b"header")[:-1] + b"\x00", "header checksum mismatch at offset 16"),
])
def test_bad_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.rt"
    path.write_bytes(content)
    with pytest.raises(TraceCorrupt, match=message):
        read(path)


def test_random_junk_is_rejected(tmp_path):
    path = tmp_path / "junk.rt"
    rng = random.Random(5)
    for size in (1, 7, 8, 40, 4096):
        path.write_bytes(rng.randbytes(size))
        with pytest.raises(TraceCorrupt, match="bad magic"):
            read(path)
    # Junk after a valid header is not mistaken for a cut-off recording.
    start = len(file_header())
    for size in (4, 36, 4096):
        path.write_bytes(file_header() + b"JUNK" + rng.randbytes(size))
        with pytest.raises(TraceCorrupt, match=f"chunk at offset {start} is corrupt: bad magic"):
            read(path)


def test_directory_fifo_and_missing_file(tmp_path):
    with pytest.raises(TraceCorrupt, match="not a regular file"):
        read(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(TraceCorrupt, match="not a regular file"):
        read(tmp_path / "fifo")
    with pytest.raises(TraceCorrupt, match="cannot open .*No such file"):
        read(tmp_path / "missing.rt")


@pytest.mark.parametrize("chunks, message", [
    # Each case has valid checksums: the inconsistency itself must be caught.
    ([chunk([b"a"], 0), chunk([b"b"], 5)], "first record index is 5, expected 1"),
    ([chunk([b"a"], 1)], "first record index is 1, expected 0"),
    ([chunk([b"a", b"b"], 0, count=3)], "holds 2 records but its header says 3"),
    ([chunk([b"a" * 500], 0, compress=True, raw_len=503)], "payload does not decompress to 503 bytes"),
    ([chunk([b"a" * 500], 0, compress=True, raw_len=400)], "payload does not decompress to 400 bytes"),
    ([chunk([b"a" * 500], 0, compress=True, raw_len=(1 << 30) + 1)], "raw length 1073741825 exceeds"),
    ([chunk([b"a"], 0, raw_len=9)], "stored length 2 differs from raw length 9"),
    ([chunk([b"a"], 0, flags=4)], "unknown flags 0x4"),
    ([chunk([b"abc"], 0, compress=True, flags=0, raw_len=0)], "stored length"),
])
def test_inconsistent_chunks_are_corrupt(tmp_path, chunks, message):
    path = tmp_path / "bad.rt"
    path.write_bytes(file_header() + b"".join(chunks))
    last = len(file_header()) + sum(len(c) for c in chunks[:-1])
    with pytest.raises(TraceCorrupt, match=f"chunk at offset {last} is corrupt: {message}"):
        read(path)


def test_record_overrunning_the_payload_is_corrupt(tmp_path):
    path = tmp_path / "bad.rt"
    raw = varint(1) + b"a" + varint(10) + b"abc"
    fields = struct.pack("<IIIIIQI", CHUNK_MAGIC, 0, len(raw), len(raw), 2, 0, zlib.crc32(raw))
    path.write_bytes(file_header() + fields + struct.pack("<I", zlib.crc32(fields)) + raw)
    with pytest.raises(TraceCorrupt, match="record 1 overruns the chunk payload"):
        read(path)


# ---- I/O errors ---------------------------------------------------------------

def test_unwritable_paths_fail_at_open(tmp_path):
    mode = os.stat("/dev/full").st_mode
    with pytest.raises(OSError, match="writing /dev/full failed: No space left on device"):
        _engine._write_records("/dev/full", b"H", [b"x"])
    assert os.stat("/dev/full").st_mode == mode      # a device is never chmod-ed
    with pytest.raises(OSError, match="cannot create .*No such file or directory"):
        _engine._write_records(str(tmp_path / "no" / "such" / "dir.rt"), b"H", [])


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_stops_recording_but_not_the_app(small_fs, capfd):
    path = small_fs / "t.rt"
    w = Writer(path)
    appended = []
    for i in range(1000):
        rec = os.urandom(1500)
        if w.append(rec) < 0:
            break
        appended.append(rec)
        if i % 5 == 4:
            w.flush()
    else:
        pytest.fail("a 64 KiB file system never filled up")
    assert w.flush() == -1
    assert w.append(b"more") == -1
    assert "No space left on device" in w.error()
    rc, message = w.close()
    assert rc == -1
    assert message == f"writing {path} failed: No space left on device"
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("retrace:")]
    assert lines == [f"retrace: recording stopped: writing {path} failed: No space left on "
                     "device; the trace keeps everything before this point"]
    _, records, _ = read(path)
    assert records and records == appended[:len(records)]
