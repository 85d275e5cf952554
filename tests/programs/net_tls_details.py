"""The TLS connection's details, each a recorded call: ALPN, compression,
shared ciphers, channel binding, the session, the certificate chain (3.13),
pending bytes, the context's statistics and CA list; then unwrap().

    net_tls_details.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import hashlib
import socket
import ssl
import sys

host, https_port, cafile = sys.argv[1], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])
raw = socket.create_connection((host, https_port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname=host)
print("alpn:", s.selected_alpn_protocol(), "compression:", s.compression())
print("shared ciphers:", type(s.shared_ciphers()).__name__)
print("channel binding:", (s.get_channel_binding() or b"").hex())
print("session:", type(s.session).__name__, s.session_reused)
print("peer cert:", s.getpeercert()["subjectAltName"], s.getpeercert()["notAfter"])
if hasattr(s, "get_verified_chain"):
    print("chain:", [hashlib.sha256(c).hexdigest()[:12] for c in s.get_verified_chain()])
    print("unverified chain:", len(s.get_unverified_chain()))
s.sendall(f"GET /json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
buf = bytearray(4096)
n = s.recv_into(buf, 20)
print("first bytes:", bytes(buf[:n]), "pending:", s.pending())
rest = b""
while chunk := s.recv(4096):
    rest += chunk
print("rest:", rest[-40:])
print("stats:", sorted(ctx.session_stats())[:3], ctx.cert_store_stats())
print("ca certs:", [c["subject"] for c in ctx.get_ca_certs()])
print("ciphers:", len(ctx.get_ciphers()) > 0)
s.close()
