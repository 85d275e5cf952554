"""What recording costs on the network boundary, as ratios against a plain run.

    python bench/net.py [--rounds N] [--quick]

Two workloads, each run as its own process, plainly and under `retrace
record`, interleaved round by round (so machine noise hits both alike):

  socket calls  send() and recv() of one byte over a socketpair, in a loop:
                ns added per intercepted call
  http loop     http.client GET requests on one keep-alive connection to a
                loopback HTTP server in another (unrecorded) process: the
                added wall time per request, as a ratio

Prints a small table; medians with (min .. max) over the rounds.
"""
import argparse
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable
HERE = os.path.abspath(__file__)


# -- the workloads (run in a child process) ----------------------------------

def workload_socket(n):
    import socket
    a, b = socket.socketpair()
    start = time.perf_counter_ns()
    for _ in range(n):
        a.send(b"x")
        b.recv(1)
    elapsed = time.perf_counter_ns() - start
    print(elapsed / (2 * n))        # ns per intercepted call


def workload_http(n, port):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter_ns()
    for _ in range(n):
        conn.request("GET", "/")
        conn.getresponse().read()
    elapsed = time.perf_counter_ns() - start
    print(elapsed / n)              # ns per request


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True      # no 40 ms delayed-ACK stalls
    body = b'{"ok": true, "pad": "' + b"x" * 200 + b'"}'

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def serve(handler=_Handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# -- the driver ---------------------------------------------------------------

def measure(args, record, tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRACE_")}
    env["PYTHONHASHSEED"] = "1"
    if record:
        cmd = [PY, "-m", "retrace", "record", "-o", os.path.join(tmp, "bench.retrace"), "--",
               HERE, *args]
    else:
        cmd = [PY, HERE, *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def summary(values):
    return f"{statistics.median(values):10.0f} ({min(values):.0f} .. {max(values):.0f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    calls, requests = (20000, 300) if opts.quick else (200000, 3000)

    server = subprocess.Popen([PY, HERE, "--serve"], stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().strip()
    results = {k: [] for k in ("sock plain", "sock record", "http plain", "http record")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(opts.rounds):
                for record in (False, True):
                    mode = "record" if record else "plain"
                    results[f"sock {mode}"].append(
                        measure(["--socket", str(calls)], record, tmp))
                    results[f"http {mode}"].append(
                        measure(["--http", str(requests), port], record, tmp))
    finally:
        server.kill()
        server.wait()

    sock_added = [r - p for p, r in zip(results["sock plain"], results["sock record"])]
    http_ratio = [r / p for p, r in zip(results["http plain"], results["http record"])]
    print(f"Python {sys.version.split()[0]}, {opts.rounds} rounds")
    print(f"socket call, plain   ns/call {summary(results['sock plain'])}")
    print(f"socket call, record  ns/call {summary(results['sock record'])}")
    print(f"  added per intercepted call  {summary(sock_added)} ns")
    print(f"http request, plain  ns/req  {summary(results['http plain'])}")
    print(f"http request, record ns/req  {summary(results['http record'])}")
    print(f"  record / plain              {statistics.median(http_ratio):10.3f} "
          f"({min(http_ratio):.3f} .. {max(http_ratio):.3f})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    elif sys.argv[1:2] == ["--socket"]:
        workload_socket(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--http"]:
        workload_http(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
