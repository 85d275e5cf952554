"""Network errors are recorded and raised again in replay with the same
class, errno and message: connection refused, a DNS failure, a read
timeout, a connection reset, TLS verification failures, and the same
through requests.

    net_errors.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import socket
import ssl
import sys

import requests

host, http_port, https_port, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def show(label, fn):
    try:
        result = fn()
    except Exception as exc:
        extra = {k: getattr(exc, k) for k in ("errno", "verify_code", "verify_message", "reason",
                                               "library") if getattr(exc, k, None) is not None}
        print(f"{label}: {type(exc).__module__}.{type(exc).__qualname__} {extra} {exc}")
        return exc
    print(f"{label}: no error: {result!r}")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused():
    with socket.create_connection(("127.0.0.1", closed_port()), timeout=5):
        pass


def request(path, timeout):
    s = socket.create_connection((host, http_port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.settimeout(timeout)
    try:
        return s.recv(100)
    finally:
        s.close()


exc = show("refused", refused)
print("refused is ConnectionRefusedError:", isinstance(exc, ConnectionRefusedError))
exc = show("dns", lambda: socket.getaddrinfo("no-such-host.invalid", 80))
print("dns is gaierror:", isinstance(exc, socket.gaierror))
exc = show("timeout", lambda: request("/hang", 0.3))
print("timeout is socket.timeout:", isinstance(exc, socket.timeout))
show("reset", lambda: request("/reset", 5) + request("/reset", 5))


def tls(context, server_hostname):
    with socket.create_connection((host, https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as s:
            return s.version()


exc = show("untrusted", lambda: tls(ssl.create_default_context(), host))
print("untrusted is SSLCertVerificationError:", isinstance(exc, ssl.SSLCertVerificationError))
show("wrong name", lambda: tls(ssl.create_default_context(cafile=cafile), "wrong.example"))
show("trusted", lambda: tls(ssl.create_default_context(cafile=cafile), host))
show("requests refused", lambda: requests.get(f"http://127.0.0.1:{closed_port()}/", timeout=5))
show("requests timeout", lambda: requests.get(f"http://{host}:{http_port}/hang", timeout=0.3))
show("requests dns", lambda: requests.get("http://no-such-host.invalid/", timeout=5))
