"""Sockets, DNS, select/poll/epoll and TLS at the boundary.

Socket objects keep their real type: the methods of `_socket.socket` that
reach the network are Boundary methods in the type's own dict, so
`socket.socket`, `ssl.SSLSocket` and everything built on them (http.client,
urllib, requests, asyncio, socketserver) is internal code that replays
because it receives the same bytes.

In replay no network socket exists.  Creating a socket (`__init__`) is an
event whose recorded value is the socket's family, type, proto, descriptor
number and timeout; replay initialises the object over a *placeholder*: a
dup() of one end of an AF_UNIX socketpair made once per replay process.
Every transfer, connect, accept, option and address query is an event, so
the placeholder is never used for I/O; closing a socket closes its
placeholder (closing is not an event: finalizers close sockets at times
replay cannot match).  `fileno()` and `detach()` answer the recorded
descriptor number in replay, from a table placeholder fd -> recorded fd, so
they are not events in either run: select/poll/epoll results, which refer to
recorded numbers, find the program's own objects.

select.select() records which of the caller's objects were ready (their
positions) and replay hands back the caller's objects.  poll() objects are
bookkeeping except poll(); epoll's register/modify/unregister/poll are events
(an epoll fd is created for real in replay: it is not a network resource).

TLS: an `ssl.SSLContext` is real in both runs, but whatever reads files or
system state (loading certificates, cipher lists, keylog file) is an event,
so replay needs no certificate or key.  `_wrap_socket`/`_wrap_bio` return the
OpenSSL connection object in recording and a stand-in with the same methods
in replay; each method is the same Boundary in both.  `_ssl` is patched when
the program first imports it (loading OpenSSL costs milliseconds).

A socket's finalizer runs with the boundary off: the cyclic GC runs it at
times replay cannot match.

Recording functions written here make the real call through _engine.world()
and name it as their fallback (_settings.fallback_to): a bug in their own
code cuts the recording, and the program gets what the real call returned.
"""
import os
import weakref

import _socket
import select

from . import _engine, _onimport
from ._settings import fallback_to

world = _engine.world

# The real callables, taken before patching (posix functions may already be
# Boundary wrappers: their __wrapped__ is the original).
_real_dup = getattr(os.dup, "__wrapped__", os.dup)
_real_os_close = getattr(os.close, "__wrapped__", os.close)
_real_socketpair = _socket.socketpair
_SocketType = _socket.socket
_real_init = _SocketType.__dict__["__init__"]
_real_fileno = _SocketType.__dict__["fileno"]
_real_detach = _SocketType.__dict__["detach"]
_real_close = _SocketType.__dict__["close"]
_real_settimeout = _SocketType.__dict__["settimeout"]
_real_gettimeout = _SocketType.__dict__["gettimeout"]
_real_finalize = _SocketType.__dict__["__del__"]

_installed = False

# Replay: placeholder fd -> the descriptor number the recorded socket had.
_fdmap = {}
_placeholder_source = None


def _placeholder():
    """A fresh descriptor for a replayed socket: a dup() of one end of an
    AF_UNIX socketpair (a real socket, so socket(fileno=...) accepts it, and
    one that reaches nothing)."""
    global _placeholder_source
    if _placeholder_source is None:
        a, b = _real_socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        _placeholder_source = _real_detach(a)
        _real_close(b)
    return _real_dup(_placeholder_source)


def _view(buffer):
    """The bytes of a writable buffer, as a flat memoryview."""
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _boundary_method(cls, name, qualname, func=None, **options):
    """Replace cls.name by a BoundaryMethod (func defaults to the original)."""
    orig = cls.__dict__[name]
    wrapper = _engine.BoundaryMethod(qualname, func or orig, **options)
    _engine.patch_type(cls, name, wrapper)
    return wrapper


def _split(name, record, replay, real):
    """A split event: `record(*args)` returns (recorded, returned), making
    the call `real(*args)` through world(); `replay(recorded, *args)`
    rebuilds the result. A BoundaryMethod, so that it binds like a method in
    a class."""
    return _engine.BoundaryMethod(name, record, replay=replay, split=True,
                                  fallback=fallback_to(real))


def _split_method(cls, name, qualname, record, replay, real):
    call = _split(qualname, record, replay, real)
    _engine.patch_type(cls, name, call)
    return call


def _methods(cls, prefix, names):
    """Plain events: each listed method of cls that this Python has."""
    return {name: _boundary_method(cls, name, f"{prefix}.{name}")
            for name in names if name in cls.__dict__}


def _recorded_getter(cls, name, qualname, settable=False, record=None, replay=None):
    """Replace the C attribute cls.name by a property whose getter is an event
    (a split one with record/replay, record reading it through world(); the
    setter, if any, stays real). Returns the property."""
    orig = cls.__dict__[name]

    def get(obj):
        return orig.__get__(obj, type(obj))

    if record is None:
        getter = _engine.BoundaryMethod(qualname, get)
    else:
        getter = _split(qualname, record, replay, get)
    prop = property(getter, (lambda obj, value: orig.__set__(obj, value)) if settable else None)
    _engine.patch_type(cls, name, prop)
    return prop


def _patch_module(module, names, prefix, replaced):
    for name in names:
        orig = module.__dict__.get(name)
        if orig is None or id(orig) in replaced:
            continue
        wrapper = _engine.Boundary(f"{prefix}.{name}", orig)
        setattr(module, name, wrapper)
        replaced[id(orig)] = (orig, wrapper)


def _rewrite(replaced):
    from . import _patch
    _patch._rewrite_references(replaced)


# --------------------------------------------------------------------------
# Sockets

# Methods that are plain events: their result (or exception) is all replay
# needs, and in replay they must not touch the placeholder.
SOCKET_EVENTS = [
    "connect", "connect_ex", "bind", "listen", "_accept", "send", "sendall", "sendto",
    "sendmsg", "sendmsg_afalg", "recv", "recvfrom", "recvmsg", "setsockopt", "getsockopt",
    "shutdown", "getpeername", "getsockname", "ioctl", "share",
]


def _record_init(self, family=-1, type=-1, proto=-1, fileno=None):
    world(_real_init, self, family, type, proto, fileno)
    return (self.family, self.type, self.proto, _real_fileno(self),
            _real_gettimeout(self)), None


def _init_placeholder(self, family, type, proto, fd, timeout):
    ph = _placeholder()
    try:
        _real_init(self, family, type, proto, ph)
        _real_settimeout(self, timeout)
    except BaseException:
        _real_os_close(ph)
        raise
    _fdmap[ph] = fd


def _replay_init(recorded, self, family=-1, type=-1, proto=-1, fileno=None):
    rfamily, rtype, rproto, fd, timeout = recorded
    # The caller's own arguments where given (type may carry SOCK_NONBLOCK),
    # else what the recorded socket detected from its descriptor.
    _init_placeholder(self, rfamily if family in (-1, None) else family,
                      rtype if type in (-1, None) else type,
                      rproto if proto in (-1, None) else proto, fd, timeout)


def _record_recv_into(self, buffer, nbytes=0, flags=0):
    n = world(_orig_recv_into, self, buffer, nbytes, flags)
    view = memoryview(buffer)          # recorded without a copy (inlined: the hot path)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view[:n], n


def _replay_recv_into(data, self, buffer, nbytes=0, flags=0):
    _view(buffer)[:len(data)] = data
    return len(data)


def _record_recvfrom_into(self, buffer, nbytes=0, flags=0):
    n, address = world(_orig_recvfrom_into, self, buffer, nbytes, flags)
    return (_view(buffer)[:n], address), (n, address)


def _replay_recvfrom_into(recorded, self, buffer, nbytes=0, flags=0):
    data, address = recorded
    _view(buffer)[:len(data)] = data
    return len(data), address


def _recvmsg_into_list(self, buffers, *args):
    """(the buffers as a list, what recvmsg_into returned): the program's
    iterable of buffers is consumed once, by the real call."""
    buffers = list(buffers)
    return buffers, _orig_recvmsg_into(self, buffers, *args)


def _unrecorded_recvmsg_into(done, self, buffers, *args):
    return done[0][1] if done else _orig_recvmsg_into(self, buffers, *args)


def _record_recvmsg_into(self, buffers, *args):
    buffers, result = world(_recvmsg_into_list, self, buffers, *args)
    left, parts = result[0], []
    for buf in buffers:
        view = _view(buf)
        parts.append(view[:left].tobytes())
        left -= len(parts[-1])
        if left <= 0:
            break
    return (b"".join(parts), *result[1:]), result


def _replay_recvmsg_into(recorded, self, buffers, *args):
    data, rest = recorded[0], recorded[1:]
    pos = 0
    for buf in buffers:
        if pos >= len(data):
            break
        view = _view(buf)
        chunk = data[pos:pos + len(view)]
        view[:len(chunk)] = chunk
        pos += len(chunk)
    return (len(data), *rest)


def _record_socketpair(*args):
    pair = world(_real_socketpair, *args)
    return tuple((s.family, s.type, s.proto, _real_fileno(s), _real_gettimeout(s))
                 for s in pair), pair


def _replay_socketpair(recorded, *args):
    pair = []
    for family, type, proto, fd, timeout in recorded:
        s = _SocketType.__new__(_SocketType)
        _init_placeholder(s, family, type, proto, fd, timeout)
        pair.append(s)
    return tuple(pair)


# Replay only: what fileno() and detach() say is the recorded descriptor.
def _replay_fileno(self):
    fd = _real_fileno(self)
    return _fdmap.get(fd, fd)


def _replay_detach(self):
    fd = _real_detach(self)
    if fd in _fdmap:
        _real_os_close(fd)   # the placeholder; the recorded fd lives on in the trace
        return _fdmap.pop(fd)
    return fd


def _replay_close(self):
    _fdmap.pop(_real_fileno(self), None)
    _real_close(self)


def _finalize(self):
    """A socket left open and collected: its finalizer closes it and builds a
    ResourceWarning from repr(), which asks getsockname() and getpeername().
    The cyclic GC runs it at times replay cannot match, so it runs with the
    boundary off (in replay it closes the placeholder)."""
    _engine.suspend()
    try:
        _real_finalize(self)
    finally:
        _engine.resume()


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _install_finalizer():
    _engine.patch_type(_SocketType, "__del__", _finalize)
    # A subclass made before now (socket.socket, if imported) copied the C
    # finalizer into its slot: setting and deleting __del__ recomputes it.
    for sub in list(_subclasses(_SocketType)):
        if "__del__" not in sub.__dict__:
            sub.__del__ = _finalize
            del sub.__del__


def _install_sockets(replay):
    global _orig_recv_into, _orig_recvfrom_into, _orig_recvmsg_into
    S = _SocketType
    _methods(S, "_socket.socket", SOCKET_EVENTS)
    _orig_recv_into = S.__dict__["recv_into"]
    _orig_recvfrom_into = S.__dict__["recvfrom_into"]
    _split_method(S, "recv_into", "_socket.socket.recv_into", _record_recv_into,
                  _replay_recv_into, _orig_recv_into)
    _split_method(S, "recvfrom_into", "_socket.socket.recvfrom_into", _record_recvfrom_into,
                  _replay_recvfrom_into, _orig_recvfrom_into)
    if "recvmsg_into" in S.__dict__:
        _orig_recvmsg_into = S.__dict__["recvmsg_into"]
        _engine.patch_type(S, "recvmsg_into", _engine.BoundaryMethod(
            "_socket.socket.recvmsg_into", _record_recvmsg_into, replay=_replay_recvmsg_into,
            split=True, fallback=_unrecorded_recvmsg_into))
    _split_method(S, "__init__", "_socket.socket.__init__", _record_init, _replay_init,
                  _real_init)
    _socket.socketpair = _split("_socket.socketpair", _record_socketpair,
                                _replay_socketpair, _real_socketpair)
    _install_finalizer()
    if replay:
        _engine.patch_type(S, "fileno", _replay_fileno)
        _engine.patch_type(S, "detach", _replay_detach)
        _engine.patch_type(S, "close", _replay_close)


# --------------------------------------------------------------------------
# select, poll, epoll


def _record_select(rlist, wlist, xlist, *timeout):
    lists = (list(rlist), list(wlist), list(xlist))
    ready = world(_real_select, *lists, *timeout)
    positions = []
    for given, got in zip(lists, ready):
        ids = {id(obj) for obj in got}
        positions.append([i for i, obj in enumerate(given) if id(obj) in ids])
    return tuple(positions), ready


def _replay_select(positions, rlist, wlist, xlist, *timeout):
    lists = (list(rlist), list(wlist), list(xlist))
    return tuple([given[i] for i in pos] for given, pos in zip(lists, positions))


def _install_select(replaced):
    global _real_select
    _real_select = select.select
    wrapper = _split("select.select", _record_select, _replay_select, _real_select)
    select.select = wrapper
    replaced[id(_real_select)] = (_real_select, wrapper)
    if hasattr(select, "poll"):
        poll = type(select.poll())
        # register/modify/unregister only store descriptors in a dict
        _methods(poll, "select.poll", ["poll"])
    if hasattr(select, "epoll"):
        _methods(select.epoll, "select.epoll", ["register", "modify", "unregister", "poll",
                                                "fileno"])
    if hasattr(select, "devpoll"):
        _methods(type(select.devpoll()), "select.devpoll", ["poll", "fileno"])


# --------------------------------------------------------------------------
# TLS


class _Recorded:
    """Attributes for a stand-in, recorded from a real object."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


class SSLSessionStandIn:
    """What an `_ssl.SSLSession` read in recording is in replay."""

    def __init__(self, info):
        self.id, self.time, self.timeout, self.ticket_lifetime_hint, self.has_ticket = info

    def __eq__(self, other):
        return isinstance(other, SSLSessionStandIn) and other.id == self.id

    __hash__ = None


# Named like the objects they stand for, as type(obj).__name__ and repr show them.
SSLSessionStandIn.__module__, SSLSessionStandIn.__name__ = "_ssl", "SSLSession"
SSLSessionStandIn.__qualname__ = "SSLSession"


class CertificateStandIn:
    """What an `_ssl.Certificate` (get_verified_chain) is in replay."""

    def __init__(self, der, info):
        self._der = der
        self._info = info

    def public_bytes(self, format=None):
        import ssl
        if format is None or format == ssl._ssl.ENCODING_PEM:
            return ssl.DER_cert_to_PEM_cert(self._der)
        return self._der

    def get_info(self):
        return self._info

    def __eq__(self, other):
        return isinstance(other, CertificateStandIn) and other._der == self._der

    __hash__ = None


CertificateStandIn.__module__, CertificateStandIn.__name__ = "_ssl", "Certificate"
CertificateStandIn.__qualname__ = "Certificate"


class SSLObjectStandIn:
    """What `_ssl._SSLSocket` (the OpenSSL connection) is in replay.

    It has the attributes ssl.SSLSocket and ssl.SSLObject read, and every
    method is the same Boundary that the real type has in recording, so the
    replay returns what the real connection returned."""

    def __init__(self, context, sock, recorded, owner, session):
        self.context = context
        self.server_side, self.server_hostname = recorded
        self._sock = None if sock is None else weakref.ref(sock)
        self.owner = owner
        self._session = session

    @property
    def owner(self):
        return None if self._owner is None else self._owner()

    @owner.setter
    def owner(self, value):
        self._owner = None if value is None else weakref.ref(value)

    def _shutdown_result(self):
        return None if self._sock is None else self._sock()

    def __repr__(self):
        return f"<retrace stand-in for _ssl._SSLSocket {self.server_hostname!r}>"


SSL_SOCKET_EVENTS = [
    "do_handshake", "write", "pending", "getpeercert", "cipher", "shared_ciphers", "version",
    "selected_alpn_protocol", "selected_npn_protocol", "compression",
    "get_channel_binding", "verify_client_post_handshake",
]
SSL_CONTEXT_EVENTS = [
    # they read files or the system's configuration
    "load_cert_chain", "load_verify_locations", "load_dh_params", "set_default_verify_paths",
    "set_ciphers", "set_ecdh_curve", "get_ciphers", "get_ca_certs", "cert_store_stats",
    "session_stats",
]
SSL_FUNCTIONS = ["RAND_bytes", "RAND_pseudo_bytes", "RAND_status", "get_default_verify_paths",
                 "_test_decode_cert", "enum_certificates", "enum_crls"]


def _install_ssl(_ssl):
    """Patch the freshly imported (or already loaded) _ssl module."""
    replaced = {}
    _patch_module(_ssl, SSL_FUNCTIONS, "_ssl", replaced)
    if replaced:
        _rewrite(replaced)

    ctx = _ssl._SSLContext
    _methods(ctx, "_ssl._SSLContext", SSL_CONTEXT_EVENTS)
    if "keylog_filename" in ctx.__dict__:
        # setting it opens (and later writes) a file
        orig_keylog = ctx.__dict__["keylog_filename"]
        set_keylog = _engine.BoundaryMethod("_ssl._SSLContext.keylog_filename",
                                            lambda c, value: orig_keylog.__set__(c, value))
        _engine.patch_type(ctx, "keylog_filename",
                           property(lambda c: orig_keylog.__get__(c, type(c)), set_keylog))

    orig_wrap_socket = ctx.__dict__["_wrap_socket"]
    orig_wrap_bio = ctx.__dict__["_wrap_bio"]

    def record_wrap_socket(context, sock, server_side, server_hostname=None, *, owner=None,
                           session=None):
        obj = world(orig_wrap_socket, context, sock, server_side, server_hostname, owner=owner,
                    session=session)
        return (obj.server_side, obj.server_hostname), obj

    def replay_wrap_socket(recorded, context, sock, server_side, server_hostname=None, *,
                           owner=None, session=None):
        return SSLObjectStandIn(context, sock, recorded, owner, session)

    def record_wrap_bio(context, incoming, outgoing, server_side, server_hostname=None, *,
                        owner=None, session=None):
        obj = world(orig_wrap_bio, context, incoming, outgoing, server_side, server_hostname,
                    owner=owner, session=session)
        return (obj.server_side, obj.server_hostname), obj

    def replay_wrap_bio(recorded, context, incoming, outgoing, server_side,
                        server_hostname=None, *, owner=None, session=None):
        return SSLObjectStandIn(context, None, recorded, owner, session)

    _split_method(ctx, "_wrap_socket", "_ssl._SSLContext._wrap_socket", record_wrap_socket,
                  replay_wrap_socket, orig_wrap_socket)
    _split_method(ctx, "_wrap_bio", "_ssl._SSLContext._wrap_bio", record_wrap_bio,
                  replay_wrap_bio, orig_wrap_bio)

    # The connection object: one Boundary per method, shared by the real type
    # (recording) and the stand-in (replay).
    sslsock = _ssl._SSLSocket
    stand_in = SSLObjectStandIn
    for name, wrapper in _methods(sslsock, "_ssl._SSLSocket", SSL_SOCKET_EVENTS).items():
        setattr(stand_in, name, wrapper)

    orig_read = sslsock.__dict__["read"]

    def record_read(obj, size, *buffer):
        if buffer:
            n = world(orig_read, obj, size, *buffer)
            return _view(buffer[0])[:n], n
        data = world(orig_read, obj, size)
        return data, data

    def replay_read(data, obj, size, *buffer):
        if buffer:
            _view(buffer[0])[:len(data)] = data
            return len(data)
        return data

    read = _split("_ssl._SSLSocket.read", record_read, replay_read, orig_read)
    _engine.patch_type(sslsock, "read", read)
    stand_in.read = read

    orig_shutdown = sslsock.__dict__["shutdown"]
    stand_in.shutdown = _split_method(
        sslsock, "shutdown", "_ssl._SSLSocket.shutdown",
        lambda obj: (None, world(orig_shutdown, obj)), lambda recorded, obj: obj._shutdown_result(),
        orig_shutdown)

    for name in ("get_verified_chain", "get_unverified_chain"):
        if name in sslsock.__dict__:
            orig = sslsock.__dict__[name]
            setattr(stand_in, name, _split_method(
                sslsock, name, f"_ssl._SSLSocket.{name}", _chain_recorder(orig), _replay_chain,
                orig))

    stand_in.session_reused = _recorded_getter(sslsock, "session_reused",
                                               "_ssl._SSLSocket.session_reused")
    orig_session = sslsock.__dict__["session"]

    def record_session(obj):
        s = world(orig_session.__get__, obj, type(obj))
        info = None if s is None else (s.id, s.time, s.timeout, s.ticket_lifetime_hint,
                                       s.has_ticket)
        return info, s

    def replay_session(info, obj):
        if obj._session is not None:
            return obj._session
        return None if info is None else SSLSessionStandIn(info)

    session = _recorded_getter(sslsock, "session", "_ssl._SSLSocket.session", settable=True,
                               record=record_session, replay=replay_session)
    stand_in.session = property(session.fget,
                                lambda obj, value: setattr(obj, "_session", value))

    bio = _ssl.MemoryBIO
    _methods(bio, "_ssl.MemoryBIO", ["read", "write", "write_eof"])
    _recorded_getter(bio, "pending", "_ssl.MemoryBIO.pending")
    _recorded_getter(bio, "eof", "_ssl.MemoryBIO.eof")


def _chain_recorder(orig):
    def record(obj):
        import _ssl
        chain = world(orig, obj)
        info = None if chain is None else [(c.public_bytes(_ssl.ENCODING_DER), c.get_info())
                                           for c in chain]
        return info, chain
    return record


def _replay_chain(info, obj):
    return None if info is None else [CertificateStandIn(der, i) for der, i in info]


# --------------------------------------------------------------------------


def install():
    """Patch sockets, DNS, select and TLS; runs once at startup, in recording
    and replay alike, and makes no boundary call itself."""
    global _installed
    if _installed:
        return
    _installed = True
    replay = _engine.mode() == "replay"
    replaced = {}
    _install_sockets(replay)
    _install_select(replaced)
    _rewrite(replaced)
    _onimport.when_imported("_ssl", _install_ssl)
