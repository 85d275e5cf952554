"""The load of the framework tests, from a process of its own: it serves the
peer that web_flask.py calls (load.py's exchange rates: random JSON) and
sends the notes service a burst of requests, four at a time.

    web_load.py URL PEER_PORT NOTES [STOP_PID]

Prints one line per answer, "METHOD PATH -> STATUS BODY" (examples/load.py's
call(), imported: the test puts examples/ on PYTHONPATH). One of the NOTES
notes is posted with its tags None: the service crashes on it (a 500). With
STOP_PID, sends it SIGTERM at the end.
"""
import http.server
import os
import random
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from load import Rates, call, wait_until_up     # examples/load.py, on PYTHONPATH


def main(base, peer_port, count, stop_pid=None):
    peer = http.server.ThreadingHTTPServer(("127.0.0.1", int(peer_port)), Rates)
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
        for job in jobs:
            job.result()
        jobs = [pool.submit(call, base, "GET", f"/notes/{i}") for i in range(1, count + 1)]
        for job in jobs:
            job.result()
    peer.shutdown()
    if stop_pid:
        os.kill(int(stop_pid), signal.SIGTERM)


if __name__ == "__main__":
    main(*sys.argv[1:])
