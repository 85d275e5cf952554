"""bench/run.py --quick runs to the end and writes results.json and results.md
with every measurement present and sane. No timing is asserted: only that the
numbers that cannot be zero or negative are positive."""
import json
import shutil

from conftest import PY, REPO, run, scrubbed_env

MICRO_POSITIVE = ["plain_ns", "record_ns", "events_per_call", "trace_bytes",
                  "stored_bytes_per_event", "raw_bytes_per_event", "compression"]
MICRO_SPREADS = ["hook_unset_added_ns", "record_added_ns", "record_ratio"]


def positive(value):
    """A number > 0, or a {min, median, max} spread of them."""
    if isinstance(value, dict):
        return set(value) == {"min", "median", "max"} and all(map(positive, value.values()))
    return isinstance(value, (int, float)) and value > 0


def test_quick_bench(tmp_path):
    out = tmp_path / "out"
    result = run([PY, REPO / "bench" / "run.py", "--quick", "--out", out], cwd=tmp_path,
                 env=scrubbed_env(), timeout=300)
    assert result.code == 0, result.describe()
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# Retrace benchmark results")

    assert results["quick"] is True
    assert set(results["micro"]) == {"time.time()", "time.monotonic()", "os.getpid()",
                                     "os.urandom(16)", "random.Random()", "os.stat(path)",
                                     "open(path).read() 4 KB"}
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
