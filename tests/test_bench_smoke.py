"""bench/run.py --quick runs to the end and writes results.json and results.md
with every measurement present and sane. No timing is asserted: only that the
numbers that cannot be zero or negative are positive."""
import json
import shutil

import pytest

from conftest import PY, REPO, run, scrubbed_env

MICRO_POSITIVE = ["plain_ns", "record_ns", "events_per_call", "trace_bytes",
                  "stored_bytes_per_event", "raw_bytes_per_event", "compression"]
MICRO_SPREADS = ["hook_unset_added_ns", "record_added_ns", "record_ratio"]


def positive(value):
    """A number > 0, or a {min, median, max} spread of them."""
    if isinstance(value, dict):
        return set(value) == {"min", "median", "max"} and all(map(positive, value.values()))
    return isinstance(value, (int, float)) and value > 0


def quick_bench(out, *sections, timeout=300):
    """bench/run.py --quick for these sections; its results.json."""
    only = [arg for name in sections for arg in ("--only", name)]
    result = run([PY, REPO / "bench" / "run.py", "--quick", "--out", out, *only],
                 cwd=out.parent, env=scrubbed_env(), timeout=timeout)
    assert result.code == 0, result.describe()
    assert (out / "results.md").read_text().startswith("# Retrace benchmark results")
    results = json.loads((out / "results.json").read_text())
    for name in sections:
        assert results["stamps"][name]["quick"] is True, results["stamps"]
    return results


def test_quick_bench(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # bench/debugger.py writes its own section into results.md: it stays
    (out / "results.md").write_text("# Retrace benchmark results\n\n## Debugger\n\nkept\n")
    results = quick_bench(out, "micro", "workloads", "callgrind", "startup")
    assert "web" not in results
    assert (out / "results.md").read_text().endswith("\n## Debugger\n\nkept\n")
    assert set(results["micro"]) == {"time.time()", "time.monotonic()", "os.getpid()",
                                     "os.urandom(16)", "random.Random()", "os.stat(path)",
                                     "open(path).read() 4 KB",
                                     "socket.recv 4 KB, TCP loopback", "sqlite3 point query"}
    for op, r in results["micro"].items():
        for key in MICRO_POSITIVE:
            assert positive(r[key]), (op, key, r[key])
        for key in MICRO_SPREADS:
            assert set(r[key]) == {"min", "median", "max"}, (op, key, r[key])

    assert set(results["workloads"]) == {"cpu_bound", "boundary_heavy"}
    for name, r in results["workloads"].items():
        assert positive(r["events"]), (name, r)
        for kind in ("process", "in_script"):
            for key in ("plain_s", "record_s", "replay_s", "record_ratio", "replay_ratio"):
                assert positive(r[kind][key]), (name, kind, key, r[kind][key])

    if shutil.which("valgrind"):
        cg = results["callgrind"]
        for key in ("plain_instructions", "record_instructions", "total_ratio",
                    "plain_workload_instructions", "record_workload_instructions",
                    "workload_ratio", "plain_startup_instructions",
                    "record_startup_instructions"):
            assert positive(cg[key]), (key, cg[key])
    else:
        assert results["callgrind"] is None

    startup = results["startup"]
    for key in ("not_installed_ms", "hook_unset_ms", "record_ms"):
        assert positive(startup[key]), (key, startup[key])
    for key in ("hook_unset_added_ms", "record_added_ms"):
        assert set(startup[key]) == {"min", "median", "max"}, (key, startup[key])
    if shutil.which("valgrind"):
        assert positive(startup["instructions"]["not_installed"]), startup
        assert positive(startup["instructions"]["hook_unset"]), startup
    else:
        assert startup["instructions"] is None


WEB_MODES = ["plain", "hook_unset", "record"]


def test_quick_web(tmp_path):
    """The web section: Flask and Django under gunicorn, loaded by wrk, in the
    three modes; trace sizes and a replay of a worker. A second --only run of
    another section keeps it (and its stamp) in results.json and results.md."""
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    out = tmp_path / "out"
    web = quick_bench(out, "web", timeout=600)["web"]
    assert set(web["apps"]) == {"flask", "django"}
    assert "PostgreSQL" in web["database"]
    for name, app in web["apps"].items():
        for mode in WEB_MODES:
            for key in ("requests_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request"):
                assert positive(app[mode][key]), (name, mode, key, app[mode][key])
        for mode in WEB_MODES[1:]:
            for key in ("throughput_overhead_pct", "p50_overhead_pct", "p99_overhead_pct",
                        "cpu_overhead_pct"):
                assert set(app[mode][key]) == {"min", "median", "max"}, (name, mode, key)
        trace = app["trace"]
        for key in ("mb_per_1000_requests", "events_per_request", "compression"):
            assert positive(trace[key]), (name, key, trace[key])
        # the warm-up and the timed requests of the last recorded run (quick sizes)
        assert trace["requests_served"] >= 30 + 5, trace
        assert all(positive(v["events"]) and positive(v["bytes"])
                   for v in trace["by_function"].values()), trace["by_function"]
        assert any(fn.startswith("_socket.") for fn in trace["by_function"]), trace
        replay = app["replay"]
        assert replay["replays"] == 2, replay
        assert len(replay["errors"]) <= replay["failed"], replay
        if replay["failed"] < 2:
            for key in ("worker_requests", "replay_s", "worker_recorded_s",
                        "replay_requests_per_s"):
                assert positive(replay[key]), (name, key, replay[key])

    if shutil.which("valgrind"):
        assert set(web["callgrind"]) == {"flask", "django"}
        for name, counts in web["callgrind"].items():
            assert set(counts) == set(WEB_MODES), counts
            for mode, c in counts.items():
                assert positive(c["main"]) and c["other"] >= 0, (name, mode, c)
            # Retrace's writer thread exists only when recording
            assert counts["record"]["other"] > 0 and counts["plain"]["other"] == 0, counts
    else:
        assert web["callgrind"] is None

    # A worker's replay can stop at the SIGTERM that ended it (a known race of
    # signal replay), so some replays may fail, but not all four.
    assert sum(app["replay"]["failed"] for app in web["apps"].values()) < 4, web["apps"]

    results = quick_bench(out, "startup")
    assert results["web"] == web and "stamps" in results and "web" in results["stamps"]
    report = (out / "results.md").read_text()
    assert "## Web: Flask and Django under gunicorn" in report
    assert "## Startup: `python -c pass`" in report
    assert "| flask | record |" in report and "| django | hook unset |" in report


@pytest.mark.skipif(not shutil.which("valgrind"), reason="bench/percall.py needs valgrind")
def test_percall(tmp_path):
    """bench/percall.py counts a recorded call above a plain one, and
    --profile names the engine's functions among those that grew."""
    result = run([PY, REPO / "bench" / "percall.py", "--calls", "50", "--profile", "time.time()"],
                 cwd=tmp_path, env=scrubbed_env(), timeout=300)
    assert result.code == 0, result.describe()
    out = result.out.decode()
    row = next(line for line in out.splitlines() if line.startswith("| `time.time()`"))
    plain, recorded = (int(cell.strip().replace(",", "")) for cell in row.split("|")[2:4])
    assert 0 < plain < recorded, row
    assert "boundary.c:record_call" in out, out
