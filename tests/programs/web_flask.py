"""A Flask service with no database, for the framework tests: notes kept in
memory under a lock (each gunicorn worker has its own), an outbound HTTP
call with requests, and a route that crashes on rare data (a note posted
with its tags None).

    web_flask.py PORT PEER_URL        werkzeug's threaded server; SIGTERM stops it
    gunicorn web_flask:app            (PEER_URL from $WEB_PEER_URL)

Every answer is logged with its body, so the log shows the responses.
"""
import logging
import os
import signal
import sys
import threading
import time
import uuid

import requests
from flask import Flask, abort, jsonify, request

PEER_URL = os.environ.get("WEB_PEER_URL", "")

logging.basicConfig(level=logging.INFO,
                    format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("notes")
app = Flask("web_flask")
notes = {}
notes_lock = threading.Lock()


@app.after_request
def log_response(response):
    body = response.get_data(as_text=True).strip() if response.is_json else response.mimetype
    log.info("%s %s -> %s %s", request.method, request.full_path.rstrip("?"),
             response.status_code, body)
    return response


@app.get("/health")
def health():
    return jsonify(pid=os.getpid(), time=time.time(), id=str(uuid.uuid4()))


@app.post("/notes")
def add_note():
    data = request.get_json()
    tags = sorted(tag.lower() for tag in data["tags"])     # rare data: tags is None
    with notes_lock:
        note_id = len(notes) + 1
        notes[note_id] = {"text": data["text"], "tags": tags, "at": time.strftime("%H:%M:%S")}
    return jsonify(id=note_id), 201


@app.get("/notes/<int:note_id>")
def show_note(note_id):
    with notes_lock:
        note = notes.get(note_id)
    if note is None:
        abort(404)
    return jsonify(note)


@app.get("/quote")
def quote():
    answer = requests.get(PEER_URL, params={"n": request.args.get("n", "1")}, timeout=10)
    return jsonify(status=answer.status_code, peer=answer.json())


def stop(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    PEER_URL = sys.argv[2]
    signal.signal(signal.SIGTERM, stop)
    app.run("127.0.0.1", int(sys.argv[1]), threaded=True)
    log.info("stopped")
