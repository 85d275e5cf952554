"""Send a burst of requests to the demo shop (flask_demo.py or django_demo),
from a separate process, the way production traffic would arrive.

    python examples/load.py [--url http://127.0.0.1:5000] [--orders 12]
                            [--rates-port 5001] [--stop]

It also serves the exchange-rate service that the shop calls for invoices in
another currency (GET /rates on --rates-port), so the shop makes real
outbound HTTP calls. Requests go out four at a time: the shop's orders,
including one of a legacy product, then the invoice of every order. Each
answer is printed as one line, as it arrives: "METHOD PATH -> STATUS BODY"
(the body if it is JSON, else its content type).

--stop sends SIGTERM to the server process named by /health once all
answers are in; --stop-pid PID sends it to PID instead (gunicorn's master);
--stop-signal INT sends SIGINT (Ctrl-C: Django's runserver stops on it and
dies from SIGTERM).
"""
import argparse
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

PRICED = ["MUG-01", "TEE-02", "CAP-03"]
LEGACY = "GIFT-00"


class Rates(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"EUR": round(random.uniform(0.85, 0.95), 4),
                           "GBP": round(random.uniform(0.75, 0.82), 4)}).encode()
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
    text = body.decode(errors="replace").strip() if kind == "application/json" else kind
    sys.stdout.write(f"{method} {path} -> {status} {text}\n")    # one write: threads print too
    sys.stdout.flush()
    return status, text


def wait_until_up(base, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as answer:
                return json.load(answer)
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"load: no answer from {base}/health within {seconds} s")
            time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--orders", type=int, default=12)
    parser.add_argument("--rates-port", type=int, default=5001)
    parser.add_argument("--stop", action="store_true")
    parser.add_argument("--stop-pid", type=int)
    parser.add_argument("--stop-signal", choices=["TERM", "INT"], default="TERM")
    args = parser.parse_args()

    rates = http.server.ThreadingHTTPServer(("127.0.0.1", args.rates_port), Rates)
    threading.Thread(target=rates.serve_forever, daemon=True).start()
    server_pid = wait_until_up(args.url)["pid"]

    skus = [random.choice(PRICED) for _ in range(args.orders - 1)]
    skus.insert(random.randrange(args.orders), LEGACY)     # rare data: one legacy order
    with ThreadPoolExecutor(4) as pool:
        call(args.url, "GET", "/products")
        orders = [pool.submit(call, args.url, "POST", "/orders",
                              {"sku": sku, "quantity": random.randint(1, 3)}) for sku in skus]
        ids = [json.loads(text)["id"] for status, text in (f.result() for f in orders)
               if status == 201]
        invoices = [pool.submit(call, args.url, "GET", f"/orders/{n}/invoice?currency="
                                + random.choice(["USD", "EUR", "GBP"])) for n in ids]
        for future in invoices:
            future.result()
    rates.shutdown()
    if args.stop or args.stop_pid:
        os.kill(args.stop_pid or server_pid, signal.Signals["SIG" + args.stop_signal])


if __name__ == "__main__":
    main()
