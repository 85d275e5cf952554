"""`retrace inspect`: what a recording holds, as a dict or as text."""
import collections
import glob
import os
import signal
import time

from . import _engine
from .errors import TraceCorrupt


def _varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise TraceCorrupt(f"a record ends inside a varint: {data[:40]!r}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def summarize(path):
    header_bytes, records, truncated_at = _engine._read_records(path)
    header = _engine.decode(header_bytes)
    names, counts, threads, end, cut = {}, collections.Counter(), set(), None, None
    sizes = collections.Counter()      # record bytes (decompressed) per function
    for record in records:
        kind = record[:1]
        if kind == b"D":
            fid, pos = _varint(record, 1)
            n, pos = _varint(record, pos)
            names[fid] = record[pos:pos + n].decode("utf-8", "replace")
        elif kind == b"C":
            tid, pos = _varint(record, 1)
            fid, _ = _varint(record, pos)
            name = names.get(fid, f"#{fid}")
            counts[name] += 1
            sizes[name] += len(record)
            threads.add(tid)
        elif kind == b"E":
            end = _engine.decode(record[1:])
        elif kind == b"X":
            cut = {"after_event": sum(counts.values()), "why": _engine.describe_cut(record)}
    end = end or {}
    return {
        "path": os.path.abspath(path),
        "python": header["python"].split()[0],
        "python_build": header["python"],
        "platform": header["platform"],
        "executable": header["executable"],
        "argv": header["argv"],
        "cwd": header["cwd"],
        "target": header["target"],
        "pid": header["pid"],
        "start_time": header["start_time"],
        "duration": end.get("duration"),
        "hash_seed": header["hash_seed"],
        "env_redacted": header["env_redacted"],
        "env_keys": sorted(header["env"]),
        "events": dict(counts.most_common()),
        "event_total": sum(counts.values()),
        "event_bytes": dict(sizes.most_common()),
        "threads": len(threads),
        "exception": end.get("exception"),
        "exit_code": end.get("exit_code"),
        "size": os.path.getsize(path),
        "complete": bool(end) and truncated_at < 0 and not cut,
        "cut": cut,
        "truncated_at": truncated_at if truncated_at >= 0 else None,
        "source_files": len(end.get("sources", {})),
        "parent": header.get("parent"),
        "children": sorted(p for p in glob.glob(glob.escape(path) + ".*")
                           if p.rsplit(".", 1)[1].isdigit()),
    }


def _exit_status(code):
    """As a shell would say it: a negative status is the signal that ended the process."""
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit status {code}"


def render(s):
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["start_time"]))
    duration = "unknown" if s["duration"] is None else f"{s['duration']:.3f} s"
    lines = [
        f"recording   {s['path']} ({s['size']:,} bytes)",
        f"python      {s['python_build'].splitlines()[0]} on {s['platform']}",
        f"program     {' '.join(s['argv'])}",
        f"cwd         {s['cwd']}",
        f"started     {start}, pid {s['pid']}, ran {duration}",
        f"hash seed   {s['hash_seed']}",
        f"environment {len(s['env_keys'])} variables; redacted: "
        f"{', '.join(s['env_redacted']) or 'none'}",
        f"outcome     {_exit_status(s['exit_code'])}"
        + (f", uncaught {s['exception'].removesuffix(': ')}" if s["exception"] else ""),
    ]
    if s["cut"]:
        lines.append(f"CUT         after event {s['cut']['after_event']}: {s['cut']['why']}; "
                     "replay stops there")
    elif not s["complete"]:
        where = f" at offset {s['truncated_at']}" if s["truncated_at"] is not None else ""
        lines.append(f"INCOMPLETE  the recording was cut short{where}; "
                     "replay stops at its last event")
    if s["parent"]:
        lines.append(f"forked      from pid {s['parent']['pid']} "
                     f"({os.path.basename(s['parent']['trace'])}) "
                     f"after its event {s['parent']['fork_index']}")
    for child in s["children"]:
        lines.append(f"child       {child}  (retrace replay {child})")
    lines.append(f"events      {s['event_total']} in {s['threads']} thread(s)")
    lines.extend(f"  {count:8d}  {name}" for name, count in s["events"].items())
    return "\n".join(lines) + "\n"
