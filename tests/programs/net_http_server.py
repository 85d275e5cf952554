"""http.server, single-threaded: serves N requests from another process
and logs them (http.server logs to stderr with the time). With a
certificate and key it serves HTTPS. Replay runs with no client, and needs
neither the certificate nor the key.

    net_http_server.py N [CERTFILE KEYFILE]
prints "port: P" first.
"""
import http.server
import json
import os
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "token": os.urandom(6).hex()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"served {self.path} to {self.client_address[0]}: {body.decode()}", flush=True)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        print(f"posted to {self.path}: {data!r}", flush=True)
        if isinstance(self.connection, ssl.SSLSocket):
            print(f"tls: {self.connection.version()} {self.connection.cipher()[0]}", flush=True)
        self.send_response(204)
        self.end_headers()


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 2:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("port:", server.server_address[1], flush=True)
for _ in range(int(sys.argv[1])):
    server.handle_request()
server.server_close()
print("done")
