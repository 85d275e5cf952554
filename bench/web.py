"""The web workload: what recording costs a service, as bench/run.py's "web"
section (`make bench-web` runs it alone).

A Flask app (bench/workloads/web_flask.py) and the Django demo shop's invoice
view (examples/django_demo, with persistent connections:
bench/workloads/web_django_settings.py) do the same per request: one
PostgreSQL query through psycopg2, one outbound HTTP call to a rate service
on loopback (a separate, unrecorded process: `python bench/web.py` serves
it), one log line. Each is served by gunicorn with two sync workers and
loaded by wrk from another process, one request in flight per worker, for a
fixed number of requests after a warm-up. Three modes, their order rotated
from round to round:

  plain       a venv without the hook
  hook_unset  a venv where `retrace install` was run, RETRACE_RECORDING unset
  record      that venv with RETRACE_RECORDING set: the master and each
              worker record their own trace, as in production

Of each recording: its size per 1,000 requests served, bytes per event by
function, the compression ratio, and the wall time of replaying its busiest
worker (`retrace replay TRACE --pid PID`) against that worker's recorded
lifetime and throughput. With valgrind, one worker per app and mode also
runs under callgrind: its instructions per request, per thread.
"""
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import net
from common import (BENCH, PY, REPO, WORKLOADS, chunk_totals, clean_env, fmt, inspect,
                    make_venvs, progress, retrace, run, spread)

WORKERS = 2             # gunicorn sync workers: one per core of the benchmark machine
CONNECTIONS = 2         # wrk's connections: one request in flight per worker
CALLGRIND_WARMUP = 20   # requests before callgrind counts
MODES = ("plain", "hook_unset", "record")
DJANGO_DIR = REPO / "examples" / "django_demo"
LOGGED = re.compile(r"\[(\d+)\] INFO shop: invoice ")     # one line per request served


@dataclasses.dataclass
class App:
    cwd: Path
    args: list      # gunicorn's: the WSGI app and where it is
    env: dict


# Django's settings module is found through gunicorn's --pythonpath, not
# PYTHONPATH: a replay runs with the recorded os.environ, but builds sys.path
# from its own environment.
APPS = {
    "flask": App(WORKLOADS, ["web_flask:app"], {}),
    "django": App(DJANGO_DIR, ["--pythonpath", WORKLOADS, "shop.wsgi"],
                  {"DJANGO_SETTINGS_MODULE": "web_django_settings"}),
}


class Rates(net._Handler):
    body = b'{"EUR": 0.92, "GBP": 0.79, "USD": 1.0}'


# -- the services ------------------------------------------------------------------

@contextlib.contextmanager
def database(dsn):
    """A PostgreSQL server holding the demo shop's tables and one order:
    the one at dsn, or a throwaway cluster (tests/postgres.py).
    Yields (dsn, order id, a description of the server)."""
    cluster = None
    if dsn is None:
        sys.path.insert(0, str(REPO / "tests"))
        from postgres import Cluster
        cluster = Cluster()
        dsn = cluster.url
    try:
        run([PY, "manage.py", "migrate", "-v0"], cwd=DJANGO_DIR,
            env=clean_env(DATABASE_URL=dsn))
        import psycopg2
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO orders_order (product_id, quantity, created) "
                        "VALUES ('MUG-01', 2, now()) RETURNING id")
            order = cur.fetchone()[0]
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0].split()[0]
        conn.close()
        where = "a throwaway cluster (tests/postgres.py, fsync off)" if cluster else dsn
        yield dsn, order, f"PostgreSQL {version}, {where}"
    finally:
        if cluster:
            cluster.destroy()


@contextlib.contextmanager
def rate_service():
    """The rate service in its own process; yields its URL."""
    proc = subprocess.Popen([PY, __file__], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{proc.stdout.readline().strip()}/rates"
    finally:
        proc.kill()
        proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url, server, log, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                answer.read()
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {url}:\n{log.read_text()}")
            time.sleep(0.1)


def wrk(url, requests):
    """`requests` requests from wrk; its JSON summary (bench/wrk_count.lua).
    Answers that arrive with the last one count too: a few more at most."""
    out, _, _ = run(["wrk", "--threads", "1", "--connections", CONNECTIONS, "--duration", "600s",
                     "--timeout", "10s", "--script", BENCH / "wrk_count.lua", url],
                    env=clean_env(WRK_REQUESTS=str(requests)))
    result = json.loads(out.splitlines()[-1])
    if any(result["errors"].values()) or result["requests"] < requests:
        raise RuntimeError(f"wrk: {result['requests']} answers of {requests}, "
                           f"errors {result['errors']}\n{out}")
    return result


def cpu_seconds(pid):
    """User + system CPU time so far of process pid and its children
    (gunicorn's master and workers, all their threads), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    ticks = 0
    for p in [pid, *map(int, children)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])      # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gunicorn(app, python, env, url_path, log, workers=WORKERS, prefix=(), timeout=60):
    """gunicorn serving app (under `prefix`, e.g. valgrind), up and
    answering; yields (its process, the URL). Stopped with SIGTERM after, as
    a deployment does; it must exit cleanly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{url_path}"
    # --timeout: a worker under valgrind is slow to report, and must not be killed for it
    cmd = [*prefix, python, "-m", "gunicorn", "--no-control-socket", "--workers", workers,
           "--timeout", 900, "--bind", f"127.0.0.1:{port}", *app.args]
    with open(log, "wb") as err:
        server = subprocess.Popen([str(c) for c in cmd], cwd=app.cwd, env=env,
                                  stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        wait_until_up(url, server, log, timeout)
        yield server, url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.returncode != 0:
        raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")


def serve(app, python, env, url_path, cfg, log):
    """Warm gunicorn up, time cfg.web_requests requests. Returns wrk's
    summary, with the CPU time the server spent on the timed requests."""
    with gunicorn(app, python, env, url_path, log) as (server, url):
        wrk(url, cfg.web_warmup)
        cpu = cpu_seconds(server.pid)
        result = wrk(url, cfg.web_requests)
        result["cpu_s"] = cpu_seconds(server.pid) - cpu
    return result


def instructions(app, python, env, url_path, cfg, out):
    """Instructions per request of one gunicorn worker under callgrind, over
    cfg.web_callgrind_requests requests after a warm-up: {"main": its main
    thread, "other": its other threads (Retrace's trace writer)}."""
    prefix = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--separate-threads=yes",
              f"--callgrind-out-file={out}.%p"]
    with gunicorn(app, python, env, url_path, out.with_suffix(".log"), workers=1,
                  prefix=prefix, timeout=600) as (server, url):
        wrk(url, CALLGRIND_WARMUP)
        worker, = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        run(["callgrind_control", "--zero", worker])
        requests = wrk(url, cfg.web_callgrind_requests)["requests"]
        run(["callgrind_control", "--dump=timed", worker])
    # the dump is OUT.PID.1-TT, one file per thread TT (01: the main thread)
    counts = {int(f.name.rsplit("-", 1)[1]): int(re.search(r"^(?:summary|totals): (\d+)",
                                                            f.read_text(), re.M).group(1))
              for f in out.parent.glob(f"{out.name}.{worker}.1-*")}
    return {"main": counts.pop(1) / requests, "other": sum(counts.values()) / requests}


# -- one recording: its size, and its replay -----------------------------------------

def recording(app, trace, log):
    """Size and replay of the traces gunicorn's master and workers wrote."""
    served = Counter(int(pid) for pid in LOGGED.findall(log.read_text()))
    files = [trace] + [trace.with_name(f"{trace.name}.{pid}") for pid in served]
    infos = [inspect(f) for f in files]
    stored, raw = map(sum, zip(*(chunk_totals(f) for f in files)))
    size = sum(info["size"] for info in infos)
    counts, sizes = Counter(), Counter()
    for info in infos:
        counts.update(info["events"])
        sizes.update(info["event_bytes"])

    busiest, worker_requests = served.most_common(1)[0]
    worker = infos[files.index(trace.with_name(f"{trace.name}.{busiest}"))]
    try:
        _, _, replay_s = run(retrace("replay", trace, "--pid", busiest), cwd=app.cwd)
        replay_error = None
    except RuntimeError as exc:     # a failed replay is a result too: counted and shown
        lines = str(exc).splitlines()
        first = next((i for i, line in enumerate(lines) if line.startswith("retrace:")), 0)
        replay_s, replay_error = None, " / ".join(line.strip() for line in lines[first:first + 3])
    return {
        "requests_served": sum(served.values()),
        "trace_bytes": size,
        "mb_per_1000_requests": size / 1e6 / sum(served.values()) * 1000,
        "events": sum(counts.values()),
        "events_per_request": sum(counts.values()) / sum(served.values()),
        "compression": raw / stored,
        "db_recorded": any("psycopg" in name for name in counts),
        "by_function": {name: {"events": n, "bytes": sizes[name]}
                        for name, n in counts.most_common()},
        "replay_worker_requests": worker_requests,
        "replay_s": replay_s,
        "replay_error": replay_error,
        "worker_recorded_s": worker["duration"],
    }


# -- the measurement ------------------------------------------------------------------

def measure(cfg, tmp, dsn=None):
    if not shutil.which("wrk"):
        progress("  web: skipped, wrk is not installed (apt-get install wrk)")
        return None
    result = {"workers": WORKERS, "connections": CONNECTIONS,
              "requests": cfg.web_requests, "warmup": cfg.web_warmup,
              "callgrind_requests": cfg.web_callgrind_requests, "callgrind": None}
    pythons = make_venvs(tmp / "web-venvs", with_packages=True)
    python = {"plain": pythons["bare"], "hook_unset": pythons["hooked"],
              "record": pythons["hooked"]}
    runs = {(name, mode): [] for name in APPS for mode in MODES}
    recordings = {name: [] for name in APPS}
    loads = []
    with database(dsn) as (dsn, order, server), rate_service() as rates_url:
        result["database"] = server
        url_path = f"/orders/{order}/invoice?currency=EUR"

        def env(app, mode, trace):
            extra = {"RETRACE_RECORDING": str(trace)} if mode == "record" else {}
            return clean_env(DATABASE_URL=dsn, RETRACE_DEMO_RATES_URL=rates_url, **app.env,
                             **extra)

        for n in range(cfg.rounds):
            for name, app in APPS.items():
                for mode in MODES[n % 3:] + MODES[:n % 3]:
                    loads.append(os.getloadavg()[0])
                    trace = tmp / f"{name}-{n}.retrace"
                    log = tmp / f"{name}-{n}-{mode}.log"
                    runs[name, mode].append(serve(app, python[mode], env(app, mode, trace),
                                                  url_path, cfg, log))
                    if mode == "record":
                        recordings[name].append(recording(app, trace, log))
                plain = runs[name, "plain"][-1]
                progress(f"  web {name} round {n + 1}: " + ", ".join(
                    f"{mode} {throughput(runs[name, mode][-1]) / throughput(plain):.3f}"
                    for mode in MODES[1:]) + " of plain throughput")
        if shutil.which("valgrind"):
            result["callgrind"] = {}
            for name, app in APPS.items():
                counts = {mode: instructions(app, python[mode],
                                             env(app, mode, tmp / f"{name}-callgrind.retrace"),
                                             url_path, cfg, tmp / f"{name}-{mode}.cg")
                          for mode in MODES}
                result["callgrind"][name] = counts
                progress(f"  web {name} callgrind: main thread x"
                         f"{counts['record']['main'] / counts['plain']['main']:.4f} recording")
    result["load_average"] = spread(loads)
    result["apps"] = {name: summarize(runs, recordings[name], name) for name in APPS}
    return result


def throughput(r):
    return r["requests"] / (r["duration_us"] / 1e6)


def cpu_per_request(r):
    return r["cpu_s"] / r["requests"]


def summarize(runs, recordings, name):
    plain = runs[name, "plain"]
    out = {}
    for mode in MODES:
        mine = runs[name, mode]
        out[mode] = {
            "requests_per_s": spread([throughput(r) for r in mine]),
            "p50_ms": spread([r["p50_us"] / 1e3 for r in mine]),
            "p99_ms": spread([r["p99_us"] / 1e3 for r in mine]),
            "cpu_ms_per_request": spread([cpu_per_request(r) * 1e3 for r in mine]),
        }
        if mode != "plain":
            out[mode]["cpu_overhead_pct"] = spread(
                [(cpu_per_request(r) / cpu_per_request(p) - 1) * 100 for p, r in zip(plain, mine)])
            # Per round, against the plain run of the same round.
            out[mode]["throughput_overhead_pct"] = spread(
                [(1 - throughput(r) / throughput(p)) * 100 for p, r in zip(plain, mine)])
            for q in ("p50", "p99"):
                out[mode][f"{q}_overhead_pct"] = spread(
                    [(r[f"{q}_us"] / p[f"{q}_us"] - 1) * 100 for p, r in zip(plain, mine)])
    recorded = runs[name, "record"]
    last = recordings[-1]
    out["trace"] = {
        "mb_per_1000_requests": spread([r["mb_per_1000_requests"] for r in recordings]),
        "events_per_request": spread([r["events_per_request"] for r in recordings]),
        "compression": spread([r["compression"] for r in recordings]),
        "db_recorded": all(r["db_recorded"] for r in recordings),
        "requests_served": last["requests_served"],
        "trace_bytes": last["trace_bytes"],
        "by_function": last["by_function"],
    }
    replayed = [r for r in recordings if r["replay_s"] is not None]
    out["replay"] = {
        "replays": len(recordings),
        "failed": len(recordings) - len(replayed),
        "errors": sorted({r["replay_error"] for r in recordings if r["replay_error"]}),
        # A worker's share of the recorded throughput, against its replay's rate.
        "recorded_requests_per_s_per_worker": spread(
            [throughput(r) / WORKERS for r in recorded]),
    }
    if replayed:
        out["replay"].update(
            worker_requests=spread([r["replay_worker_requests"] for r in replayed]),
            replay_s=spread([r["replay_s"] for r in replayed]),
            worker_recorded_s=spread([r["worker_recorded_s"] for r in replayed]),
            replay_over_recorded_lifetime=spread(
                [r["replay_s"] / r["worker_recorded_s"] for r in replayed]),
            replay_requests_per_s=spread(
                [r["replay_worker_requests"] / r["replay_s"] for r in replayed]))
    return out


# -- the report -------------------------------------------------------------------------

def render(web, cfg):
    if web is None:
        return ["Skipped: wrk is not installed."]
    lines = [
        f"Load average over the runs {fmt(web['load_average'], 2)}. "
        f"Database: {web['database']}.", "",
        f"gunicorn, {web['workers']} sync workers; `wrk -t1 -c{web['connections']}` from another "
        f"process, {web['requests']:,} requests per run after {web['warmup']:,} of warm-up. "
        "Per request: one PostgreSQL query (psycopg2), one HTTP call to a rate service on "
        "loopback, one log line. Overheads are per round, against the plain run of the same "
        "round: throughput lost, latency added, server CPU added. *server CPU*: user + system "
        "time of gunicorn's master and workers (all threads, the trace writer's included) "
        "during the timed requests, per request; less sensitive to the machine's other load "
        "than throughput is.", "",
    ]
    for name, a in web["apps"].items():
        if not a["trace"]["db_recorded"]:
            lines += [f"**{name}: psycopg2 calls are not intercepted in this build: the "
                      "database calls were not recorded, so these numbers understate the cost "
                      "of recording.**", ""]
    lines += [
        "| app | mode | requests/s | throughput lost % | p50 ms | p50 added % | p99 ms "
        "| p99 added % | server CPU ms / request | CPU added % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, a in web["apps"].items():
        for mode in MODES:
            m = a[mode]

            def added(key):
                return "" if mode == "plain" else fmt(m[key], 1)
            lines.append(
                f"| {name} | {mode.replace('_', ' ')} | {fmt(m['requests_per_s'])} "
                f"| {added('throughput_overhead_pct')} | {fmt(m['p50_ms'], 2)} "
                f"| {added('p50_overhead_pct')} | {fmt(m['p99_ms'], 2)} "
                f"| {added('p99_overhead_pct')} | {fmt(m['cpu_ms_per_request'], 3)} "
                f"| {added('cpu_overhead_pct')} |")
    lines += ["", "### Web: instructions per request (callgrind)", ""]
    if web["callgrind"] is None:
        lines.append("Skipped: valgrind is not installed.")
    else:
        lines += [
            f"One gunicorn worker under callgrind, counted over {web['callgrind_requests']:,} "
            f"requests after {CALLGRIND_WARMUP} of warm-up (`callgrind_control --zero`, then "
            "`--dump`): deterministic where wall and CPU time are not. *main thread*: the "
            "thread that serves the requests; *other threads*: Retrace's trace writer, which "
            "compresses and writes a chunk every 100 ms: under valgrind's ~50x slowdown it "
            "writes ~50x more chunks per request than at full speed, so that column is an "
            "upper bound.", "",
            "| app | mode | main thread / request | added % | other threads / request "
            "| all threads, added % |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for name, counts in web["callgrind"].items():
            plain = counts["plain"]
            for mode, c in counts.items():
                main_added = (c["main"] / plain["main"] - 1) * 100
                all_added = ((c["main"] + c["other"]) / (plain["main"] + plain["other"]) - 1) * 100
                lines.append(f"| {name} | {mode.replace('_', ' ')} | {c['main']:,.0f} "
                             f"| {main_added:+.2f} | {c['other']:,.0f} | {all_added:+.2f} |")
    lines += [
        "", "### Web: trace size and replay", "",
        "*MB per 1,000 requests*: all the traces of a recorded run (master and workers) over "
        "the requests it served (warm-up included). *Replay*: `retrace replay TRACE --pid PID` "
        "of the worker that served the most requests, against that worker's recorded lifetime "
        "(start to SIGTERM, idle time included) and against its share of the recorded "
        "throughput.", "",
        "| app | MB / 1,000 requests | events / request | compression | replays ok "
        "| replayed requests | replay s | recorded worker s | replay / recorded "
        "| replay req/s | recorded req/s per worker |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, a in web["apps"].items():
        t, r = a["trace"], a["replay"]
        row = (f"| {name} | {fmt(t['mb_per_1000_requests'], 3)} | {fmt(t['events_per_request'])} "
               f"| {fmt(t['compression'], 1)}x | {r['replays'] - r['failed']} of {r['replays']} ")
        if r["failed"] < r["replays"]:
            row += (f"| {fmt(r['worker_requests'])} | {fmt(r['replay_s'], 2)} "
                    f"| {fmt(r['worker_recorded_s'], 2)} "
                    f"| {fmt(r['replay_over_recorded_lifetime'], 2)} "
                    f"| {fmt(r['replay_requests_per_s'])} ")
        else:
            row += "| | | | | "
        lines.append(row + f"| {fmt(r['recorded_requests_per_s_per_worker'])} |")
    for name, a in web["apps"].items():
        for error in a["replay"]["errors"]:
            lines += ["", f"A {name} replay failed: `{error}`"]
    for name, a in web["apps"].items():
        t = a["trace"]
        lines += [
            "", f"Events of one {name} recording by function ({t['requests_served']:,} requests, "
            f"{t['trace_bytes']:,} bytes on disk); bytes are the decompressed record bytes "
            "(before zlib), the first 12 functions by bytes:", "",
            "| function | events | per request | bytes | bytes / event |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        top = sorted(t["by_function"].items(), key=lambda kv: -kv[1]["bytes"])[:12]
        for fn, v in top:
            lines.append(f"| `{fn}` | {v['events']:,} | {v['events'] / t['requests_served']:.2f} "
                         f"| {v['bytes']:,} | {v['bytes'] / v['events']:.1f} |")
    return lines


if __name__ == "__main__":
    net.serve(Rates)
