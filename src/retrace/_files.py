"""Files, directories and stdin at the boundary.

open() is one boundary event.  When recording, a read-only open of a file that
belongs to the interpreter or to the program's imported code (stdlib,
site-packages, imported sources) is marked "live": it is opened for real in
both recording and replay, because it is code, not data.  Every other open
(data files, anything opened for writing, file descriptors) gets an
ExternalRaw: the raw layer under the usual buffered and text layers, whose
reads, writes and seeks are boundary events.  In replay an ExternalRaw has no
file behind it; its results come from the trace, so replay reads none of the
recorded files and writes nothing.

os.scandir() returns DirEntry stand-ins built from the recorded listing, in
recording too, so that entry.stat() and friends are recorded calls as well.

Both recording functions make the real call through _engine.world(): a bug in
their own code cuts the recording, and the program gets the real file or
directory listing (their fallbacks, see boundary.c).
"""
import io
import os
import sys
import sysconfig

from . import _engine
from .errors import FinalizerRefused

_real_open = io.open
_real_scandir = os.scandir
_real_fileio = io.FileIO

LIVE = None   # the recorded result of an open() that is read live in replay


def _internal_prefixes():
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


_INTERNAL = _internal_prefixes()
_sources = set()
_sources_seen = 0


def _is_imported_source(path):
    """Whether path is the source file of a loaded module (refreshed lazily)."""
    global _sources_seen
    if len(sys.modules) != _sources_seen:
        _sources_seen = len(sys.modules)
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if isinstance(f, str):
                _sources.add(os.path.realpath(f))
    return path in _sources


def _is_internal(file, mode):
    if not isinstance(file, (str, bytes, os.PathLike)) or set(mode) & set("wax+"):
        return False
    path = os.path.realpath(os.fsdecode(file))
    return path.startswith(_INTERNAL) or _is_imported_source(path)


class ExternalRaw(io.RawIOBase):
    """The raw file under open()'s buffering: every transfer is an event.

    `real` is the FileIO while recording and None in replay.  `info` holds what
    open() learned about the file; it is recorded with the open event.
    """

    def __init__(self, real, info, name, mode, closefd):
        super().__init__()
        self._real = real
        self._fd, self._isatty, self._seekable, self._blksize, self.encoding = info
        self.name = name
        self.mode = _fileio_mode(mode)
        self.closefd = closefd

    def readable(self):
        return "r" in self.mode or "+" in self.mode

    def writable(self):
        return bool(set(self.mode) & set("wax+"))

    def seekable(self):
        return self._seekable

    def isatty(self):
        return self._isatty

    def fileno(self):
        if self._fd is None:
            raise io.UnsupportedOperation("fileno: retrace records this stream")
        return self._fd

    def readinto(self, buffer):
        data = _read(self._real, len(buffer))
        if data is None:
            return None
        buffer[:len(data)] = data
        return len(data)

    def readall(self):
        return _readall(self._real)

    def write(self, data):
        return _write(self._real, data)

    def seek(self, pos, whence=0):
        return _seek(self._real, pos, whence)

    def tell(self):
        return _tell(self._real)

    def truncate(self, size=None):
        return _truncate(self._real, size)

    def close(self):
        # Not an event: finalizers close files at times replay cannot match.
        if self._real is not None and not self.closed:
            self._real.close()
        super().close()


_read = _engine.Boundary("io.FileIO.read", lambda raw, n: raw.read(n))
_readall = _engine.Boundary("io.FileIO.readall", lambda raw: raw.readall())
_write = _engine.Boundary("io.FileIO.write", lambda raw, data: raw.write(data))
_seek = _engine.Boundary("io.FileIO.seek", lambda raw, pos, whence: raw.seek(pos, whence))
_tell = _engine.Boundary("io.FileIO.tell", lambda raw: raw.tell())
_truncate = _engine.Boundary("io.FileIO.truncate", lambda raw, size: raw.truncate(size))


def _fileio_mode(raw_mode):
    """The mode FileIO reports for a raw mode ('r' -> 'rb', 'w+' -> 'rb+'):
    binary, which socket.sendfile() and others check for."""
    plus = "+" if "+" in raw_mode else ""
    for c in "xa":
        if c in raw_mode:
            return c + "b" + plus
    if plus or "r" in raw_mode:
        return "rb" + plus
    return "wb"


def _raw_mode(mode):
    """FileIO's mode for an open() mode, e.g. 'rt' -> 'r', 'a+b' -> 'a+'."""
    return "".join(c for c in mode if c in "rwxa+") or "r"


def _record_open(file, mode, buffering, encoding, errors, newline, closefd, fileno_hidden, name):
    """The real open, while recording: returns (what replay needs, the file)."""
    if _is_internal(file, mode):
        return LIVE, _engine.world(_real_open, file, mode, buffering, encoding, errors, newline,
                                   closefd)
    real = _engine.world(_real_fileio, file, _raw_mode(mode), closefd)
    fd = None if fileno_hidden else real.fileno()
    blksize = getattr(real, "_blksize", io.DEFAULT_BUFFER_SIZE)
    if "b" not in mode and encoding is None:
        encoding = io.TextIOWrapper(io.BytesIO()).encoding   # the locale's, as open() does
    info = (fd, real.isatty(), real.seekable(), blksize, encoding)
    return info, ExternalRaw(real, info, name, _raw_mode(mode), closefd)


def _unrecorded_open(done, file, mode, buffering, encoding, errors, newline, closefd,
                     fileno_hidden, name):
    """open() without Retrace, where _record_open failed: the file open()
    makes, or the layers open() builds over the raw file already opened."""
    if not done:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd)
    opened, = done
    if type(opened) is not _real_fileio:
        return opened
    opened.name = name
    return _layers(opened, mode, buffering, encoding, errors, newline)


def _replay_open(info, file, mode, buffering, encoding, errors, newline, closefd, fileno_hidden,
                 name):
    """What replay opens: code is read live, data comes from the trace."""
    if info is LIVE:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd)
    return ExternalRaw(None, info, name, _raw_mode(mode), closefd)


def _collector_open(file, mode, buffering, encoding, errors, newline, closefd, fileno_hidden,
                    name):
    """Replay of an open() made by a finalizer the garbage collector runs
    (_gc.py): code is read live, as in the recording (a traceback's source
    lines); a data file is not opened."""
    if _is_internal(file, mode):
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd)
    raise FinalizerRefused(f"retrace: in replay, a finalizer cannot open {name!r}")


_open_event = _engine.Boundary("io.open", _record_open, replay=_replay_open, split=True,
                               collector=_collector_open, fallback=_unrecorded_open)


def _open(file, mode, buffering, encoding, errors, newline, closefd, fileno_hidden, name):
    opened = _open_event(file, mode, buffering, encoding, errors, newline, closefd,
                         fileno_hidden, name)
    if isinstance(opened, ExternalRaw):
        # Outside the event: building the layers makes recorded calls (tell).
        return _layers(opened, mode, buffering, opened.encoding, errors, newline)
    return opened


def _open_flags(mode):
    """The os.open() flags FileIO passes to an opener for this mode."""
    flags = os.O_CLOEXEC
    if "x" in mode:
        flags |= os.O_EXCL | os.O_CREAT
    if "w" in mode:
        flags |= os.O_CREAT | os.O_TRUNC
    if "a" in mode:
        flags |= os.O_APPEND | os.O_CREAT
    if "+" in mode:
        return flags | os.O_RDWR
    return flags | (os.O_RDONLY if "r" in mode else os.O_WRONLY)


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True,
         opener=None):
    if not _engine.active():
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if opener is not None:
        # The opener is the program's code: run it here, as internal code, so
        # that what it does is recorded and replayed (tempfile names its files
        # in one), then open the descriptor it returns.
        fd = opener(file, _open_flags(mode))
        if not isinstance(fd, int) or fd < 0:
            raise ValueError(f"opener returned {fd}")
        return _open(fd, mode, buffering, encoding, errors, newline, True, False, file)
    return _open(file, mode, buffering, encoding, errors, newline, closefd, False, file)


def _layers(raw, mode, buffering, encoding, errors, newline):
    """Build the buffered and text layers over raw the way open() does."""
    line_buffering = buffering == 1 or (buffering < 0 and raw.isatty())
    if buffering == 1 or buffering < 0:
        buffering = raw._blksize if raw._blksize > 1 else io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        if "b" in mode:
            return raw
        raise ValueError("can't have unbuffered text I/O")
    if "+" in mode:
        buffer = io.BufferedRandom(raw, buffering)
    elif set(mode) & set("wxa"):
        buffer = io.BufferedWriter(raw, buffering)
    else:
        buffer = io.BufferedReader(raw, buffering)
    if "b" in mode:
        return buffer
    text = io.TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
    text.mode = mode
    return text


def _stdin_info():
    stdin = sys.stdin
    if stdin is None:
        return None
    return os.isatty(0), stdin.encoding, stdin.errors, stdin.name


_stdin_event = _engine.Boundary("sys.stdin", _stdin_info)


def recorded_stdin():
    """sys.stdin replaced by a recorded stream over fd 0 (same encoding).

    Replay builds it from the recording even when the replay has no stdin.
    When stdin is a terminal its fileno is hidden, so input() reads through
    sys.stdin (and is recorded) instead of reading the terminal directly.
    """
    info = _stdin_event()
    if info is None:
        return None
    isatty, encoding, errors, name = info
    return _open(0, "r", -1, encoding, errors, None, False, isatty, name)


class CheckedOutput(io.RawIOBase):
    """The raw layer of sys.stdout and sys.stderr. Output is not data the
    program reads, so its bytes are not stored; but each write is an event
    carrying their CRC-32. Replay really writes (the user sees the output) and
    stops with a divergence where the program writes something else: output
    never differs silently, and the threads' writes keep the recorded order."""

    def __init__(self, fd, isatty, name):
        super().__init__()
        self._fd, self._isatty, self.name = fd, isatty, name

    def writable(self):
        return True

    def isatty(self):
        return self._isatty

    def fileno(self):
        return self._fd

    def write(self, data):
        return _output_event(self._fd, bytes(data))


# Records the CRC-32 of what is written, and checks it in replay (boundary.c)
_output_event = _engine.Boundary("sys.stdout.write", _engine.write_all, output=True)


def _stdio_info(stream):
    """How sys.stdout or sys.stderr is set up. Replay copies it, so that its
    writes are cut in the same places (a terminal's line buffering would
    differ from a pipe's blocks)."""
    if not hasattr(stream, "buffer"):
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    buffer = stream.buffer
    size = buffer.raw._blksize if isinstance(buffer, io.BufferedWriter) else 0
    return (fd, os.isatty(fd), stream.name, stream.encoding, stream.errors,
            stream.line_buffering, stream.write_through, size)


_stdio_event = _engine.Boundary("sys.stdio", lambda: (_stdio_info(sys.stdout),
                                                      _stdio_info(sys.stderr)))


def checked_stdio():
    """(sys.stdout, sys.stderr) over CheckedOutput, set up as recorded; a
    stream that was not a file when recording stays as it is."""
    streams = []
    for info, current in zip(_stdio_event(), (sys.stdout, sys.stderr)):
        if info is None:
            streams.append(current)
            continue
        fd, isatty, name, encoding, errors, line_buffering, write_through, size = info
        raw = CheckedOutput(fd, isatty, name)
        buffer = io.BufferedWriter(raw, size) if size else raw
        streams.append(io.TextIOWrapper(buffer, encoding, errors, "\n", line_buffering,
                                        write_through))
    return streams


class DirEntry:
    """os.DirEntry built from a recorded directory listing."""

    __slots__ = ("name", "path", "_inode", "_is_dir", "_is_file", "_is_symlink", "_stat",
                 "_lstat")

    def __init__(self, name, path, inode, is_dir, is_file, is_symlink):
        self.name = name
        self.path = path
        self._inode = inode
        self._is_dir = is_dir
        self._is_file = is_file
        self._is_symlink = is_symlink
        self._stat = self._lstat = None

    def inode(self):
        return self._inode

    def is_dir(self, *, follow_symlinks=True):
        return self._is_dir[0 if follow_symlinks else 1]

    def is_file(self, *, follow_symlinks=True):
        return self._is_file[0 if follow_symlinks else 1]

    def is_symlink(self):
        return self._is_symlink

    def is_junction(self):
        return False

    def stat(self, *, follow_symlinks=True):
        if follow_symlinks:
            if self._stat is None:
                self._stat = os.stat(self.path)
            return self._stat
        if self._lstat is None:
            self._lstat = os.stat(self.path, follow_symlinks=False)
        return self._lstat

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"<DirEntry {self.name!r}>"


class ScandirIterator:
    """What os.scandir() returns: over DirEntry stand-ins of a recorded
    listing, or over real entries when the recording function failed."""

    def __init__(self, entries):
        self._entries = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._entries)

    def close(self):
        self._entries = iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _real_listing(path):
    with _real_scandir(path) as it:
        return list(it)


def _record_scandir(path="."):
    """(the listing, the iterator over its stand-ins)"""
    listing = [(e.name, e.path, e.inode(), (e.is_dir(), e.is_dir(follow_symlinks=False)),
                (e.is_file(), e.is_file(follow_symlinks=False)), e.is_symlink())
               for e in _engine.world(_real_listing, path)]
    return listing, _replay_scandir(listing, path)


def _replay_scandir(listing, path="."):
    return ScandirIterator(DirEntry(*entry) for entry in listing)


def _unrecorded_scandir(done, path="."):
    """os.scandir() without Retrace, where _record_scandir failed: over the
    real entries if it read them."""
    return ScandirIterator(done[0]) if done else _real_scandir(path)


_scandir_event = _engine.Boundary("posix.scandir", _record_scandir, replay=_replay_scandir,
                                  split=True, fallback=_unrecorded_scandir)


def scandir(path="."):
    if not _engine.active():
        return _real_scandir(path)
    return _scandir_event(path)
