"""The network boundary: sockets, DNS, select/poll/epoll and TLS.

Client programs (http.client, requests, urllib, asyncio, raw sockets) are
recorded against a peer that runs in a separate, unrecorded process
(tests/net_peer.py: HTTP and HTTPS with a CA and a server certificate made
at test time). Then the peer is stopped and the certificate files deleted,
and each recording is replayed twice, and without any network where
`unshare -n` works: the replay prints exactly what the recording printed.

Server programs are recorded while a client process talks to them, and
replayed with no client at all.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import (PY, TESTS, TIMEOUT, Case, Run, assert_same_run, assert_same_shape, run,
                      scrubbed_env, unshare_net_works)

PEER = TESTS / "net_peer.py"

CLIENTS = ["net_http_client", "net_requests", "net_urllib", "net_asyncio", "net_errors",
           "net_tls_details"]

LEAF_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
"""


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA and a server certificate for localhost/127.0.0.1 it signed
    (a real chain, as Python 3.13's strict verification wants)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Retrace Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
             cwd=d)
    (d / "leaf.ext").write_text(LEAF_EXTENSIONS)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)
    return d


class Peer:
    """net_peer.py in its own process; stop() kills it (by its pid)."""

    def __init__(self, pki):
        self.proc = subprocess.Popen([PY, str(PEER), str(pki / "server.pem"),
                                      str(pki / "server.key")],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.stop()
            pytest.fail("the test peer did not start")
        self.http_port, self.https_port = map(int, line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture
def peer(pki):
    p = Peer(pki)
    yield p
    p.stop()


@pytest.fixture
def cafile(world, pki):
    """A copy of the CA certificate that the test deletes before replaying."""
    path = world.root / "certs" / "ca.pem"
    path.parent.mkdir()
    shutil.copy(pki / "ca.pem", path)
    return path


def client_case(world, name, peer, cafile):
    return Case(world, name, [world.programs / f"{name}.py"],
                ["127.0.0.1", peer.http_port, peer.https_port, cafile], world.work, {})


def replay_offline(world, rec, what):
    """Replay twice (the second time from another directory, with only PATH in
    the environment), then without any network where possible: all identical."""
    assert_same_run(rec, world.replay(rec.trace), f"{what}: replay")
    assert_same_run(rec, world.replay(rec.trace, cwd=world.elsewhere, env=scrubbed_env()),
                    f"{what}: replay in another directory and environment")
    if unshare_net_works():
        assert_same_run(rec, world.replay(rec.trace, prefix=["unshare", "-n"]),
                        f"{what}: replay without network")


# What each client must have printed, so that a test never passes on a
# recording that failed early.
EXPECTED = {
    "net_http_client": [r"^https big: 10485760 \w+ matches=True$", r"^https same connection: True$",
                        r"^http slow: \[b'\w{7}', ", r"^tls version: TLSv1\.[23]$"],
    "net_requests": [r"^https json: 200 ", r"^https big: \w+ matches=True$", r"^one-shot: 200 "],
    "net_urllib": [r"^https big: 3000000 True$", r"^https missing: 404 Not Found$"],
    "net_asyncio": [r"^https: HTTP/1.1 200 OK \{", r"^client 3 got: CLIENT 3 MESSAGE 2 \d+$"],
    "net_errors": [r"^refused: builtins.ConnectionRefusedError \{'errno': 111\}",
                   r"^dns: socket.gaierror \{'errno': -\d+\}", r"^timeout is socket.timeout: True$",
                   r"^reset: builtins.ConnectionResetError \{'errno': 104\}",
                   r"^untrusted is SSLCertVerificationError: True$",
                   r"^wrong name: ssl.SSLCertVerificationError .*'verify_code': 62",
                   r"^trusted: no error: 'TLSv1\.[23]'$",
                   r"^requests timeout: requests.exceptions.ReadTimeout"],
    "net_tls_details": [r"^session: SSLSession False$", r"^first bytes: b'HTTP/1.1 200 OK",
                        r"^rest: b'.*\d\}'$", r"^ca certs: \[\(\(\('commonName', 'Retrace Test CA'\)"],
}


def assert_printed(result, name):
    out = result.out.decode()
    for pattern in EXPECTED[name]:
        assert re.search(pattern, out, re.M), f"no /{pattern}/ in the output\n{result.describe()}"


@pytest.mark.parametrize("name", CLIENTS)
def test_client_replays_with_the_peer_stopped(world, peer, cafile, name):
    rec = client_case(world, name, peer, cafile).record()
    assert rec.code == 0, rec.describe()
    assert_printed(rec, name)
    peer.stop()
    shutil.rmtree(cafile.parent)   # replay needs no certificate either
    replay_offline(world, rec, name)


@pytest.mark.parametrize("name", ["net_requests", "net_errors"])
def test_recording_does_not_change_the_run(world, peer, cafile, name):
    case = client_case(world, name, peer, cafile)
    plain = case.plain()
    assert plain.code == 0, plain.describe()
    assert_same_shape(plain, case.record())


def _client_order(out):
    return [line.split(b" got:")[0] for line in out.splitlines() if b" got:" in line]


def test_asyncio_order_varies_and_replays(world, peer, cafile):
    """Clients with random delays in one event loop: the order of their lines
    differs between recordings, and each replay keeps its recording's order."""
    case = client_case(world, "net_asyncio", peer, cafile)
    recordings = []
    for _ in range(5):
        rec = case.record()
        assert rec.code == 0, rec.describe()
        recordings.append(rec)
        if len({tuple(_client_order(r.out)) for r in recordings}) > 1:
            break
    else:
        pytest.fail("five recordings printed the clients in the same order")
    peer.stop()
    for rec in recordings:
        assert_same_run(rec, world.replay(rec.trace))


def test_socket_api_paths(world, unshare_net):
    """makefile, sendfile, dup/fromfd/detach, options, UDP, sendmsg/recvmsg_into,
    descriptor passing, select and poll: replayed without the data file and
    without network."""
    data = world.root / "data.bin"
    data.write_bytes(os.urandom(300_000))
    case = Case(world, "net_socket_paths", [world.programs / "net_socket_paths.py"], [data],
                world.work, {})
    plain = case.plain()
    assert plain.code == 0, plain.describe()
    rec = case.record()
    assert_same_shape(plain, rec)
    assert b"sendfile: 300000 " in rec.out, rec.describe()
    data.unlink()
    assert_same_run(rec, world.replay(rec.trace), "replay")
    assert_same_run(rec, world.replay(rec.trace, prefix=unshare_net), "replay without network")


# --------------------------------------------------------------------------
# Servers: recorded with a client process, replayed with none

SERVER_CLIENTS = {
    # three clients at once, each sending a few lines at random moments
    "net_server": """
import os, random, selectors, socket, sys, time
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
for i in range(3):
    for n, s in enumerate(socks):
        time.sleep(random.random() * 0.02)
        s.sendall(f"client {n} line {i} {os.urandom(3).hex()}\\n".encode())
        s.recv(100)
for s in socks:
    s.close()
""",
    # GET twice and POST once, over HTTP or, given a CA file, HTTPS
    "net_http_server": """
import ssl, sys, urllib.request
port, cafile = int(sys.argv[1]), sys.argv[2:]
kw = {"context": ssl.create_default_context(cafile=cafile[0])} if cafile else {}
base = f"{'https' if cafile else 'http'}://127.0.0.1:{port}"
for path in ("/a", "/b?x=1"):
    urllib.request.urlopen(f"{base}{path}", timeout=10, **kw).read()
urllib.request.urlopen(urllib.request.Request(f"{base}/p", data=b"posted", method="POST"),
                       timeout=10, **kw).read()
""",
}
SERVER_CLIENTS["net_wsgi_server"] = SERVER_CLIENTS["net_http_server"]
# six requests at once, from six threads of the client process
SERVER_CLIENTS["net_threaded_server"] = """
import sys, threading, urllib.request
port = int(sys.argv[1])
def get(n):
    urllib.request.urlopen(f"http://127.0.0.1:{port}/r{n}", timeout=10).read()
clients = [threading.Thread(target=get, args=(n,)) for n in range(6)]
for c in clients:
    c.start()
for c in clients:
    c.join()
"""
SERVED = {"net_server": 3, "net_http_server": 3, "net_wsgi_server": 3,
          "net_threaded_server": 6}


def record_server(world, name, server_args=(), client_args=()):
    """Record the server while a client process talks to it."""
    trace = world.new_trace(name)
    cmd = [PY, "-m", "retrace", "record", "-o", trace, "--", world.programs / f"{name}.py",
           SERVED[name], *server_args]
    proc = subprocess.Popen([str(c) for c in cmd], cwd=world.work, env=world.record_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        first = proc.stdout.readline()
        port = re.match(rb"port: (\d+)\n", first)
        assert port, first + proc.stderr.read()
        client = run([PY, "-c", SERVER_CLIENTS[name], port.group(1).decode(), *client_args],
                     cwd=world.work, env=world.record_env())
        assert client.code == 0, client.describe()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return Run(cmd, proc.returncode, first + out, err, 0, trace)


@pytest.mark.parametrize("name", ["net_server", "net_http_server", "net_wsgi_server",
                                  "net_threaded_server"])
def test_server_replays_without_clients(world, name):
    rec = record_server(world, name)
    assert rec.code == 0, rec.describe()
    if name == "net_threaded_server":
        assert rec.out.count(b"served /r") == 6, rec.describe()
        assert rec.err.count(b'"GET /r') == 6, rec.describe()   # http.server's log lines
    elif name == "net_server":
        assert rec.out.count(b" sent: ") >= 3 and b"served: 3" in rec.out, rec.describe()
    elif name == "net_wsgi_server":
        assert b"app: POST /p b'posted' -> " in rec.out, rec.describe()
        assert rec.err.count(b'"GET /') == 2, rec.describe()   # wsgiref's log lines
    else:
        assert b"posted to /p: b'posted'" in rec.out, rec.describe()
        assert rec.err.count(b'"GET /') == 2, rec.describe()   # http.server's log lines
    replay_offline(world, rec, name)


def test_tls_server_replays_without_clients_or_keys(world, pki):
    keys = world.root / "keys"
    keys.mkdir()
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, keys / f)
    rec = record_server(world, "net_http_server", [keys / "server.pem", keys / "server.key"],
                        [pki / "ca.pem"])
    assert rec.code == 0, rec.describe()
    assert b"posted to /p: b'posted'" in rec.out and b"\ntls: TLSv1." in rec.out, rec.describe()
    shutil.rmtree(keys)
    replay_offline(world, rec, "TLS server")


# --------------------------------------------------------------------------
# Replay reaches no network


def _strace_works():
    if shutil.which("strace") is None:
        return False
    try:
        return subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("name", ["net_requests", "net_asyncio"])
def test_replay_opens_no_network_socket(world, peer, cafile, name):
    if not _strace_works():
        pytest.skip("strace is not available or not permitted here")
    rec = client_case(world, name, peer, cafile).record()
    assert rec.code == 0, rec.describe()
    peer.stop()
    log = world.root / "strace.log"
    rep = world.replay(rec.trace, prefix=["strace", "-f", "-qq", "-o", log, "-e",
                                          "trace=socket,socketpair,connect,bind,accept,accept4"])
    assert_same_run(rec, rep)
    calls = log.read_text()
    inet = [line for line in calls.splitlines() if "AF_INET" in line or "sin_port" in line
            or "sin6_port" in line]
    assert not inet, "replay used the network:\n" + "\n".join(inet[:20])
    # the only socket replay makes: the AF_UNIX pair its placeholders are copied from
    assert calls.count("socketpair(AF_UNIX") <= 1, calls
    assert "connect(" not in calls and "bind(" not in calls, calls


OFF_MODE = r"""
import select, socket, ssl, sys
from retrace import _engine, _net
_net.install()                      # patched, but nothing is recorded or replayed
assert _engine.mode() == "off"
a, b = socket.socketpair()
a.sendall(b"hello")
buf = bytearray(10)
n = b.recv_into(buf)
assert select.select([b], [a], [], 0) == ([], [a], []), "select"
a.sendall(b"!")
assert select.select([b], [], [], 1)[0] == [b]
print(n, bytes(buf[:n]), b.recv(1), isinstance(a, socket.socket), a.fileno() > 2)
ctx = ssl.create_default_context()
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(incoming, outgoing, server_hostname="example.org")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    print("client hello:", outgoing.pending > 0, len(outgoing.read()) > 0)
print("sslobj:", type(obj._sslobj).__module__, type(obj._sslobj).__name__)
"""


def test_patched_calls_pass_through_when_nothing_is_recorded(tmp_path):
    """With the boundary off (no recording, the recording over, or Retrace's
    own work), every patched call behaves as the original."""
    result = run([PY, "-c", OFF_MODE], cwd=tmp_path, env=dict(os.environ))
    assert result.code == 0, result.describe()
    assert result.out == (b"5 b'hello' b'!' True True\nclient hello: True True\n"
                          b"sslobj: _ssl _SSLSocket\n"), result.describe()
