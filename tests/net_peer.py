"""The network peer of the network tests: an HTTP and an HTTPS server.

Runs as a separate, unrecorded process:

    python net_peer.py CERTFILE KEYFILE

prints "HTTP_PORT HTTPS_PORT" on one line once both listen, and serves until
killed. Every answer carries random values, so two recordings of the same
client differ. Endpoints (HTTP/1.1, keep-alive):

  /json          a JSON object with a nonce
  /chunked       a chunked response of random pieces
  /big?size=N    N random bytes (default 10 MB), with their SHA-256 in a header
  /slow          a body sent in small pieces with pauses between them
  /echo          (POST) the request body back, with a nonce
  /reset         the connection is reset (RST) without an answer
  /hang          no answer for 30 s
"""
import hashlib
import http.server
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, body, ctype="application/json", headers=()):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path == "/json":
            self._send(json.dumps({"path": self.path, "nonce": os.urandom(8).hex(),
                                   "time": time.time(), "n": len(query)}).encode())
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(2 + os.urandom(1)[0] % 6):
                piece = os.urandom(1 + os.urandom(1)[0] % 200).hex().encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/big":
            body = os.urandom(int(query.get("size", 10 * 1024 * 1024)))
            self._send(body, "application/octet-stream",
                       [("X-SHA256", hashlib.sha256(body).hexdigest())])
        elif path == "/slow":
            pieces = [os.urandom(4).hex().encode() for _ in range(5)]
            self.send_response(200)
            self.send_header("Content-Length", str(sum(map(len, pieces))))
            self.end_headers()
            for piece in pieces:
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif path == "/hang":
            time.sleep(30)
        else:
            self.send_error(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(json.dumps({"echo": body.decode("utf-8", "replace"),
                               "nonce": os.urandom(8).hex()}).encode())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(certfile, keyfile):
    plain = Server(("127.0.0.1", 0), Handler)
    secure = Server(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(plain.server_address[1], secure.server_address[1], flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:3])
