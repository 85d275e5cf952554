"""A single-threaded socket server: accepts N connections (selectors), logs
what each client sent and answers it. The clients are another process;
replay runs with none.

    net_server.py N
prints "port: P" first, then one line per event.
"""
import hashlib
import os
import selectors
import socket
import sys

expected = int(sys.argv[1])
server = socket.create_server(("127.0.0.1", 0))
server.setblocking(False)
print("port:", server.getsockname()[1], flush=True)

sel = selectors.DefaultSelector()
sel.register(server, selectors.EVENT_READ)
received = {}
names = {}
done = 0
while done < expected:
    for key, _ in sel.select(timeout=10):
        if key.fileobj is server:
            conn, addr = server.accept()
            conn.setblocking(False)
            names[conn] = f"client{len(names)}"
            received[conn] = b""
            sel.register(conn, selectors.EVENT_READ)
            print(f"accepted {names[conn]}: from {addr[0]} fd>2={conn.fileno() > 2}", flush=True)
            continue
        conn = key.fileobj
        data = conn.recv(4096)
        if data:
            received[conn] += data
            if received[conn].endswith(b"\n"):
                token = os.urandom(4).hex()
                conn.sendall(f"ok {token} {len(received[conn])}\n".encode())
                print(f"{names[conn]} sent: {received[conn]!r} answered {token}", flush=True)
            continue
        print(f"{names[conn]} closed after {hashlib.sha256(received[conn]).hexdigest()[:16]}",
              flush=True)
        sel.unregister(conn)
        conn.close()
        done += 1
sel.close()
server.close()
print("served:", done)
