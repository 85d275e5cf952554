"""What a recording may cost and what it keeps, set in the environment
(docs/security.md):

    RETRACE_MAX_SIZE=SIZE        the trace stops growing at SIZE: a cut record ends it
    RETRACE_MAX_MEMORY=SIZE      records waiting for the writer thread (default 64M)
    RETRACE_FLIGHT=SIZE          flight recorder: keep up to SIZE in memory, write the
                                 file only for a crash (retrace.flight)
    RETRACE_REDACT=REGEX         mask what matches in recorded str and bytes payloads
    RETRACE_REDACT_FILE=PATH     one REGEX per line (# starts a comment)
    RETRACE_TEST_FAULT=WHERE[:N] tests only: Retrace's own hook WHERE fails at its Nth call;
                                 WHERE NAME@before or NAME@after: the recording function of
                                 boundary NAME fails right before or after its Nth real call

SIZE is a number of bytes with an optional k, M or G suffix (powers of 1024).
A trace path may hold {pid} and {time} (UTC, 20260102T030405Z), for many
processes recording at once.

A bug in Retrace's own Python code during recording must not change what
the program does: internal_error() stops the recording at that point and
reports it once; the program goes on unrecorded. Recording functions that
make the real call through _engine.world() are guarded by the engine, which
then gives the program their fallback's result (fallback_to).
"""
import os
import re
import time

from . import _engine

SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MASK = "*"


class SettingError(ValueError):
    """A RETRACE_* setting that cannot be used."""


def parse_size(name):
    text = os.environ.get(name)
    if not text:
        return 0
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match or int(match.group(1)) == 0:
        raise SettingError(f"{name}={text!r} is not a size (a number of bytes, "
                           f"optionally with k, M or G)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]


def limits():
    """The writer's limits: {'max_size', 'max_memory', 'flight'}."""
    flight = parse_size("RETRACE_FLIGHT")
    max_size = parse_size("RETRACE_MAX_SIZE")
    if flight and max_size:
        raise SettingError("RETRACE_FLIGHT and RETRACE_MAX_SIZE cannot be used together: "
                           "the flight recorder's size is its limit")
    return {"max_size": flight or max_size, "max_memory": parse_size("RETRACE_MAX_MEMORY"),
            "flight": bool(flight)}


def expand_path(path):
    """The trace path with {pid} and {time} filled in."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.fspath(path).replace("{pid}", str(os.getpid())).replace("{time}", stamp)


def redaction_patterns():
    patterns = []
    if os.environ.get("RETRACE_REDACT"):
        patterns.append(os.environ["RETRACE_REDACT"])
    path = os.environ.get("RETRACE_REDACT_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise SettingError(f"RETRACE_REDACT_FILE: {exc}") from None
        patterns += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for pattern in patterns:
        try:
            re.compile(pattern)
            re.compile(pattern.encode())
        except re.error as exc:
            raise SettingError(f"redaction pattern {pattern!r}: {exc}") from None
    return patterns


def redactor(patterns):
    """redact(value) for the engine: a recorded str or bytes (alone or in a
    tuple or list) with every match replaced by a mask of the same length."""
    if not patterns:
        return None
    text_res = [re.compile(p) for p in patterns]
    bytes_res = [re.compile(p.encode()) for p in patterns]

    def mask(match):
        return MASK * len(match.group())

    def bytes_mask(match):
        return MASK.encode() * len(match.group())

    def redact(value):
        kind = type(value)
        if kind is str:
            for r in text_res:
                value = r.sub(mask, value)
        elif kind is bytes:
            for r in bytes_res:
                value = r.sub(bytes_mask, value)
        elif kind is tuple or kind is list:
            value = kind(map(redact, value))
        return value

    def guarded(value):
        try:
            test_fault("redact")
            return redact(value)
        except Exception as exc:
            # Never record the payload unmasked: the recording stops here.
            internal_error("payload redaction", exc)
            return None

    return guarded


_reported = False


def internal_error(where, exc):
    """A bug inside Retrace while recording: cut the recording here, say so
    once on stderr, and let the program go on unrecorded."""
    global _reported
    _engine.cut()
    if _reported:
        return
    _reported = True
    _engine.suspend()
    try:
        message = (f"retrace: internal error in {where}: {type(exc).__name__}: {exc}; "
                   f"recording stopped here (the trace keeps everything before), "
                   f"the program goes on unrecorded\n").encode(errors="backslashreplace")
        while message:
            message = message[os.write(2, message):]
    finally:
        _engine.resume()


def fallback_to(real):
    """The fallback of a recording function (Boundary(..., fallback=)) whose
    result for the program is what its one _engine.world(real, ...) call
    returned: that result if the call was made, else real(*args)."""
    def fallback(done, *args, **kwargs):
        return done[0] if done else real(*args, **kwargs)
    return fallback


_fault_calls = {}


def test_fault(where):
    """RETRACE_TEST_FAULT=WHERE[:N] (tests only): raise at the Nth call of the
    hook WHERE (the first by default), to show that a bug in Retrace does not
    reach the program."""
    spec = os.environ.get("RETRACE_TEST_FAULT")
    if not spec or spec.split(":")[0] != where:
        return
    _fault_calls[where] = _fault_calls.get(where, 0) + 1
    nth = int(spec.split(":")[1]) if ":" in spec else 1
    if _fault_calls[where] == nth:
        raise RuntimeError(f"fault injected by RETRACE_TEST_FAULT={spec}")
