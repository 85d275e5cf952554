"""The pytest plugin (src/retrace/pytest_plugin.py), driven by pytester.

Each test writes a small test suite into pytester's directory and runs pytest
on it in a subprocess, with --retrace-record (every test recorded in its own
child pytest) or --retrace-check (recordings as tests). Recordings are then
replayed with the real `retrace replay`, after their inputs are gone.
"""
import os
import re
import socket
import threading

from conftest import PY, TIMEOUT, TRACEBACK, retrace_cmd, run

pytest_plugins = ["pytester"]

CALC = """\
def mean(values):
    return sum(values) / len(values)
"""
CALC_FIXED = """\
def mean(values):
    return sum(values) / len(values) if values else 0.0
"""
TEST_CALC = """\
import random
import calc


def test_mean_of_filtered_values():
    values = [random.randint(1, 9) for _ in range(3)]
    print("values", values)
    assert calc.mean([v for v in values if v > 100]) == 0.0
"""


def pytest_run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT)


def replay(pytester, trace, *args):
    return run(retrace_cmd("replay", trace, *args), cwd=pytester.path, env=dict(os.environ))


def recordings(pytester, name="rec"):
    directory = pytester.path / name
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def assertion_line(text):
    """The first 'AssertionError: ...' line of pytest's report."""
    match = re.search(r"^E +(AssertionError: .*)$", text, re.M)
    assert match, text
    return match.group(1)


def test_failing_test_keeps_a_trace_that_replays_the_failure(pytester):
    pytester.makepyfile(calc=CALC, test_calc=TEST_CALC)
    result = pytest_run(pytester, "--retrace-record=rec")
    result.assert_outcomes(failed=1)
    assert recordings(pytester) == ["test_calc.py__test_mean_of_filtered_values.retrace"]
    trace = pytester.path / "rec" / "test_calc.py__test_mean_of_filtered_values.retrace"
    out = result.stdout.str()
    # The failure report says how to debug it; the summary gives the cost.
    assert f"retrace debug {trace} --at-crash" in out
    assert f"retrace replay {trace}" in out
    assert "1 test(s) recorded, each in its own subprocess" in out
    assert re.search(r"^ +\d+\.\d{3} +\d+\.\d{3}  test_calc.py::test_mean_of_filtered_values$",
                     out, re.M), out
    values = re.search(r"^values \[\d, \d, \d\]$", out, re.M).group(0)

    # The replay fails the same way: pytest's report, with the same random
    # values, and the test's exception as the run's uncaught exception.
    rep = replay(pytester, trace)
    assert rep.code == 1, rep.describe()
    text = rep.out.decode()
    assert "ZeroDivisionError: division by zero" in text and "1 failed" in text
    assert values in text, rep.describe()
    err = rep.err.decode()
    assert TRACEBACK.decode() in err
    assert re.search(r'File ".*test_calc.py", line 8, in test_mean_of_filtered_values\n', err)
    assert re.search(r'File ".*calc.py", line 2, in mean\n', err)
    assert err.rstrip().endswith("ZeroDivisionError: division by zero"), rep.describe()
    assert "retrace:" not in err, rep.describe()


def test_passing_tests_leave_nothing(pytester):
    pytester.makepyfile(test_ok="""
        import os, pytest, time

        def test_clock():
            assert time.time() > 0

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        @pytest.mark.xfail(reason="known")
        def test_expected_failure():
            assert os.getpid() < 0
    """)
    result = pytest_run(pytester, "--retrace-record=rec", "-rsx")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*SKIPPED*not today*", "*XFAIL*known*"])
    assert recordings(pytester) == []
    assert "kept" not in result.stdout.str()


def test_recording_based_test_fails_before_the_fix_and_passes_after(pytester):
    pytester.makepyfile(calc=CALC, test_calc=TEST_CALC)
    pytest_run(pytester, "--retrace-record=rec").assert_outcomes(failed=1)
    trace, = (pytester.path / "rec").iterdir()

    # Before the fix: the recording reproduces the failure.
    before = pytest_run(pytester, "--retrace-check", "rec")
    before.assert_outcomes(failed=1)
    before.stdout.fnmatch_lines(["*retrace check: REPRODUCED*ZeroDivisionError*calc.py:2 in mean*"])

    # After it: the test replays with the recorded random values and passes.
    (pytester.path / "calc.py").write_text(CALC_FIXED)
    after = pytest_run(pytester, "--retrace-check", "rec", "-v")
    after.assert_outcomes(passed=1)
    after.stdout.fnmatch_lines([f"rec/{trace.name}::check PASSED*"])

    # A change of the test on the path to the failure is not a fix.
    (pytester.path / "test_calc.py").write_text(
        TEST_CALC.replace("print(\"values\", values)", "print(\"values\", values, os.getpid())")
        .replace("import random", "import os, random"))
    changed = pytest_run(pytester, "--retrace-check", "rec")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*retrace check: DIVERGED before the recorded crash point*",
                                  "*actual:*posix.getpid*"])


def test_recordings_in_a_tests_folder_are_collected_when_configured(pytester):
    pytester.makepyfile(calc=CALC, test_calc=TEST_CALC)
    pytest_run(pytester, "--retrace-record=tests/recordings").assert_outcomes(failed=1)
    # Another recording: a run that did not fail has nothing to check.
    run(retrace_cmd("record", "-o", pytester.path / "tests" / "recordings" / "ok.retrace",
                    "-c", "print('fine')"), cwd=pytester.path, env=dict(os.environ))
    (pytester.path / "calc.py").write_text(CALC_FIXED)
    pytester.makeini("[pytest]\nretrace_check = true\n")
    result = pytest_run(pytester, "tests", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED ?1? tests/recordings/ok.retrace:1: retrace check: "
                                 "NOTHING TO CHECK*"])
    # Without the option or the ini setting, a .retrace file is not a test.
    pytester.makeini("[pytest]\n")
    pytest_run(pytester, "tests").assert_outcomes()


def test_parametrized_tests_with_fixtures(pytester):
    pytester.makeconftest("""
        import os, pytest

        @pytest.fixture(scope="module")
        def token():
            return os.urandom(4).hex()

        @pytest.fixture
        def data_file(tmp_path, token):
            path = tmp_path / "data.txt"
            path.write_text(token)
            return path
    """)
    pytester.makepyfile(test_params="""
        import pytest

        @pytest.mark.parametrize("n, label", [(1, "one"), (2, "two/2"), (3, "three")])
        def test_token_length(data_file, token, n, label):
            text = data_file.read_text()
            assert text == token
            assert len(text) + n < 10, f"{label}: {token}"
    """)
    result = pytest_run(pytester, "--retrace-record=rec")
    result.assert_outcomes(passed=1, failed=2)
    assert recordings(pytester) == ["test_params.py__test_token_length_2-two_2_.retrace",
                                    "test_params.py__test_token_length_3-three_.retrace"]
    reported = re.findall(r"^E +AssertionError: (.*)$", result.stdout.str(), re.M)
    assert [r.split(":")[0] for r in reported] == ["two/2", "three"]
    for name, line in zip(recordings(pytester), reported):
        rep = replay(pytester, pytester.path / "rec" / name)
        assert rep.code == 1, rep.describe()
        assert f"AssertionError: {line}" in rep.out.decode(), rep.describe()
        assert f"AssertionError: {line}\n" in rep.err.decode(), rep.describe()


class Peer:
    """A TCP server in this process, outside the recorded test: it sends each
    client a fresh random token."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(os.urandom(8).hex().encode())

    def stop(self):
        self.server.shutdown(socket.SHUT_RDWR)   # wakes the accept() (Linux)
        self.server.close()
        self.thread.join(timeout=TIMEOUT)


def test_nondeterministic_inputs_replay_identically(pytester, monkeypatch):
    data = pytester.path / "input.txt"
    data.write_text(os.urandom(6).hex())
    peer = Peer()
    monkeypatch.setenv("PEER_PORT", str(peer.port))
    monkeypatch.setenv("INPUT_FILE", str(data))
    pytester.makepyfile(test_inputs="""
        import os, random, socket, time

        def test_inputs():
            with socket.create_connection(("127.0.0.1", int(os.environ["PEER_PORT"]))) as s:
                token = s.recv(100).decode()
            with open(os.environ["INPUT_FILE"]) as f:
                text = f.read()
            seen = f"time={time.time()!r} random={random.random()!r} file={text} peer={token}"
            print(seen)
            assert not seen, seen
    """)
    try:
        result = pytest_run(pytester, "--retrace-record=rec")
    finally:
        peer.stop()
    result.assert_outcomes(failed=1)
    recorded = assertion_line(result.stdout.str())
    assert f"file={data.read_text()}" in recorded and re.search(r"peer=[0-9a-f]{16}$", recorded)

    # Nothing of the world is left: no peer, no file. The replay sees it all.
    data.unlink()
    trace = pytester.path / "rec" / "test_inputs.py__test_inputs.retrace"
    first, second = replay(pytester, trace), replay(pytester, trace)
    assert first.code == second.code == 1, first.describe()
    assert first.out == second.out
    assert assertion_line(first.out.decode()) == recorded, first.describe()
    assert recorded.split(": ", 1)[1] in first.out.decode().splitlines()


def test_a_test_that_kills_its_process_keeps_its_trace(pytester):
    pytester.makepyfile(test_abort="""
        import os, time

        def test_abort():
            print("clock", time.time(), flush=True)
            os.abort()
    """)
    result = pytest_run(pytester, "--retrace-record=rec")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the recorded pytest process was killed by SIGABRT*",
                                 "*retrace debug*test_abort.py__test_abort.retrace --at-crash*"])
    rep = replay(pytester, pytester.path / "rec" / "test_abort.py__test_abort.retrace")
    # The recording ends where the process died: at the os.abort call.
    assert rep.code == 3, rep.describe()
    assert re.search(rb"actual: +posix\.abort", rep.err), rep.describe()
