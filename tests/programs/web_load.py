"""The load of the framework tests, from a process of its own: it serves the
peer that web_flask.py calls (GET /quote answers random JSON) and sends the
notes service a burst of requests, four at a time.

    web_load.py URL PEER_PORT NOTES [STOP_PID]

Prints one line per answer, "METHOD PATH -> STATUS BODY", in the order the
requests were made. One of the NOTES notes is posted with its tags None:
the service crashes on it (a 500). With STOP_PID, sends it SIGTERM at the end.
"""
import http.server
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


class Peer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"quote": random.randint(1, 10**6), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def call(base, method, path, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            status, body, kind = answer.status, answer.read(), answer.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read(), error.headers.get_content_type()
    text = body.decode().strip() if kind == "application/json" else kind
    return f"{method} {path} -> {status} {text}"


def wait_until_up(base):
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as answer:
                return answer.read()
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"no answer from {base}/health")
            time.sleep(0.1)


def main(base, peer_port, count, stop_pid=None):
    peer = http.server.ThreadingHTTPServer(("127.0.0.1", int(peer_port)), Peer)
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    wait_until_up(base)
    count = int(count)
    rare = random.randrange(count)
    notes = [{"text": f"note {i} {os.urandom(3).hex()}",
              "tags": None if i == rare else random.sample(["A", "B", "C", "D"], 2)}
             for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(call, base, "POST", "/notes", note) for note in notes]
        jobs += [pool.submit(call, base, "GET", f"/quote?n={i}") for i in range(3)]
        lines = [job.result() for job in jobs]
        jobs = [pool.submit(call, base, "GET", f"/notes/{i}") for i in range(1, count + 1)]
        lines += [job.result() for job in jobs]
    peer.shutdown()
    print("\n".join(lines), flush=True)
    if stop_pid:
        os.kill(int(stop_pid), signal.SIGTERM)


if __name__ == "__main__":
    main(*sys.argv[1:])
