"""`retrace dap`: full Debug Adapter Protocol sessions against the adapter as a
subprocess, on recordings made here. A small DAP client (Content-Length framing)
plays the part of VS Code. Expected values come from the recorded runs
themselves (what they printed, what the LLM provider really sent), never from
the adapter.
"""
import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import PY, TIMEOUT, TESTS

sys.path.insert(0, str(TESTS / "e2e"))
from llm_recording import record_crash  # noqa: E402

LOOP = textwrap.dedent('''\
    import random
    import time

    items = []
    big = list(range(500))


    def add(value):
        items.append(value)              # ADD
        return len(items)                # RETURN


    for i in range(6):
        x = random.randrange(1000)
        n = add(x)                       # CALL
        print(f"x {i} {x}")              # PRINT
    print("sum", sum(items), time.time() > 0)  # END
''')

RAISES = textwrap.dedent('''\
    def parse(text):
        return int(text)                 # PARSE


    for text in ["1", "x", "3"]:
        try:
            parse(text)
        except ValueError:
            print("bad", text)
''')


def line_of(source, marker):
    for number, line in enumerate(source.splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(f"no {marker!r} in the program")


class DAPClient:
    """Drives `retrace dap` over its stdin and stdout."""

    def __init__(self, cwd, stderr_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
        self.stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen([PY, "-m", "retrace", "dap"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        self.stderr_path = stderr_path
        self.seq = 0
        self.messages = queue.Queue()
        self.events = []          # every event received, in order
        self.responses = {}
        self.seqs = []            # seq of every message received
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        stream = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    self.messages.put(None)
                    return
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def _pump(self, timeout):
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"retrace dap said nothing for {timeout:.0f} s\n{self.log()}",
                        pytrace=False)
        if message is None:
            pytest.fail(f"retrace dap closed its output\n{self.log()}", pytrace=False)
        self.seqs.append(message["seq"])
        if message["type"] == "event":
            self.events.append(message)
        elif message["type"] == "response":
            self.responses[message["request_seq"]] = message

    def log(self):
        self.stderr.flush()
        return "--- adapter stderr ---\n" + Path(self.stderr_path).read_text(errors="replace")

    def send(self, command, **arguments):
        self.seq += 1
        message = {"seq": self.seq, "type": "request", "command": command,
                   "arguments": arguments}
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return self.seq

    def response(self, seq, timeout=TIMEOUT):
        while seq not in self.responses:
            self._pump(timeout)
        return self.responses.pop(seq)

    def request(self, command, **arguments):
        """The body of a successful response (the test fails otherwise)."""
        response = self.response(self.send(command, **arguments))
        assert response["success"], f"{command} failed: {response.get('message')}\n{self.log()}"
        return response["body"]

    def error(self, command, **arguments):
        """The message of a failed response (the test fails if it succeeded)."""
        response = self.response(self.send(command, **arguments))
        assert not response["success"], f"{command} should have failed: {response}"
        return response["message"]

    def wait_event(self, name, after=0, timeout=TIMEOUT):
        """The first `name` event received after the first `after` events."""
        while True:
            for event in self.events[after:]:
                if event["event"] == name:
                    return event.get("body", {})
            self._pump(timeout)

    def move(self, command, **arguments):
        """A request that moves the replay, and the stopped or terminated event after it."""
        mark = len(self.events)
        self.request(command, **arguments)
        while True:
            for event in self.events[mark:]:
                if event["event"] in ("stopped", "terminated"):
                    return event["event"], event.get("body", {})
            self._pump(TIMEOUT)

    def output(self, category=None):
        return "".join(e["body"]["output"] for e in self.events
                       if e["event"] == "output"
                       and (category is None or e["body"].get("category") == category))

    def close(self):
        if self.proc.poll() is None:
            try:
                seq = self.send("disconnect", terminateDebuggee=True)
                self.response(seq, timeout=30)
            except (OSError, pytest.fail.Exception):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
            pytest.fail("retrace dap did not exit after disconnect", pytrace=False)
        finally:
            self.proc.stdout.close()
            self.proc.stdin.close()
            self.stderr.close()

    # -- a session ------------------------------------------------------------

    def start(self, recording, breakpoints=(), exceptions=("uncaught",), **launch):
        """initialize, launch, breakpoints, configurationDone; returns the
        first stopped or terminated event."""
        self.request("initialize", clientID="test", adapterID="retrace",
                            linesStartAt1=True, columnsStartAt1=True, pathFormat="path",
                            supportsProgressReporting=True)
        self.request("launch", recording=str(recording), **launch)
        self.wait_event("initialized")
        for file, lines in breakpoints:
            self.request("setBreakpoints", source={"path": str(file)},
                         breakpoints=[dict(line=line) if isinstance(line, int) else line
                                      for line in lines])
        self.request("setExceptionBreakpoints", filters=list(exceptions))
        return self.move("configurationDone")

    def top(self, thread_id):
        frames = self.request("stackTrace", threadId=thread_id)["stackFrames"]
        user = [f for f in frames if f["source"].get("presentationHint") != "deemphasize"]
        return (user or frames)[0]

    def locals(self, frame_id):
        scopes = self.request("scopes", frameId=frame_id)["scopes"]
        ref = next(s for s in scopes if s["name"] == "Locals")["variablesReference"]
        return {v["name"]: v for v in self.request("variables", variablesReference=ref)["variables"]}

    def evaluate(self, expression, frame_id, context="watch"):
        return self.request("evaluate", expression=expression, frameId=frame_id,
                            context=context)


@pytest.fixture
def dap(tmp_path):
    clients = []

    def connect(cwd=tmp_path):
        client = DAPClient(cwd, tmp_path / f"adapter-{len(clients)}.stderr")
        clients.append(client)
        return client
    yield connect
    for client in clients:
        client.close()


def record(tmp_path, name, source):
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    trace = tmp_path / f"{name}.retrace"
    result = subprocess.run([PY, "-m", "retrace", "record", "-o", str(trace), str(script)],
                            cwd=tmp_path, capture_output=True, timeout=TIMEOUT,
                            stdin=subprocess.DEVNULL)
    return script, trace, result


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """The LOOP program recorded once: (script, trace, {i: x} it printed, stdout)."""
    script, trace, result = record(tmp_path_factory.mktemp("loop"), "loop", LOOP)
    assert result.returncode == 0, result.stderr.decode()
    printed = {int(i): int(x) for i, x in re.findall(rb"^x (\d+) (\d+)$", result.stdout, re.M)}
    assert len(printed) == 6, result.stdout
    return script, trace, printed, result.stdout.decode()


def at_print(dap, loop, **breakpoint):
    """A session on the LOOP recording with one breakpoint on its PRINT line."""
    script, trace = loop[:2]
    client = dap()
    kind, stop = client.start(trace, breakpoints=[
        (script, [{"line": line_of(LOOP, "# PRINT"), **breakpoint}])], stopAtCrash=False)
    return client, kind, stop


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    return record_crash(tmp_path_factory.mktemp("llm"), PY)


# --------------------------------------------------------------------------
# Protocol


def test_initialize_answers_the_capabilities_and_errors_are_responses(dap):
    client = dap()
    caps = client.request("initialize", clientID="test", adapterID="retrace")
    for capability in ("supportsStepBack", "supportsConfigurationDoneRequest",
                       "supportsConditionalBreakpoints", "supportsHitConditionalBreakpoints",
                       "supportsLogPoints", "supportsFunctionBreakpoints",
                       "supportsEvaluateForHovers", "supportsExceptionInfoRequest",
                       "supportsSteppingGranularity", "supportsRestartFrame",
                       "supportsGotoTargetsRequest", "supportsTerminateRequest",
                       "supportsDelayedStackTraceLoading", "supportsValueFormattingOptions",
                       "supportsCancelRequest"):
        assert caps.get(capability) is True, capability
    assert {f["filter"] for f in caps["exceptionBreakpointFilters"]} == {"raised", "uncaught"}
    assert "does not support 'flyToTheMoon'" in client.error("flyToTheMoon")
    assert "before a recording was launched" in client.error("threads")
    assert client.seqs == list(range(1, len(client.seqs) + 1))   # one counter, no gaps


def test_a_bad_recording_is_an_error_on_launch(dap, tmp_path):
    client = dap()
    client.request("initialize", clientID="test", adapterID="retrace")
    missing = tmp_path / "nothing-here.retrace"
    assert str(missing) in client.error("launch", recording=str(missing))
    assert "recording" in client.error("launch")
    garbage = tmp_path / "garbage.retrace"
    garbage.write_bytes(b"this is not a trace at all\n" * 10)
    message = client.error("launch", recording=str(garbage))
    assert "garbage.retrace" in message or "trace" in message.lower(), message
    assert "internal error" not in message
    # still answering
    assert client.request("initialize", clientID="test", adapterID="retrace")


# --------------------------------------------------------------------------
# The llm_classify crash: the session a user has in VS Code


def test_llm_crash_session_step_back_to_the_provider_reply(dap, llm):
    trace, sent = llm
    classify = trace.parent / "llm_classify" / "classify.py"
    source = classify.read_text()
    loads_line = line_of(source, "data = json.loads(response)")
    chat_line = line_of(source, "response = llm.chat(")
    client = dap(trace.parent)

    kind, stop = client.start(trace, breakpoints=[(classify, [chat_line])], stopAtCrash=True)
    assert kind == "stopped" and stop["reason"] == "exception", stop
    assert "JSONDecodeError" in stop.get("description", "") + stop.get("text", "")
    threads = client.request("threads")["threads"]
    assert stop["threadId"] in [t["id"] for t in threads]
    top = client.top(stop["threadId"])
    assert (top["name"], top["line"]) == ("classify_intent", loads_line), top
    assert top["source"]["path"] == str(classify)

    info = client.request("exceptionInfo", threadId=stop["threadId"])
    assert info["exceptionId"].endswith("JSONDecodeError")
    assert info["breakMode"] == "unhandled"
    assert "Expecting value" in info["description"]
    assert "classify_intent" in info["details"]["stackTrace"]

    kind, stop = client.move("stepBack", threadId=stop["threadId"])
    assert kind == "stopped", stop
    top = client.top(stop["threadId"])
    assert (top["name"], top["line"]) == ("classify_intent", loads_line), top
    local = client.locals(top["id"])
    assert local["response"]["value"] == repr(sent), (local["response"], sent)
    assert local["response"]["type"] == "str"

    kind, stop = client.move("reverseContinue", threadId=stop["threadId"])
    assert (kind, stop["reason"]) == ("stopped", "breakpoint"), stop
    top = client.top(stop["threadId"])
    assert (top["name"], top["line"]) == ("classify_intent", chat_line), top
    assert "response" not in client.locals(top["id"])    # not assigned yet on this line

    client.request("setBreakpoints", source={"path": str(classify)}, breakpoints=[])
    kind, stop = client.move("continue", threadId=stop["threadId"])
    assert (kind, stop.get("reason")) == ("stopped", "exception"), stop   # the crash again
    kind, _ = client.move("continue", threadId=stop["threadId"])
    assert kind == "terminated"
    # the recorded output reached the debug console
    assert re.search(r"router [0-9a-f]{8} handling 40 messages", client.output("stdout"))
    assert "JSONDecodeError" in client.output("stderr")


# --------------------------------------------------------------------------
# Breakpoints


def test_conditional_and_hit_conditional_breakpoints(dap, loop):
    printed = loop[2]
    print_line = line_of(LOOP, "# PRINT")
    client, kind, stop = at_print(dap, loop, condition="i == 4")
    assert (kind, stop["reason"]) == ("stopped", "breakpoint"), stop
    frame = client.top(stop["threadId"])
    assert frame["line"] == print_line
    assert client.evaluate("i", frame["id"])["result"] == "4"
    assert client.evaluate("x", frame["id"])["result"] == str(printed[4])

    # "% 2": every second hit, counted from the start of the replay
    client, kind, stop = at_print(dap, loop, hitCondition="% 2")
    seen = []
    while kind == "stopped":
        frame = client.top(stop["threadId"])
        assert (stop["reason"], frame["line"]) == ("breakpoint", print_line), stop
        i = int(client.evaluate("i", frame["id"])["result"])
        assert client.evaluate("x", frame["id"])["result"] == str(printed[i])
        seen.append(i)
        kind, stop = client.move("continue", threadId=stop["threadId"])
    assert seen == [1, 3, 5]


def test_logpoints_print_the_recorded_values_and_never_stop(dap, loop):
    script, trace, printed, stdout = loop
    client, kind, _ = at_print(dap, loop, logMessage="log {i}:{x}")
    assert kind == "terminated"
    logged = re.findall(r"log (\d+):(\d+)", client.output("console"))
    assert [(int(i), int(x)) for i, x in logged] == sorted(printed.items())
    assert client.output("stdout") == stdout


def test_function_breakpoint_and_stack_paging(dap, loop):
    script, trace, printed, _ = loop
    client = dap()
    caps = client.request("initialize", clientID="test", adapterID="retrace")
    assert caps["supportsFunctionBreakpoints"]
    client.request("launch", recording=str(trace), stopAtCrash=False)
    client.wait_event("initialized")
    result = client.request("setFunctionBreakpoints", breakpoints=[{"name": "add"}])
    assert result["breakpoints"][0]["verified"]
    kind, stop = client.move("configurationDone")
    assert (kind, stop["reason"]) == ("stopped", "function breakpoint"), stop
    thread = stop["threadId"]
    whole = client.request("stackTrace", threadId=thread)
    assert [f["name"] for f in whole["stackFrames"][:2]] == ["add", "<module>"]
    first = client.request("stackTrace", threadId=thread, startFrame=0, levels=1)
    assert [f["name"] for f in first["stackFrames"]] == ["add"]
    assert first["totalFrames"] == whole["totalFrames"]
    rest = client.request("stackTrace", threadId=thread, startFrame=1, levels=20)
    assert rest["stackFrames"][0]["name"] == "<module>"
    assert rest["stackFrames"][0]["line"] == line_of(LOOP, "# CALL")
    named = client.request("stackTrace", threadId=thread, levels=1,
                           format={"line": True, "module": True})
    assert named["stackFrames"][0]["name"] == f"loop.add Line {line_of(LOOP, '# ADD')}"


def test_raised_exception_filter_and_exception_info(dap, tmp_path):
    script, trace, result = record(tmp_path, "raises", RAISES)
    assert result.returncode == 0 and result.stdout == b"bad x\n", result
    client = dap()
    kind, stop = client.start(trace, exceptions=["raised"], stopAtCrash=False)
    assert (kind, stop["reason"]) == ("stopped", "exception"), stop
    frame = client.top(stop["threadId"])
    assert (frame["name"], frame["line"]) == ("parse", line_of(RAISES, "# PARSE"))
    info = client.request("exceptionInfo", threadId=stop["threadId"])
    assert info["exceptionId"] == "ValueError"
    assert info["description"] == "invalid literal for int() with base 10: 'x'"
    assert info["breakMode"] == "always"
    assert client.evaluate("text", frame["id"])["result"] == "'x'"
    kind, _ = client.move("continue", threadId=stop["threadId"])
    assert kind == "terminated"
    assert client.output("stdout") == "bad x\n"


def test_the_end_sends_exited_with_the_exit_status_then_terminated(dap, tmp_path):
    script, trace, result = record(tmp_path, "exit7",
                                   (TESTS / "programs" / "exit7.py").read_text())
    assert result.returncode == 7, result.stderr.decode()
    client = dap()
    kind, _ = client.start(trace, stopAtCrash=False)
    assert kind == "terminated"
    names = [e["event"] for e in client.events]
    assert names.index("exited") < names.index("terminated"), names
    assert client.wait_event("exited")["exitCode"] == 7
    assert client.output("stdout") == result.stdout.decode()


def test_raised_filter_with_just_my_code_stops_in_user_code_only(dap, tmp_path):
    source = (TESTS / "programs" / "debug_raises.py").read_text()
    script, trace, result = record(tmp_path, "debug_raises", source)
    assert result.returncode == 0, result.stderr.decode()
    client = dap()
    kind, stop = client.start(trace, exceptions=["raised"], stopAtCrash=False)
    assert (kind, stop["reason"]) == ("stopped", "exception"), stop
    texts = [client.evaluate("text", client.top(stop["threadId"])["id"])["result"]]
    frame = client.request("stackTrace", threadId=stop["threadId"])["stackFrames"][0]
    assert (frame["name"], frame["line"]) == ("parse", line_of(source, "# PARSE"))
    kind, stop = client.move("continue", threadId=stop["threadId"])
    texts.append(client.evaluate("text", client.top(stop["threadId"])["id"])["result"])
    kind, stop = client.move("reverseContinue", threadId=stop["threadId"])
    texts.append(client.evaluate("text", client.top(stop["threadId"])["id"])["result"])
    assert texts == ["'x'", "'y'", "'x'"]
    everything = dap()
    kind, stop = everything.start(trace, exceptions=["raised"], stopAtCrash=False,
                                  justMyCode=False)
    frame = everything.request("stackTrace", threadId=stop["threadId"])["stackFrames"][0]
    assert frame["source"]["path"] != str(script) and frame["name"] != "parse", frame


# --------------------------------------------------------------------------
# Inspection


def test_hover_and_watch_never_perturb_the_replay(dap, loop):
    script, trace, printed, stdout = loop
    client, kind, stop = at_print(dap, loop, condition="i == 2")
    assert kind == "stopped", stop
    frame = client.top(stop["threadId"])["id"]
    assert client.evaluate("items.pop()", frame, "hover")["result"] == str(printed[2])
    client.evaluate("random.random()", frame, "watch")
    # an external call is refused, not replayed: the recording stays untouched
    assert "external call" in client.error("evaluate", expression="time.time()", frameId=frame,
                                           context="hover")
    client.evaluate("items.clear()", frame, "repl")
    assert client.evaluate("len(items)", frame, "hover")["result"] == "3"
    assert client.evaluate("x", frame, "hover")["result"] == str(printed[2])
    assert "NameError" in client.error("evaluate", expression="no_such_name", frameId=frame,
                                       context="hover")
    client.request("setBreakpoints", source={"path": str(script)}, breakpoints=[])
    kind, _ = client.move("continue", threadId=stop["threadId"])
    assert kind == "terminated"
    assert client.output("stdout") == stdout   # the rest of the run is the recorded one


def test_variables_expand_lazily_with_paging_and_hex(dap, loop):
    script, trace, printed, _ = loop
    client, kind, stop = at_print(dap, loop, condition="i == 1")
    frame = client.top(stop["threadId"])["id"]
    scopes = client.request("scopes", frameId=frame)["scopes"]
    globals_ref = next(s for s in scopes if s["name"] == "Globals")["variablesReference"]
    variables = {v["name"]: v for v in client.request(
        "variables", variablesReference=globals_ref, format={"hex": True})["variables"]}
    assert variables["x"]["value"] == hex(printed[1])
    big = variables["big"]
    assert big["indexedVariables"] == 500 and big["variablesReference"] > 0
    page = client.request("variables", variablesReference=big["variablesReference"],
                          filter="indexed", start=100, count=50)["variables"]
    assert [v["value"] for v in page] == [str(n) for n in range(100, 150)]
    items = client.request("variables", variablesReference=variables["items"]["variablesReference"])
    assert [int(v["value"]) for v in items["variables"]] == [printed[0], printed[1]]
    watched = client.evaluate("big", frame)
    assert watched["indexedVariables"] == 500


def test_restart_frame_and_goto_targets_travel_back(dap, loop):
    script, trace, printed, _ = loop
    add_line, return_line = line_of(LOOP, "# ADD"), line_of(LOOP, "# RETURN")
    call_line = line_of(LOOP, "# CALL")
    client = dap()
    kind, stop = client.start(trace, breakpoints=[
        (script, [{"line": return_line, "condition": "len(items) == 4"}])], stopAtCrash=False)
    assert kind == "stopped", stop
    thread = stop["threadId"]
    frame = client.top(thread)
    assert (frame["name"], frame["line"]) == ("add", return_line)

    client.request("setBreakpoints", source={"path": str(script)}, breakpoints=[])
    kind, stop = client.move("restartFrame", frameId=frame["id"])
    frame = client.top(thread)
    assert (frame["name"], frame["line"]) == ("add", add_line)
    assert client.evaluate("len(items)", frame["id"])["result"] == "3"
    assert client.evaluate("value", frame["id"])["result"] == str(printed[3])

    kind, stop = client.move("stepOut", threadId=thread)
    frame = client.top(thread)
    assert (frame["name"], frame["line"]) == ("<module>", line_of(LOOP, "# PRINT"))

    targets = client.request("gotoTargets", source={"path": str(script)}, line=call_line)
    target = targets["targets"][0]
    assert "last ran" in target["label"]
    kind, stop = client.move("goto", threadId=thread, targetId=target["id"])
    assert (kind, stop["reason"]) == ("stopped", "goto"), stop
    frame = client.top(thread)
    assert frame["line"] == call_line
    assert client.evaluate("i", frame["id"])["result"] == "3"

    end_line = line_of(LOOP, "# END")
    target = client.request("gotoTargets", source={"path": str(script)},
                            line=end_line)["targets"][0]
    assert "has not run" in client.error("goto", threadId=thread, targetId=target["id"])


def test_threads_view_on_a_multithreaded_recording(dap, tmp_path):
    source = (TESTS / "programs" / "threads_counter.py").read_text()
    script, trace, result = record(tmp_path, "threads_counter", source)
    assert result.returncode == 0, result.stderr.decode()
    who = re.search(rb"^(w\d): ticket 3$", result.stdout, re.M).group(1).decode()
    client = dap()
    kind, stop = client.start(trace, breakpoints=[
        (script, [{"line": line_of(source, "mine.append(ticket)"),
                   "condition": "ticket == 3"}])], stopAtCrash=False)
    assert (kind, stop["reason"]) == ("stopped", "breakpoint"), stop
    threads = client.request("threads")["threads"]
    names = [t["name"] for t in threads]
    assert "MainThread" in names and len(threads) >= 3, names
    frame = client.top(stop["threadId"])
    assert frame["name"] == "worker"
    assert client.evaluate("name", frame["id"])["result"] == repr(who)
    main = next(t["id"] for t in threads if t["name"] == "MainThread")
    assert main != stop["threadId"]
    main_frames = client.request("stackTrace", threadId=main)["stackFrames"]
    assert any(f["name"] == "<module>" for f in main_frames)


def test_a_changed_source_file_is_reported_once_in_the_console(dap, tmp_path):
    script, trace, result = record(tmp_path, "changed", LOOP)
    assert result.returncode == 0, result.stderr.decode()
    script.write_text(LOOP + "# edited after the recording\n")
    client = dap()
    kind, _ = client.start(trace, stopAtCrash=False)
    assert kind == "terminated"
    warnings = [line for line in client.output("console").splitlines() if str(script) in line]
    assert len(warnings) == 1 and "differs" in warnings[0], client.output("console")


def test_port_serves_one_client_over_tcp(tmp_path):
    import socket
    proc = subprocess.Popen([PY, "-m", "retrace", "dap", "--port", "0"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        line = proc.stderr.readline().decode()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, \
                sock.makefile("rb") as stream:
            body = json.dumps({"seq": 1, "type": "request", "command": "initialize",
                               "arguments": {"adapterID": "retrace"}}).encode()
            sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            length = int(stream.readline().split(b":")[1])
            assert stream.readline() == b"\r\n"
            response = json.loads(stream.read(length))
            assert response["success"] and response["body"]["supportsStepBack"]
        assert proc.wait(timeout=TIMEOUT) == 0    # one client, then it exits
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def replay_processes(trace):
    return [int(pid) for pid in subprocess.run(
        ["pgrep", "-f", f"retrace._debug_replay .* {trace}"],
        capture_output=True, text=True, timeout=TIMEOUT).stdout.split()]


def assert_gone(pids, what):
    for pid in pids:
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            threading.Event().wait(0.1)
        else:
            pytest.fail(f"replay process {pid} outlived {what}")


def test_terminate_ends_the_session_and_its_replay_processes(dap, loop):
    client, kind, stop = at_print(dap, loop, condition="i == 1")
    assert kind == "stopped", stop
    replays = replay_processes(loop[1])
    assert replays, "no replay process found"
    mark = len(client.events)
    client.request("terminate")
    client.wait_event("terminated", after=mark)
    assert_gone(replays, "terminate")


def test_sigterm_closes_the_replay_processes(dap, loop):
    client, kind, stop = at_print(dap, loop, condition="i == 1")
    assert kind == "stopped", stop
    replays = replay_processes(loop[1])
    assert replays, "no replay process found"
    client.proc.terminate()
    assert client.proc.wait(timeout=TIMEOUT) == 0
    assert_gone(replays, "the adapter")


LONG = textwrap.dedent('''\
    total = 0
    for i in range(5_000_000):
        total += i                       # ADD
    print(total)
''')


def test_a_long_search_reports_progress_and_cancel_pauses_it(dap, tmp_path):
    script, trace, result = record(tmp_path, "long", LONG)
    assert result.returncode == 0, result.stderr.decode()
    client = dap()
    kind, stop = client.start(trace, stopOnEntry=True)
    assert (kind, stop["reason"]) == ("stopped", "entry"), stop
    client.request("setBreakpoints", source={"path": str(script)},
                   breakpoints=[{"line": line_of(LONG, "# ADD"), "condition": "i < 0"}])
    mark = len(client.events)
    client.request("continue", threadId=stop["threadId"])
    progress = client.wait_event("progressStart", after=mark)
    assert progress["cancellable"] and progress["title"]
    client.request("cancel", progressId=progress["progressId"])
    ended = client.wait_event("progressEnd", after=mark)
    assert ended["progressId"] == progress["progressId"]
    stopped = client.wait_event("stopped", after=mark)
    assert stopped["reason"] == "pause", stopped
    frame = client.top(stopped["threadId"])
    assert frame["line"] in (line_of(LONG, "for i in"), line_of(LONG, "# ADD"))
    i = int(client.evaluate("i", frame["id"])["result"])
    assert 0 < i < 5_000_000
    assert client.evaluate("total", frame["id"])["result"] in (str(i * (i - 1) // 2),
                                                                str(i * (i + 1) // 2))


def test_pause_and_cancel_stop_a_backward_search(dap, tmp_path):
    script, trace, result = record(tmp_path, "long", LONG)
    assert result.returncode == 0, result.stderr.decode()
    client = dap()
    kind, stop = client.start(trace, stopAtCrash=False, stopAtEnd=True)
    assert (kind, stop["reason"]) == ("stopped", "step"), stop    # the end
    client.request("setBreakpoints", source={"path": str(script)},
                   breakpoints=[{"line": line_of(LONG, "# ADD"), "condition": "i < 0"}])
    for how in ("pause", "cancel"):
        mark = len(client.events)
        client.request("reverseContinue", threadId=stop["threadId"])
        progress = client.wait_event("progressStart", after=mark)
        assert progress["cancellable"], progress
        if how == "pause":
            client.request("pause", threadId=stop["threadId"])
        else:
            client.request("cancel", progressId=progress["progressId"])
        stopped = client.wait_event("stopped", after=mark)
        assert stopped["reason"] == "pause", (how, stopped)
        frame = client.top(stopped["threadId"])
        i = int(client.evaluate("i", frame["id"])["result"])
        assert 0 < i < 5_000_000 - 1, (how, i)


def test_pid_replays_a_forked_child(dap, tmp_path):
    source = (TESTS / "programs" / "proc_fork.py").read_text()
    script, trace, result = record(tmp_path, "proc_fork", source)
    assert result.returncode == 0, result.stderr.decode()
    child = re.search(rb"^child: (child (\d+) drew .*)$", result.stdout, re.M)
    pid = int(child.group(2))
    client = dap()
    kind, stop = client.start(trace, pid=pid, breakpoints=[
        (script, [line_of(source, 'print("child:", message')])], stopAtCrash=False)
    assert (kind, stop["reason"]) == ("stopped", "breakpoint"), stop
    frame = client.top(stop["threadId"])
    assert client.evaluate("message", frame["id"])["result"] == repr(child.group(1).decode())
    assert client.move("continue", threadId=stop["threadId"])[0] == "terminated"
    # the child's own output (the replay of the parent up to the fork comes first)
    out = client.output("stdout")
    assert out.endswith(f"child: {child.group(1).decode()}\n") and "received" not in out, out
    other = dap()
    other.request("initialize", clientID="test", adapterID="retrace")
    assert f"{trace}.{pid + 1}" in other.error("launch", recording=str(trace), pid=pid + 1)
