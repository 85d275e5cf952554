"""Socket API paths that need no peer: a TCP connection to ourselves,
makefile(), sendfile() of a data file, repr(), dup(), fromfd(), detach(),
socket options, shutdown, UDP (sendto/recvfrom/recvfrom_into), sendmsg and
recvmsg_into, descriptor passing over a socketpair, select and poll.

    net_socket_paths.py DATAFILE
"""
import hashlib
import os
import select
import socket
import sys

data_path = sys.argv[1]

listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
client = socket.create_connection(("127.0.0.1", port))
conn, addr = listener.accept()
print("isinstance:", isinstance(conn, socket.socket), isinstance(client, socket.socket))
print("client repr ok:", repr(client).startswith("<socket.socket fd="), "raddr" in repr(client))
print("same port:", client.getpeername()[1] == port, conn.getsockname()[1] == port)
print("fileno matches repr:", f"fd={client.fileno()}," in repr(client))

# makefile both ways
w = client.makefile("wb")
w.write(b"line one\nline two\n")
w.flush()
r = conn.makefile("rb")
print("makefile lines:", r.readline(), r.readline())

# sendfile a data file
with open(data_path, "rb") as f:
    sent = client.sendfile(f)
got = b""
while len(got) < sent:
    got += conn.recv(65536)
print("sendfile:", sent, hashlib.sha256(got).hexdigest()[:16])

# options
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print("nodelay:", client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0)
print("rcvbuf > 0:", client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 0)

# dup, fromfd, detach
dup = client.dup()
dup.sendall(b"via dup\n")
print("dup:", conn.recv(100), dup.fileno() != client.fileno())
dup.close()
other = socket.fromfd(client.fileno(), socket.AF_INET, socket.SOCK_STREAM)
other.sendall(b"via fromfd\n")
print("fromfd:", conn.recv(100))
fd = other.detach()
print("detached fd is a number:", isinstance(fd, int) and fd > 2)
socket.close(fd)

# recv_into partial reads and shutdown
client.sendall(b"0123456789abcdef")
client.shutdown(socket.SHUT_WR)
buf = bytearray(5)
parts = []
while n := conn.recv_into(buf):
    parts.append(bytes(buf[:n]))
print("recv_into parts:", parts)
w.close()
r.close()
client.close()
conn.close()
listener.close()

# UDP
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("127.0.0.1", 0))
b.sendto(os.urandom(8), a.getsockname())
data, frm = a.recvfrom(100)
print("udp recvfrom:", len(data), frm == b.getsockname())
b.sendto(b"into this", a.getsockname())
buf = bytearray(20)
n, frm = a.recvfrom_into(buf)
print("udp recvfrom_into:", bytes(buf[:n]))
a.close()
b.close()

# sendmsg / recvmsg_into and descriptor passing over a socketpair
x, y = socket.socketpair()
x.sendmsg([b"scatter", b"-", b"gather"])
bufs = [bytearray(4), bytearray(4), bytearray(10)]
res = y.recvmsg_into(bufs)
print("recvmsg_into:", res[0], [bytes(b) for b in bufs])
rfd, wfd = os.pipe()
socket.send_fds(x, [b"fds"], [rfd])
msg, fds, flags, _ = socket.recv_fds(y, 100, 1)
print("recv_fds:", msg, len(fds))
for f in (rfd, wfd, *fds):
    os.close(f)

# select and poll over the pair
x.sendall(b"!")
r_, w_, e_ = select.select([x, y], [x], [], 1)
print("select:", [s is y for s in r_], [s is x for s in w_], e_)
p = select.poll()
p.register(y, select.POLLIN)
p.register(x.fileno(), select.POLLOUT)
print("poll:", sorted((fd == y.fileno(), ev) for fd, ev in p.poll(1000)))
print("pair recv:", y.recv(10))
x.close()
y.close()
print("token:", os.urandom(6).hex())
