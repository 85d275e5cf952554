"""A WSGI application on wsgiref's single-threaded server: serves N
requests from another process; logs each request (wsgiref logs to stderr
with the time). Replay runs with no client.

    net_wsgi_server.py N
prints "port: P" first.
"""
import json
import os
import sys
from wsgiref.simple_server import make_server


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    answer = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                         "query": environ["QUERY_STRING"], "got": body.decode(),
                         "token": os.urandom(4).hex()}).encode()
    print(f"app: {environ['REQUEST_METHOD']} {environ['PATH_INFO']} {body!r} -> {answer.decode()}",
          flush=True)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(answer)))])
    return [answer]


server = make_server("127.0.0.1", 0, app)
print("port:", server.server_port, flush=True)
for _ in range(int(sys.argv[1])):
    server.handle_request()
server.server_close()
print("done")
