"""Records examples/llm_classify until the provider's prose reply crashes it,
and says what the provider really sent in that last reply.

    python tests/e2e/llm_recording.py WORKDIR      # prints {"trace": ..., "text": ...}

The provider (examples/llm_classify/provider.py) runs in this process, on a
thread, with its socket writes copied aside: the text of its last reply is the
`response` the crashed classify_intent() had. The example's code is copied into
WORKDIR, so the recording refers to files a test may open. tests/test_dap.py
imports record_crash(); the VS Code end-to-end test runs this as a script.
"""
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llm_classify"
ATTEMPTS = 12
TIMEOUT = 120


def load_provider():
    spec = importlib.util.spec_from_file_location("llm_provider", EXAMPLE / "provider.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tee:
    """A handler's wfile that keeps a copy of each write."""

    def __init__(self, wfile, sent):
        self.wfile, self.sent = wfile, sent

    def write(self, data):
        self.sent.append(bytes(data))
        return self.wfile.write(data)

    def __getattr__(self, name):
        return getattr(self.wfile, name)


def start_provider(text_rate=0.3):
    """The provider on a free port; returns (server, url, replies): replies
    is the list of the "text" fields it sent, in order."""
    sent = []

    class Handler(load_provider().Handler):
        def setup(self):
            super().setup()
            self.wfile = Tee(self.wfile, sent)

    Handler.text_rate = text_rate
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def replies():
        return [json.loads(chunk)["text"] for chunk in sent if chunk.startswith(b"{")]
    return server, f"http://127.0.0.1:{server.server_address[1]}", replies


def record_crash(workdir, python=sys.executable, count=40):
    """Copies the example into workdir, records it until it crashes, and
    returns (trace path, the text of the provider's last reply)."""
    workdir = Path(workdir)
    code = workdir / "llm_classify"
    shutil.copytree(EXAMPLE, code, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    trace = workdir / "crash.retrace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    server, url, replies = start_provider()
    env["LLM_URL"] = url
    try:
        for _ in range(ATTEMPTS):
            before = len(replies())
            result = subprocess.run(
                [python, "-m", "retrace", "record", "-o", str(trace), str(code / "classify.py"),
                 str(count)], cwd=workdir, env=env, capture_output=True, timeout=TIMEOUT,
                stdin=subprocess.DEVNULL)
            if result.returncode == 1 and b"JSONDecodeError" in result.stderr:
                texts = replies()[before:]
                return trace, texts[-1]
            if result.returncode != 0:
                raise RuntimeError(f"recording failed with status {result.returncode}:\n"
                                   + result.stderr.decode(errors="replace"))
        raise RuntimeError(f"no crash in {ATTEMPTS} recordings of {count} messages")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    trace, text = record_crash(sys.argv[1])
    json.dump({"trace": str(trace), "text": text}, sys.stdout)
    sys.stdout.write("\n")
