"""Helpers for the end-to-end tests of record and replay.

Everything here drives the real CLI (`python -m retrace ...`) in a child
process, inside a per-test directory tree (a "world"), with a timeout: a hang
is a failure, and so is a child killed by a signal.

A world holds a private copy of tests/programs, a working directory for the
recordings, a separate directory to replay from, the TMPDIR of the recording
and the TMPDIR of the replay. `world.case(name)` prepares the inputs of one
program in tests/programs (data files, stdin, env, argv) and returns a Case
that can run it plainly, record it, and whose recordings can be replayed.
"""
import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PROGRAMS_DIR = TESTS / "programs"
PY = sys.executable
TIMEOUT = float(os.environ.get("RETRACE_TEST_TIMEOUT", "60"))

# Every program in tests/programs that the core suite records and replays.
PROGRAMS = ["clock", "randomness", "process", "filesystem", "stdin", "hashseed",
            "crash", "exit7", "pkgdemo"]
# The ones whose output differs between two runs on the same inputs. (stdin's
# output is decided by what the test feeds it, so it is not among them.)
NONDETERMINISTIC = [p for p in PROGRAMS if p != "stdin"]

# POSIX TZ strings need no tzdata. The replay-side one is a different offset.
RECORD_TZ = "AAA+03:30"
OTHER_TZ = "BBB-05:45"

# Variables that must survive even a scrubbed environment: the ASan run
# preloads the sanitizer runtime, without which the engine cannot load.
SANITIZER_VARS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")

TRACEBACK = b"Traceback (most recent call last)"


# --------------------------------------------------------------------------
# Running commands


@dataclasses.dataclass(repr=False)
class Run:
    cmd: list
    code: int
    out: bytes
    err: bytes
    seconds: float
    trace: Path = None  # the trace file, for a recording

    def __repr__(self):
        return f"<Run status {self.code}: {' '.join(map(str, self.cmd[-4:]))}>"

    def describe(self):
        return (f"command: {' '.join(map(str, self.cmd))}\nexit status: {self.code}\n"
                f"--- stdout ---\n{_show(self.out)}\n--- stderr ---\n{_show(self.err)}")


def _show(data, limit=6000):
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more chars)"


def _kill_group(proc):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(cmd, *, cwd, env, stdin=None, timeout=TIMEOUT):
    """Run cmd to completion. stdin: bytes to feed, or None for /dev/null.

    Fails the test if it takes longer than `timeout` or dies from a signal.
    The child gets its own session so that a timeout kills all it started.
    """
    cmd = [str(c) for c in cmd]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, start_new_session=True,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"hang: no exit within {timeout:.0f} s\n"
                    + Run(cmd, None, out, err, timeout).describe(), pytrace=False)
    result = Run(cmd, proc.returncode, out, err, time.monotonic() - start)
    if result.code < 0:
        pytest.fail(f"killed by signal {signal.Signals(-result.code).name}\n"
                    + result.describe(), pytrace=False)
    return result


def retrace_cmd(*args):
    return [PY, "-m", "retrace", *map(str, args)]


def scrubbed_env(**extra):
    """An environment with only PATH (and the sanitizer settings, if any)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({k: os.environ[k] for k in SANITIZER_VARS if k in os.environ})
    env.update(extra)
    return env


@functools.lru_cache(maxsize=None)
def unshare_net_works():
    try:
        return subprocess.run(["unshare", "-n", "true"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def unshare_net():
    """The command prefix that runs a command without any network."""
    if not unshare_net_works():
        pytest.skip("`unshare -n` is not permitted here")
    return ["unshare", "-n"]


# --------------------------------------------------------------------------
# Worlds and cases


@dataclasses.dataclass
class Case:
    world: "World"
    name: str
    target: list          # [script path] or ["-m", "module"]
    args: list
    cwd: Path
    env_extra: dict       # set at record time only
    stdin: bytes = None   # fed at record time; replays get /dev/null
    expect_code: int = 0  # exit status of a plain run
    read_paths: list = dataclasses.field(default_factory=list)  # inputs it reads
    out_dir: Path = None  # where it writes

    @property
    def command(self):
        return [*map(str, self.target), *map(str, self.args)]

    def env(self, **extra):
        return self.world.record_env(**{**self.env_extra, **extra})

    def plain(self, **env):
        """Run the program with plain python (no retrace at all)."""
        return run([PY, *self.command], cwd=self.cwd, env=self.env(**env), stdin=self.stdin)

    def record(self, trace=None, prefix=(), **env):
        """`retrace record` the program; the result's .trace is the file."""
        trace = Path(trace) if trace else self.world.new_trace(self.name)
        if self.target[0] == "-m":
            cmd = retrace_cmd("record", "-o", trace, *self.command)
        else:
            cmd = retrace_cmd("record", "-o", trace, "--", *self.command)
        result = run([*prefix, *cmd], cwd=self.cwd, env=self.env(**env), stdin=self.stdin)
        result.trace = trace
        return result

    def hook_record(self, trace=None, **env):
        """Record through the installed .pth hook: RETRACE_RECORDING=FILE python ..."""
        trace = Path(trace) if trace else self.world.new_trace(self.name)
        result = self.plain(RETRACE_RECORDING=str(trace), **env)
        result.trace = trace
        return result


class World:
    def __init__(self, root):
        self.root = Path(root)
        self.programs = self.root / "programs"
        shutil.copytree(PROGRAMS_DIR, self.programs,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.work = self.root / "work"            # cwd of recordings
        self.elsewhere = self.root / "elsewhere"  # cwd of "foreign" replays
        self.tmp_record = self.root / "tmp-record"
        self.tmp_replay = self.root / "tmp-replay"
        self.traces = self.root / "traces"
        for d in (self.work, self.elsewhere, self.tmp_record, self.tmp_replay, self.traces):
            d.mkdir()
        self._count = 0

    def new_trace(self, stem):
        self._count += 1
        return self.traces / f"{stem}-{self._count}.retrace"

    @staticmethod
    def _base_env(**extra):
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONHASHSEED" and not k.startswith("RETRACE_")}
        env["TZ"] = RECORD_TZ
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def record_env(self, **extra):
        return self._base_env(TMPDIR=self.tmp_record, **extra)

    def replay_env(self, **extra):
        """The default replay environment: this machine's, without anything the
        case set at record time, and with a different TMPDIR."""
        return self._base_env(TMPDIR=self.tmp_replay, **extra)

    def retrace(self, *args, cwd=None, env=None, stdin=None, prefix=()):
        return run([*prefix, *retrace_cmd(*args)], cwd=cwd or self.work,
                   env=env if env is not None else self.replay_env(), stdin=stdin)

    def replay(self, trace, **kw):
        return self.retrace("replay", trace, **kw)

    def inspect(self, trace):
        result = self.retrace("inspect", trace, "--json")
        assert result.code == 0, result.describe()
        assert not result.err, result.describe()
        try:
            return json.loads(result.out)
        except ValueError:
            pytest.fail("inspect --json printed invalid JSON\n" + result.describe())

    # -- cases --------------------------------------------------------------

    def case(self, name):
        return getattr(self, "_case_" + name)()

    def _script(self, name, args=(), **kw):
        kw.setdefault("cwd", self.work)
        kw.setdefault("env_extra", {})
        return Case(self, name, [self.programs / f"{name}.py"], list(args), **kw)

    def _case_clock(self):
        return self._script("clock")

    def _case_randomness(self):
        return self._script("randomness")

    def _case_process(self):
        return self._script("process", ["alpha", secrets.token_hex(4)],
                            env_extra={"RETRACE_TEST_VALUE": "value-" + secrets.token_hex(12)})

    def _case_filesystem(self):
        data = self.root / "data.txt"
        lines = [f"line {i} {secrets.token_hex(secrets.randbelow(20) + 4)}\n"
                 for i in range(secrets.randbelow(5) + 3)]
        data.write_text("".join(lines))
        tree = self.root / "tree"
        tree.mkdir()
        for _ in range(secrets.randbelow(4) + 2):
            (tree / f"f-{secrets.token_hex(3)}").write_bytes(os.urandom(secrets.randbelow(300)))
        sub = tree / f"d-{secrets.token_hex(3)}" / f"d-{secrets.token_hex(3)}"
        sub.mkdir(parents=True)
        (sub / f"leaf-{secrets.token_hex(3)}").write_text(secrets.token_hex(8))
        out = self.root / "out"
        out.mkdir()
        case = self._script("filesystem", [data, tree, out], read_paths=[data, tree])
        case.out_dir = out
        return case

    def _case_stdin(self):
        feed = f"user-{secrets.token_hex(4)}\n" + "".join(
            f"row {i}: {secrets.token_hex(6)}\n" for i in range(secrets.randbelow(4) + 2))
        return Case(self, "stdin", [self.programs / "stdin_reader.py"], [], self.work, {},
                    stdin=feed.encode())

    def _case_hashseed(self):
        return self._script("hashseed")

    def _case_crash(self):
        return self._script("crash", expect_code=1)

    def _case_exit7(self):
        return self._script("exit7", expect_code=7)

    def _case_pkgdemo(self):
        return Case(self, "pkgdemo", ["-m", "pkgdemo"], ["--flag", secrets.token_hex(4)],
                    cwd=self.programs, env_extra={})


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


# --------------------------------------------------------------------------
# Comparing runs


def _diff(a, b):
    return "\n".join(difflib.unified_diff(
        _show(a, 10**6).splitlines(), _show(b, 10**6).splitlines(),
        "recorded", "replayed", lineterm="", n=2))[:6000]


def replay_edited(world, trace, name, old, new):
    """Replay `trace` after replacing `old` by `new` in the world's copy of
    tests/programs/NAME.py: the replay must stop with a divergence."""
    program = world.programs / f"{name}.py"
    source = program.read_text()
    assert old in source, old
    program.write_text(source.replace(old, new))
    replayed = world.replay(trace)
    assert replayed.code == 3, replayed.describe()
    return replayed


def assert_same_run(recorded, replayed, what="replay"):
    """The replay printed exactly what the recording printed and exited alike."""
    problems = []
    if replayed.out != recorded.out:
        problems.append("stdout differs:\n" + _diff(recorded.out, replayed.out))
    if replayed.err != recorded.err:
        problems.append("stderr differs:\n" + _diff(recorded.err, replayed.err))
    if replayed.code != recorded.code:
        problems.append(f"exit status {replayed.code}, recorded {recorded.code}")
    if problems:
        pytest.fail(f"{what} does not match the recording\n" + "\n".join(problems)
                    + "\n=== recording ===\n" + recorded.describe()
                    + "\n=== replay ===\n" + replayed.describe(), pytrace=False)


def _labels(out):
    """The "label:" part of each "label: value" line the programs print."""
    return [line.split(b":", 1)[0] for line in out.splitlines()]


def _mask(err):
    """stderr with the parts that vary from run to run (numbers, hex) masked.
    A run of hex digits and dots is one token, whatever digits it happens to
    have: 1795875236.944871 and 1795875236.9448 mask alike."""
    return re.sub(rb"[0-9a-f.]*[0-9][0-9a-f.]*(e[-+]?\d+)?", b"<v>", err)


def assert_same_shape(plain, recorded):
    """Recording did not change what the program does: same exit status, same
    lines of output, same stderr (traceback included) up to the values that
    differ from run to run anyway."""
    assert recorded.code == plain.code, (
        f"exit status under record differs from a plain run ({plain.code})\n"
        + recorded.describe())
    assert _labels(recorded.out) == _labels(plain.out), (
        "stdout under record has different lines than a plain run:\n"
        + _diff(plain.out, recorded.out))
    assert _mask(recorded.err) == _mask(plain.err), (
        "stderr under record differs from a plain run:\n" + _diff(plain.err, recorded.err))


def retrace_lines(err):
    return [line for line in err.decode("utf-8", "replace").splitlines()
            if line.startswith("retrace:")]


def assert_error_exit(result, *patterns):
    """Exit status 2, nothing on stdout, stderr starting with "retrace: error:"
    and naming the problem (every regex in `patterns` matches, ignoring case);
    never a Python traceback."""
    assert result.code == 2, result.describe()
    assert result.err.startswith(b"retrace: error:"), result.describe()
    assert TRACEBACK not in result.err, result.describe()
    assert result.out == b"", result.describe()
    text = result.err.decode("utf-8", "replace")
    for pattern in patterns:
        assert re.search(pattern, text, re.I), f"no /{pattern}/ in the message\n{result.describe()}"


def assert_prefix(replayed_out, recorded_out):
    """What a failed replay printed before stopping must be what the recorded
    run printed at that point: never a wrong value."""
    assert recorded_out.startswith(replayed_out), (
        "replay printed output the recording does not have:\n"
        + _diff(recorded_out, replayed_out))


# --------------------------------------------------------------------------
# Files


def snapshot(root):
    """Names, types, sizes, mtimes and content hashes of everything under root
    (bytecode caches excluded: importing may legitimately write them)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, root)
        state[rel + "/"] = sorted(dirnames + filenames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            state[os.path.join(rel, name)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state


def assert_unchanged(before, after, what="replay"):
    if before == after:
        return
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    pytest.fail(f"{what} changed files: added {added}, removed {removed}, "
                f"changed {changed}", pytrace=False)


def searchable_views(data):
    """The raw bytes of a trace plus every zlib or gzip stream found in it, so
    that a value is found whether or not the trace is compressed."""
    yield data
    for m in re.finditer(rb"\x78[\x01\x5e\x9c\xda]|\x1f\x8b", data):
        wbits = 31 if data[m.start()] == 0x1F else 15
        try:
            yield zlib.decompressobj(wbits).decompress(data[m.start():])
        except zlib.error:
            pass


def contains(data, needle):
    return any(needle in view for view in searchable_views(data))


# --------------------------------------------------------------------------
# The .pth hook


def pth_files():
    site = Path(sysconfig.get_path("purelib"))
    return {p: p.read_bytes() for p in site.glob("*.pth")}


@contextlib.contextmanager
def pth_guard():
    """Restores this venv's .pth files as they were, whatever the test did."""
    before = pth_files()
    try:
        yield before
    finally:
        after = pth_files()
        for path in set(after) - set(before):
            path.unlink()
        for path, content in before.items():
            if after.get(path) != content:
                path.write_bytes(content)


@contextlib.contextmanager
def hook_installed(world):
    """`retrace install` into this venv; uninstalled again on the way out."""
    with pth_guard():
        # a hook left by an interrupted run would make `install` a no-op (pth_guard puts it back)
        world.retrace("uninstall")
        before = pth_files()
        result = world.retrace("install")
        assert result.code == 0, result.describe()
        added = set(pth_files()) - set(before)
        assert added, "retrace install wrote no .pth file into " + sysconfig.get_path("purelib")
        try:
            yield added
        finally:
            result = world.retrace("uninstall")
            assert result.code == 0, result.describe()
            assert pth_files() == before, "retrace uninstall left .pth changes behind"


@pytest.fixture
def installed_hook(world):
    with hook_installed(world) as added:
        yield added


@pytest.fixture
def pg_cluster():
    """A throwaway PostgreSQL server of this test's own (tests/postgres.py);
    the test may stop it (replay must not need it)."""
    from postgres import Cluster
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()
