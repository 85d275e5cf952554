"""http.server with a thread per request (ThreadingHTTPServer): serves N
requests that a client process sends concurrently, and logs them from the
handler threads, in an order that depends on scheduling.

    net_threaded_server.py N
prints "port: P" first.
"""
import http.server
import json
import os
import random
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(random.random() / 100)
        body = json.dumps({"path": self.path, "token": os.urandom(4).hex(),
                           "thread": threading.current_thread().name}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"served {self.path}: {body.decode()}", flush=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False     # so that server_close() joins the handler threads


server = Server(("127.0.0.1", 0), Handler)
print("port:", server.server_address[1], flush=True)
for _ in range(int(sys.argv[1])):
    server.handle_request()
server.server_close()      # joins the handler threads
print("done")
