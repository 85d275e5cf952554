"""http.client against the test peer, over HTTP and HTTPS: JSON, a chunked
response, keep-alive requests on one connection, a 10 MB body (hashed),
partial reads of a slow body, a POST.

    net_http_client.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import hashlib
import http.client
import json
import ssl
import sys

host, http_port, https_port, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def exercise(label, conn):
    # keep-alive: every request below goes over this one connection
    conn.request("GET", "/json?a=1")
    resp = conn.getresponse()
    print(f"{label} json: {resp.status} {json.loads(resp.read())}")
    sock = conn.sock
    conn.request("GET", "/chunked")
    resp = conn.getresponse()
    print(f"{label} chunked: {resp.status} {resp.getheader('Transfer-Encoding')} {resp.read()!r}")
    conn.request("GET", "/big")
    resp = conn.getresponse()
    digest = hashlib.sha256()
    total = 0
    while chunk := resp.read(65536):
        digest.update(chunk)
        total += len(chunk)
    print(f"{label} big: {total} {digest.hexdigest()} matches={digest.hexdigest() == resp.getheader('X-SHA256')}")
    conn.request("GET", "/slow")
    resp = conn.getresponse()
    buf = bytearray(7)
    parts = []
    while n := resp.readinto(buf):
        parts.append(bytes(buf[:n]))
    print(f"{label} slow: {parts}")
    conn.request("POST", "/echo", body=b"hello " + label.encode(),
                 headers={"Content-Type": "text/plain"})
    resp = conn.getresponse()
    print(f"{label} echo: {json.loads(resp.read())}")
    print(f"{label} same connection: {conn.sock is sock}")
    print(f"{label} peer: {conn.sock.getpeername()[0]}")


conn = http.client.HTTPConnection(host, http_port, timeout=10)
exercise("http", conn)
conn.close()

context = ssl.create_default_context(cafile=cafile)
conn = http.client.HTTPSConnection(host, https_port, context=context, timeout=10)
exercise("https", conn)
print("tls version:", conn.sock.version())
print("cipher:", conn.sock.cipher()[0])
print("peer cert subject:", conn.sock.getpeercert()["subject"])
print("peer cert der length:", len(conn.sock.getpeercert(binary_form=True)))
conn.close()
