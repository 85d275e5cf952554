"""The pytest plugin (entry point `retrace`): record tests, check recordings.

Registered on install through the `pytest11` entry point and inactive unless
asked for (docs/pytest.md):

    pytest --retrace-record=DIR     run each test recorded; keep the traces of
                                    the tests that fail as DIR/<nodeid>.retrace
    pytest --retrace-check PATHS    each *.retrace file under PATHS is a test
                                    whose outcome is `retrace check`'s

Recording runs each test in its own recorded pytest process (`retrace record
-m retrace.pytest_plugin NODEID ...`, which runs pytest): Retrace patches the
whole interpreter before the program starts, and a replay needs the run from
its start, fixtures included. The child sends its test reports back through a
file; the parent re-emits them as its own, so terminal output, -x and the
exit status behave as usual. A failed test's exception is raised again once
the child's pytest has finished, so the recorded run ends with it as its
uncaught exception: `retrace check` and `retrace debug --at-crash` then see
the test's failure as the crash.
"""
import codecs
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

import pytest

# Set in the recorded child: the file that receives its test reports.
CHILD_ENV = "RETRACE_PYTEST_CHILD"
MAX_NAME = 150
REWRITE_WARNING = ("ignore:Module already imported so cannot be rewritten; retrace"
                   ":pytest.PytestAssertRewriteWarning")

# `retrace check` exit statuses (retrace._run): the others are failures
FIXED, NOTHING_TO_CHECK = 0, 4


def pytest_addoption(parser):
    group = parser.getgroup("retrace", "Retrace record and replay")
    group.addoption("--retrace-record", metavar="DIR", default=None,
                    help="run each test in a recorded subprocess; keep the recordings of "
                         "failing tests as DIR/<nodeid>.retrace")
    group.addoption("--retrace-check", action="store_true", default=False,
                    help="collect *.retrace files as tests whose outcome is `retrace check`'s "
                         "(fixed passes, reproduced and diverged fail)")
    parser.addini("retrace_check", type="bool", default=False,
                  help="collect *.retrace files as tests, as --retrace-check does")


def pytest_configure(config):
    if os.environ.get(CHILD_ENV):
        return      # a recorded child runs its test plainly
    directory = config.getoption("retrace_record")
    if directory:
        config.pluginmanager.register(Recorder(config, directory), "retrace-recorder")


def _check_enabled(config):
    return config.getoption("retrace_check") or config.getini("retrace_check")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".retrace" and _check_enabled(parent.config):
        return RecordingFile.from_parent(parent, path=file_path)
    return None


# ---- recording --------------------------------------------------------------

def trace_name(nodeid):
    """A file name for a test id, safe in a shell: "::" becomes "__", any
    other run of characters but letters, digits, "_", "." and "-" becomes
    "_"; a long id is cut and keeps a checksum of the whole."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__")).lstrip("_.") or "test"
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME]}-{zlib.crc32(nodeid.encode()):08x}"
    return name + ".retrace"


def debug_commands(trace):
    return (f"recorded by retrace: {trace}\n"
            f"  retrace debug {trace} --at-crash    # debug it, starting at the failure\n"
            f"  retrace replay {trace}              # replay the test run\n"
            f"  retrace check {trace}               # is the failure fixed?")


class Recorder:
    """--retrace-record: runs each test in a recorded child pytest process."""

    def __init__(self, config, directory):
        self.config = config
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.basetemp = tempfile.mkdtemp(prefix="retrace-pytest-")
        self.timings = []     # (nodeid, wall seconds, seconds inside pytest's phases)
        self.kept = []

    def pytest_report_header(self, config):
        return [f"retrace: each test runs in a recorded subprocess; "
                f"failing tests keep their trace in {self.dir}"]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if isinstance(item, RecordingItem):
            return None       # checking a recording is not recorded
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in self.run_recorded(item):
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def child_args(self, item, index):
        config = self.config
        # retrace is imported before pytest starts: pytest would warn that it
        # cannot rewrite the asserts of this plugin package.
        args = [item.nodeid, "-p", "no:cacheprovider", "-W", REWRITE_WARNING,
                "--rootdir", str(config.rootpath),
                "--basetemp", os.path.join(self.basetemp, str(index))]
        if config.inipath:
            args += ["-c", str(config.inipath)]
        for plugin in config.option.plugins or ():
            args += ["-p", plugin]
        for override in config.option.override_ini or ():
            args += ["-o", override]
        args += ["--import-mode", config.option.importmode]
        return args

    def run_recorded(self, item):
        trace = os.path.join(self.dir, trace_name(item.nodeid))
        self.remove(trace)      # and what an earlier run left
        fd, report_path = tempfile.mkstemp(prefix="reports-", suffix=".json", dir=self.basetemp)
        os.close(fd)
        env = dict(os.environ, **{CHILD_ENV: report_path})
        env.pop("PYTEST_CURRENT_TEST", None)
        # A module, not -c code: replay then runs this installed module, never
        # code stored in the trace.
        cmd = [sys.executable, "-m", "retrace", "record", "-o", trace, "-m", __name__,
               *self.child_args(item, len(self.timings))]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.config.rootpath, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
        with open(report_path) as f:
            text = f.read()
        os.remove(report_path)
        try:
            data = json.loads(text) if text else []
        except ValueError:      # the child died while writing them
            data = []
        reports = [self.config.hook.pytest_report_from_serializable(config=self.config, data=d)
                   for d in map(_tuple_longrepr, data)]
        if not any(r.when == "teardown" for r in reports):
            reports.append(self.child_died(item, proc))
        self.timings.append((item.nodeid, wall, sum(r.duration for r in reports)))

        failed = [r for r in reports if r.failed]
        if failed:
            self.kept.append(trace)
            _add_section(failed[0], "retrace", debug_commands(trace))
        else:
            self.remove(trace)
        return reports

    def remove(self, trace):
        """Delete a trace and those of its forked children (TRACE.PID)."""
        base = os.path.basename(trace)
        for name in os.listdir(self.dir):
            if name == base or name.startswith(base + "."):
                os.remove(os.path.join(self.dir, name))

    def child_died(self, item, proc):
        """The report of a child that ended without reporting the test."""
        from _pytest.reports import TestReport
        how = (f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        text = (f"the recorded pytest process {how} without reporting this test\n"
                f"--- its stdout ---\n{proc.stdout.decode(errors='replace')}"
                f"--- its stderr ---\n{proc.stderr.decode(errors='replace')}")
        return TestReport(item.nodeid, item.location, {}, "failed", text, "call")

    def pytest_terminal_summary(self, terminalreporter):
        if not self.timings:
            return
        tr = terminalreporter
        tr.section("retrace")
        wall = sum(t[1] for t in self.timings)
        inside = sum(t[2] for t in self.timings)
        n = len(self.timings)
        tr.write_line(f"{n} test(s) recorded, each in its own subprocess: {wall:.2f} s wall, "
                      f"{inside:.2f} s of it in the tests' setup, call and teardown "
                      f"(as pytest timed them under recording)")
        tr.write_line(f"per test: {wall / n:.3f} s wall on average, of which "
                      f"{(wall - inside) / n:.3f} s is the subprocess: interpreter and pytest "
                      f"start-up, collection, and starting and ending the recording")
        shown = sorted(self.timings, key=lambda t: -t[1])
        if tr.verbosity < 1:
            shown = shown[:10]
        tr.write_line("wall s   tests s  test")
        for nodeid, w, i in shown:
            tr.write_line(f"{w:7.3f}  {i:7.3f}  {nodeid}")
        if len(shown) < n:
            tr.write_line(f"(the {len(shown)} slowest; -v lists all {n})")
        if self.kept:
            tr.write_line(f"kept {len(self.kept)} recording(s) of failing tests:")
            for trace in self.kept:
                tr.write_line(f"  retrace debug {trace} --at-crash")

    def pytest_unconfigure(self, config):
        shutil.rmtree(self.basetemp, ignore_errors=True)


def _tuple_longrepr(data):
    """A skip's longrepr is a (path, line, reason) tuple, which JSON made a list."""
    if isinstance(data.get("longrepr"), list):
        data["longrepr"] = tuple(data["longrepr"])
    return data


def _add_section(report, title, text):
    longrepr = report.longrepr
    if hasattr(longrepr, "addsection"):
        longrepr.addsection(title, text)
    else:
        report.sections.append((title, text))


# ---- the recorded child -----------------------------------------------------

class _Child:
    """Plugin of the recorded child process."""

    def __init__(self):
        self.reports = []
        self.failure = None
        self.crash_index = None
        self.divergence = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        from . import _engine
        index = _engine.event_index()
        outcome = yield
        report = outcome.get_result()
        if report.failed and call.excinfo is not None and self.failure is None:
            self.failure, self.crash_index = call.excinfo.value, index
            self.failure.__traceback__ = _without_pytest_frames(self.failure.__traceback__)

    def pytest_runtest_logreport(self, report):
        self.reports.append(report)

    def _note_divergence(self, excinfo):
        from .errors import ReplayDivergence
        if excinfo is not None and isinstance(excinfo.value, ReplayDivergence):
            self.divergence = self.divergence or excinfo.value

    def pytest_exception_interact(self, node, call, report):
        self._note_divergence(call.excinfo)

    def pytest_internalerror(self, excrepr, excinfo):
        self._note_divergence(excinfo)

    def pytest_sessionfinish(self, session):
        config = session.config
        data = [config.hook.pytest_report_to_serializable(config=config, report=r)
                for r in self.reports]
        with open(os.environ[CHILD_ENV], "w") as f:
            json.dump(data, f)


def _without_pytest_frames(tb):
    """The traceback from the first frame that is not pytest's or pluggy's:
    the recorded run's traceback starts in the test."""
    import _pytest
    import pluggy
    machinery = tuple(os.path.dirname(m.__file__) + os.sep for m in (pytest, _pytest, pluggy))
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(machinery):
        first = first.tb_next
    return first or tb


def _read_test_sources_live():
    """pytest's assertion rewriter reads test modules and conftest files itself,
    before they are imported; by default those reads would be recorded data.
    They are code: read them live, like every import, so that `retrace check`
    runs the current tests. No .pyc is written, so the recorded calls do not
    depend on what the cache held."""
    from . import _session
    sys.dont_write_bytecode = True
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return
    for name in ("_rewrite_test", "_read_pyc"):
        real = getattr(rewrite, name, None)
        if real is not None:
            def live(*args, _real=real, **kwargs):
                with _session.internal():
                    return _real(*args, **kwargs)
            setattr(rewrite, name, live)


def child_main():
    """The program a recorded child runs: `pytest ARGS`, then the test's
    failure raised again as the run's uncaught exception."""
    _read_test_sources_live()
    # A DNS lookup (getaddrinfo) imports encodings.idna in C on first use,
    # during recording only: replay returns the recorded answer. pytest walks
    # sys.modules when it reports a failure (inspect.getmodule), so the two
    # runs must load the same modules: load the codec now, in both.
    codecs.lookup("idna")
    child = _Child()
    status = pytest.main(sys.argv[1:], plugins=[child])
    # pytest catches everything, a replay divergence too: it must end the run.
    if child.divergence is not None:
        raise child.divergence
    if child.failure is not None:
        # Where the test failed, not where it is raised again (retrace check).
        child.failure._retrace_crash_index = child.crash_index
        raise child.failure
    sys.exit(int(status))


# ---- checking recordings ------------------------------------------------------

class RecordingFile(pytest.File):
    def collect(self):
        yield RecordingItem.from_parent(self, name="check")


class CheckFailed(Exception):
    """`retrace check` says the recorded failure is still there (or worse)."""


class RecordingItem(pytest.Item):
    """One recording: `retrace check FILE`. Fixed passes; reproduced and
    diverged fail with check's report; a recording of a run that did not fail
    is skipped; an unreadable trace is an error. A recording made by another
    Python version is skipped: it can only be replayed by that version."""

    def runtest(self):
        from . import _session
        from .errors import TraceCorrupt
        try:
            header = _session.read_header(str(self.path))
        except (TraceCorrupt, OSError) as exc:
            raise CheckFailed(f"{self.path}: unreadable recording: {exc}")
        recorded = tuple(header["version_info"][:2])
        if recorded != tuple(sys.version_info[:2]):
            self.skip(f"recorded with Python {'.'.join(map(str, recorded))}; "
                        f"replay needs the same version")
        proc = subprocess.run([sys.executable, "-m", "retrace", "check", str(self.path)],
                              cwd=self.config.rootpath, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={k: v for k, v in os.environ.items() if k != CHILD_ENV})
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        verdict = next((line for line in err.splitlines()
                        if line.startswith("retrace check: ")), None)
        if proc.returncode == FIXED and verdict:
            return
        if proc.returncode == NOTHING_TO_CHECK:
            self.skip(verdict or "the recorded run did not fail: nothing to check")
        raise CheckFailed(f"{verdict or 'retrace check failed'} (exit status "
                          f"{proc.returncode})\n--- the replay's stdout ---\n{out}"
                          f"--- its stderr ---\n{err}")

    def skip(self, reason):
        # Reported at the recording, not at this line of the plugin.
        raise pytest.skip.Exception(reason, _use_item_location=True)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"retrace check {self.path.name}"


if __name__ == "__main__":
    child_main()
