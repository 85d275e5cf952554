"""A stub "LLM provider": the external HTTP API that classify.py calls.

    python provider.py [--port PORT] [--text-rate RATE]

POST /v1/chat with {"prompt": "..."} answers {"text": "<model output>"}.
The model is asked for JSON, and most of the time its output is JSON,
like '{"intent": "billing", "confidence": 0.92}'. With probability RATE
(default 0.15) it answers in prose instead, like a real model does now and
then: "Sure! The intent is billing with high confidence."

Prints "listening on http://127.0.0.1:PORT" once it accepts requests. It is
not recorded: in the example it plays the part of the outside world.
"""
import argparse
import http.server
import json
import random
import time

INTENTS = ["billing", "cancellation", "technical_support", "shipping", "account", "other"]

KEYWORDS = {
    "invoice": "billing", "charge": "billing", "refund": "billing", "bill": "billing",
    "cancel": "cancellation", "unsubscribe": "cancellation",
    "crash": "technical_support", "error": "technical_support", "login": "account",
    "password": "account", "parcel": "shipping", "delivery": "shipping",
}

CHATTY = [
    "Sure! The intent is {intent} with high confidence.",
    "Based on the message, I'd say the customer's intent is {intent}.",
    "The intent appears to be **{intent}**. Let me know if you need anything else!",
]


def guess(prompt):
    for word, intent in KEYWORDS.items():
        if word in prompt.lower():
            return intent
    return random.choice(INTENTS)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    text_rate = 0.15

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        if self.path != "/v1/chat":
            self.send_error(404)
            return
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        intent = guess(request["prompt"])
        time.sleep(random.random() * 0.02)            # "inference"
        if random.random() < self.text_rate:
            text = random.choice(CHATTY).format(intent=intent)
        else:
            text = json.dumps({"intent": intent, "confidence": round(random.uniform(0.5, 1), 2)})
        body = json.dumps({"model": "stub-1", "text": text,
                           "usage": {"prompt_tokens": len(request["prompt"].split())}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--text-rate", type=float, default=0.15)
    args = parser.parse_args()
    Handler.text_rate = args.text_rate
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
