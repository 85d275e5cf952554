"""Micro workload: one intercepted call (or a pair) in a tight loop.

    python micro.py OP CALLS REPEATS DATAFILE

Times REPEATS loops of CALLS executions of OP (a key of OPS) with timeit and
the real clock: inside a recording, time.perf_counter is itself intercepted,
so the loop reads the function it wraps, which records nothing. Prints one
JSON line: {"min_ns": ..., "median_ns": ...} per call over the repeats.
"""
import json
import os
import random
import socket
import sqlite3
import statistics
import sys
import time
import timeit

# OP -> (statement timed, its calls per repeat in a full run)
OPS = {
    "time.time()": ("time.time()", 20000),
    "time.monotonic()": ("time.monotonic()", 20000),
    "os.getpid()": ("os.getpid()", 20000),
    "os.urandom(16)": ("os.urandom(16)", 20000),
    "random.Random()": ("random.Random()", 1000),
    "os.stat(path)": ("os.stat(path)", 10000),
    "open(path).read() 4 KB": ("with open(path) as f: f.read()", 2000),
    "socket.recv 4 KB, TCP loopback": ("client.sendall(block); server.recv(4096)", 20000),
    "sqlite3 point query": ("cur.execute(query, (7,)); cur.fetchone()", 10000),
}


def loopback_pair():
    """Both ends of a TCP connection over 127.0.0.1, without Nagle's delay,
    and 4 KB to send over it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return {"client": client, "server": server, "block": b"x" * 4096}


def sqlite_table():
    """A cursor on an in-memory table of 1000 rows, and a query by its key."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, v REAL)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"name{i}", i / 3) for i in range(1000)])
    return {"cur": conn.cursor(), "query": "SELECT name, v FROM t WHERE id = ?"}


# What an OP's statement needs besides the modules and the path.
SETUP = {"socket.recv 4 KB, TCP loopback": loopback_pair, "sqlite3 point query": sqlite_table}


def main(op, calls, repeats, path):
    real_clock = getattr(time.perf_counter, "__wrapped__", time.perf_counter)
    namespace = {"time": time, "os": os, "random": random, "path": path}
    namespace.update(SETUP.get(op, dict)())
    timer = timeit.Timer(OPS[op][0], timer=real_clock, globals=namespace)
    per_call = [t / calls * 1e9 for t in timer.repeat(repeat=repeats, number=calls)]
    # Written with the real os.write: the timings differ in replay by design,
    # and Retrace checks what goes through sys.stdout against the recording.
    write = getattr(os.write, "__wrapped__", os.write)
    write(1, (json.dumps({"min_ns": min(per_call), "median_ns": statistics.median(per_call)}) + "\n").encode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
