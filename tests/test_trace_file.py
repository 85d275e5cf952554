"""The trace file itself: what `inspect` reports, permissions, redaction."""
import os
import platform
import re
import secrets
import stat
import time

from conftest import assert_same_run, contains

INSPECT_KEYS = {"python", "argv", "cwd", "start_time", "duration", "hash_seed",
                "env_redacted", "events", "exception", "exit_code", "size", "complete"}

# One variable per secret pattern the CLI promises to redact.
SECRET_NAMES = ["MY_API_KEY", "GITHUB_TOKEN", "APP_SECRET", "DB_PASSWORD", "SMTP_PASSWD",
                "GCP_CREDENTIALS", "PROXY_AUTH", "SSH_PRIVATE_PATH"]


def mentions_version(text, version):
    return re.search(r"(?<![\d.])" + re.escape(version) + r"(?![\d])", text) is not None


def test_inspect_json_describes_the_run(world):
    case = world.case("clock")
    started = time.time()
    rec = case.record()
    finished = time.time()
    assert rec.code == 0, rec.describe()
    info = world.inspect(rec.trace)
    assert INSPECT_KEYS <= set(info), f"missing keys {INSPECT_KEYS - set(info)}"
    assert mentions_version(info["python"], platform.python_version()), info["python"]
    assert isinstance(info["argv"], list)
    assert any(a.endswith("clock.py") for a in info["argv"]), info["argv"]
    assert info["cwd"] == str(case.cwd)
    assert started - 1 <= info["start_time"] <= finished + 1, (started, info["start_time"])
    assert 0 <= info["duration"] <= finished - started + 1, info["duration"]
    assert isinstance(info["hash_seed"], int)
    assert isinstance(info["env_redacted"], list)
    events = info["events"]
    assert all(isinstance(n, int) and n > 0 for n in events.values()), events
    assert events.get("time.time", 0) >= 1, events
    assert events.get("time.monotonic", 0) >= 1, events
    assert info["exception"] is None
    assert info["exit_code"] == 0
    assert info["size"] == os.path.getsize(rec.trace)
    assert info["complete"] is True


def test_inspect_argv_holds_the_program_arguments(world):
    case = world.case("process")
    rec = case.record()
    argv = world.inspect(rec.trace)["argv"]
    assert argv[-len(case.args):] == [str(a) for a in case.args], argv


def test_inspect_reports_the_uncaught_exception(world):
    rec = world.case("crash").record()
    assert rec.code == 1, rec.describe()
    # The last line of the recorded traceback: "ValueError: value N over the limit at T"
    last = rec.err.decode().rstrip("\n").splitlines()[-1]
    exc_type, message = last.split(": ", 1)
    info = world.inspect(rec.trace)
    assert exc_type == "ValueError"
    assert exc_type in info["exception"] and message in info["exception"], info["exception"]
    assert info["exit_code"] == 1
    assert info["complete"] is True


def test_inspect_reports_the_exit_status(world):
    rec = world.case("exit7").record()
    assert rec.code == 7, rec.describe()
    info = world.inspect(rec.trace)
    assert info["exit_code"] == 7
    assert info["complete"] is True


def test_inspect_text_output(world):
    rec = world.case("clock").record()
    result = world.retrace("inspect", rec.trace)
    assert result.code == 0, result.describe()
    assert platform.python_version().encode() in result.out, result.describe()


def test_trace_file_is_private(world):
    # Even with umask 000 the trace must not be readable by others.
    rec = world.case("clock").record(prefix=["sh", "-c", 'umask 000 && exec "$@"', "sh"])
    assert rec.code == 0, rec.describe()
    assert stat.S_IMODE(os.stat(rec.trace).st_mode) == 0o600, oct(os.stat(rec.trace).st_mode)


def test_secret_environment_values_are_redacted(world):
    case = world.case("process")
    env_secrets = {name: "s3cr3t-" + secrets.token_hex(16) for name in SECRET_NAMES}
    rec = case.record(**env_secrets)
    assert rec.code == 0, rec.describe()
    data = rec.trace.read_bytes()
    # Control: a non-secret value from the same environment can be found, so
    # the absence of the secrets below is meaningful.
    assert contains(data, case.env_extra["RETRACE_TEST_VALUE"].encode()), (
        "cannot find even the non-secret RETRACE_TEST_VALUE in the trace bytes; "
        "teach conftest.searchable_views how the trace is encoded")
    leaked = [name for name, value in env_secrets.items() if contains(data, value.encode())]
    assert not leaked, f"secret values written to the trace: {leaked}"
    redacted = world.inspect(rec.trace)["env_redacted"]
    assert set(SECRET_NAMES) <= set(redacted), redacted
    assert "RETRACE_TEST_VALUE" not in redacted
    assert "PATH" not in redacted
    assert_same_run(rec, world.replay(rec.trace))
