"""A support-ticket router: classifies each incoming message by asking an
LLM provider (an external HTTP API) for its intent, as JSON.

    LLM_URL=http://127.0.0.1:8765 python classify.py [COUNT]

It handles COUNT messages (default 20) from its queue. Now and then the
provider answers in prose instead of JSON, and classify_intent() crashes
with json.JSONDecodeError: the bug this example records and replays.
"""
import json
import os
import random
import sys
import time
import uuid

import requests

QUEUE = [
    "I was charged twice for my subscription this month",
    "How do I cancel my plan?",
    "The app crashes when I open the settings page",
    "Where is my parcel? The delivery was due yesterday",
    "I forgot my password and cannot login",
    "Can I get a refund for the last invoice?",
    "Your product is great, thanks!",
    "Error 500 when uploading a file",
]


class LLM:
    """A minimal client for the provider's chat API."""

    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()

    def chat(self, prompt):
        reply = self.session.post(f"{self.base_url}/v1/chat", json={"prompt": prompt},
                                  timeout=10)
        reply.raise_for_status()
        return reply.json()["text"]


llm = LLM(os.environ.get("LLM_URL", "http://127.0.0.1:8765"))


def classify_intent(message):
    response = llm.chat(prompt=f"Classify: {message}")   # requests.post(...) under the hood
    data = json.loads(response)                            # JSONDecodeError in production
    return data["intent"]


def main(count):
    print(f"router {uuid.uuid4().hex[:8]} handling {count} messages")
    for n in range(count):
        message = random.choice(QUEUE)
        started = time.monotonic()
        intent = classify_intent(message)
        print(f"#{n:02d} {intent:<18} {time.monotonic() - started:6.3f}s  {message}")
    print("queue drained")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
