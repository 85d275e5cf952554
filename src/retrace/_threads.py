"""Threads at the boundary: thread start and end, locks, SimpleQueue.

Recording stays free-running; it only writes down the order in which threads
cross the boundary.  Replay runs one thread at a time in that order (the C
demultiplexer, csrc/demux.c), so the program's threads interleave the same way
in every replay.

- A thread started by the program is numbered by its parent in creation order
  and announces itself with a `thread.begin` event before running any of the
  program's code, and a `thread.end` event after.  Starting it is an ordered
  event: replay really starts the thread, in the same place.
- Lock and RLock operations, and SimpleQueue operations, are events.
  Operations that can block (acquire, get, join) record their outcome after
  they return; operations that unblock others (release, put) are ordered
  events recorded before they run, so a waiter's wake-up always follows its
  cause in the trace.  Replay performs each operation for real, in its turn,
  without blocking: the recorded order guarantees that a lock the recording
  acquired is free, and a timed-out acquire returns False at once.
- The import system's module locks run unrecorded: imports are internal work.
- Finalizers run by the garbage collector take locks at moments replay does
  not share (_gc.py): those operations are not events; in replay they run
  for real, and an acquire takes the lock only if it is free.
"""
import collections
import functools
import itertools
import _queue
import _thread
import gc
import os
import sys
import types
import weakref

from . import _engine, _onimport
from ._settings import fallback_to
from .errors import FinalizerRefused

# How long replay waits for a lock that the recording acquired but that is
# still held: a thread that ended releases its state lock from C, slightly
# after its last event.
SETTLE_SECONDS = 5.0

# The lock type's own methods, taken before install() patches them: Retrace's
# bookkeeping locks must not be events.
_acquire_unrecorded = _thread.LockType.acquire
_release_unrecorded = _thread.LockType.release


def _number_and_start(start, function, args, kwargs):
    tid = _engine.spawn_thread()
    return start(functools.partial(_thread_main, tid, function, args, kwargs))


def _thread_main(tid, function, args, kwargs):
    _engine.enter_thread(tid)
    try:
        _take_ids(_begin())
        return function(*args, **kwargs)
    finally:
        try:
            _end()
        finally:
            _engine.leave_thread()


# A thread's identifiers (get_ident(), get_native_id()) come from the OS and
# differ in replay: `thread.begin` records them, and `thread.main` the main
# thread's; replay gives the program the recorded ones (_replay_identifiers).
_real_get_ident = _thread.get_ident
_real_get_native_id = _thread.get_native_id
_recorded_ids = _thread._local()
_program_idents = {}   # replay: a thread's real get_ident() -> the recorded one


def _own_ids():
    return _real_get_ident(), _real_get_native_id()


_begin = _engine.Boundary("thread.begin", _own_ids)
_end = _engine.Boundary("thread.end", lambda: None)
_main = _engine.Boundary("thread.main", _own_ids)


def _take_ids(ids):
    """Replay: this thread answers with the identifiers it had when recorded."""
    if _engine.mode() == "replay" and ids is not None:
        _recorded_ids.ids = ids
        _program_idents[_real_get_ident()] = ids[0]


def program_ident(real_ident):
    """The identifier the program knows a thread by, from its real one."""
    return _program_idents.get(real_ident, real_ident)


def _get_ident():
    ids = getattr(_recorded_ids, "ids", None)
    return ids[0] if ids else _real_get_ident()


def _get_native_id():
    ids = getattr(_recorded_ids, "ids", None)
    return ids[1] if ids else _real_get_native_id()


def _replay_identifiers(replaced):
    """The main thread's identifiers are the recorded ones, also in the
    threading module's own records of it; then get_ident() and
    get_native_id() answer the recorded ones in every thread that has them."""
    _take_ids(_main())
    if _engine.mode() != "replay":
        return
    threading = sys.modules.get("threading")
    if threading is not None:
        main = threading.main_thread()
        real_ident = main._ident
        main._ident, main._native_id = _recorded_ids.ids
        active = threading._active
        if active.get(real_ident) is main:
            active[main._ident] = active.pop(real_ident)
    for orig, ours in ((_real_get_ident, _get_ident), (_real_get_native_id, _get_native_id)):
        replaced[id(orig)] = (orig, ours)
    _thread.get_ident, _thread.get_native_id = _get_ident, _get_native_id


def _thread_starters(replaced):
    real_start_new = _thread.start_new_thread
    start_new = _engine.Boundary("_thread.start_new_thread", real_start_new, ordered=True)

    def start_new_thread(function, args, kwargs=None):
        if not _engine.active():
            return real_start_new(function, args, kwargs or {})
        return _number_and_start(lambda f: start_new(f, ()), function, args, kwargs or {})

    replaced[id(real_start_new)] = (real_start_new, start_new_thread)
    _thread.start_new_thread = _thread.start_new = start_new_thread

    real_joinable = getattr(_thread, "start_joinable_thread", None)       # 3.13
    if real_joinable is not None:
        joinable = _engine.Boundary("_thread.start_joinable_thread", real_joinable, ordered=True)

        def start_joinable_thread(function, handle=None, daemon=True):
            if not _engine.active():
                return real_joinable(function, handle=handle, daemon=daemon)
            return _number_and_start(
                lambda f: joinable(f, handle=handle, daemon=daemon), function, (), {})

        replaced[id(real_joinable)] = (real_joinable, start_joinable_thread)
        _thread.start_joinable_thread = start_joinable_thread


def _settle(acquire, name):
    """Replay of an acquire: take the lock for real, without waiting for a
    lock that replay's order says is free; a timed-out acquire fails at once."""
    def replay(recorded, lock, *args, **kwargs):
        if not recorded:
            return recorded
        if acquire(lock, False) or acquire(lock, True, SETTLE_SECONDS):
            return recorded
        return _engine.divergence(
            "the recording acquired this lock here, but in replay it is held",
            f"{name} -> {recorded!r}", f"{name} on a held lock")
    return replay


def _if_free(acquire, name):
    """Replay of an acquire made by a finalizer the garbage collector runs: the
    lock is taken only if it is free. The thread holding it waits for the
    baton, which this thread holds, so waiting would never end."""
    def collector(lock, blocking=True, timeout=-1):
        if acquire(lock, False):
            return True
        if not blocking or timeout >= 0:
            return False
        raise FinalizerRefused(f"retrace: in replay, a finalizer cannot wait for {name}: "
                               f"another thread holds the lock")
    return collector


def _patch_lock_type(lock_type, prefix, acquires, releases):
    originals = {name: lock_type.__dict__[name] for name in acquires + releases}
    for name in acquires:
        _engine.patch_type(lock_type, name, _engine.BoundaryMethod(
            f"{prefix}.{name}", originals[name], replay=_settle(originals["acquire"], name),
            collector=_if_free(originals["acquire"], f"{prefix}.{name}")))
    for name in releases:
        _engine.patch_type(lock_type, name, _engine.BoundaryMethod(
            f"{prefix}.{name}", originals[name], ordered=True))


def _patch_rlock_restore():
    """RLock._acquire_restore (Condition.wait) blocks in C: replay first checks
    the lock is free, then restores for real."""
    rlock = _thread.RLock
    orig = rlock.__dict__["_acquire_restore"]
    check = _settle(rlock.__dict__["acquire"], "_thread.RLock._acquire_restore")
    release = rlock.__dict__["release"]

    def replay(recorded, lock, state):
        check(True, lock)
        release(lock)
        return orig(lock, state)

    if_free = _if_free(rlock.__dict__["acquire"], "_thread.RLock._acquire_restore")

    def collector(lock, state):
        if_free(lock)
        release(lock)
        return orig(lock, state)

    _engine.patch_type(rlock, "_acquire_restore", _engine.BoundaryMethod(
        "_thread.RLock._acquire_restore", orig, replay=replay, collector=collector))


def _patch_simple_queue():
    """Items are the program's objects, so a put is an ordered event and a get
    records which put delivered its item, named by that put's event index.
    The order of gets alone is not enough: 3.13 hands an item straight to a
    waiting getter, which need not be the first to record its get.

    Replay puts nothing in the real queue: the items wait in a table by put,
    each get takes the item of its recorded put, and qsize() and empty()
    return what they returned in the recording.

    A finalizer's put (a ThreadPoolExecutor's weakref callback wakes its
    workers) is no event: the get that takes its item records "gc". Replay
    keeps what finalizers put apart, and a get of "gc" takes the oldest, after
    a collection if the replay's collector has not put it yet."""
    sq = _queue.SimpleQueue
    # Puts and gets of one item (None, a small int) race on its entry: between
    # bytecodes another thread may switch in, so every step on it is locked.
    books = types.SimpleNamespace(lock=_thread.allocate_lock())
    os.register_at_fork(after_in_child=lambda: setattr(books, "lock", _thread.allocate_lock()))
    pending_puts = weakref.WeakKeyDictionary()   # recording: queue -> {id(item): [put index]}
    pending_items = weakref.WeakKeyDictionary()  # replay: queue -> {put index: item}
    collected_items = weakref.WeakKeyDictionary()  # replay: queue -> deque of finalizers' items

    def putter(real_put):
        def put(queue, item, *args, **kwargs):
            index = "gc" if _engine.collecting() else _engine.thread_event_index()
            if _engine.mode() == "replay":
                pending_items.setdefault(queue, {})[index] = item
                return None
            # noted before the item is in the queue, where a getter may take it
            _acquire_unrecorded(books.lock)
            try:
                by_item = pending_puts.setdefault(queue, {})
                by_item.setdefault(id(item), collections.deque()).append(index)
            finally:
                _release_unrecorded(books.lock)
            return _engine.world(real_put, queue, item, *args, **kwargs)
        return put

    def getter(real_get):
        def get(queue, *args, **kwargs):
            item = _engine.world(real_get, queue, *args, **kwargs)
            _acquire_unrecorded(books.lock)
            try:
                by_item = pending_puts.get(queue, {})
                indexes = by_item.get(id(item))
                index = indexes.popleft() if indexes else None
                if indexes is not None and not indexes:
                    del by_item[id(item)]
            finally:
                _release_unrecorded(books.lock)
            return index, item
        return get

    def replay_get(recorded, queue, *args, **kwargs):
        if recorded == "gc":
            if not collected_items.get(queue):
                gc.collect()
            if collected_items.get(queue):
                return collected_items[queue].popleft()
        try:
            return pending_items.get(queue, {}).pop(recorded)
        except KeyError:
            return _engine.divergence(
                "the recording got an item from this queue here, but in replay that item "
                "was never put", f"_queue.SimpleQueue.get -> the item of event {recorded}",
                "a queue without it")

    def collector_put(queue, item, *args, **kwargs):
        collected_items.setdefault(queue, collections.deque()).append(item)

    def collector_get(queue, *args, **kwargs):
        raise FinalizerRefused("retrace: in replay, a finalizer cannot take an item from a "
                               "SimpleQueue")

    # A bug in the bookkeeping cuts the recording; the queue works on (fallback).
    for name in ("put", "put_nowait"):
        real = sq.__dict__[name]
        _engine.patch_type(sq, name, _engine.BoundaryMethod(
            f"_queue.SimpleQueue.{name}", putter(real), ordered=True, collector=collector_put,
            fallback=fallback_to(real)))
    for name in ("get", "get_nowait"):
        real = sq.__dict__[name]
        _engine.patch_type(sq, name, _engine.BoundaryMethod(
            f"_queue.SimpleQueue.{name}", getter(real), split=True, replay=replay_get,
            collector=collector_get, fallback=fallback_to(real)))
    for name in ("qsize", "empty"):
        _engine.patch_type(sq, name, _engine.BoundaryMethod(
            f"_queue.SimpleQueue.{name}", sq.__dict__[name]))


def _patch_joins(replaced):
    """3.13 joins threads in C (_ThreadHandle.join, _thread._shutdown): the
    outcome is recorded after they return; replay joins for real in that turn,
    when the threads joined have made their last event."""
    handle = getattr(_thread, "_ThreadHandle", None)
    if handle is None:
        return
    join = handle.__dict__["join"]
    _engine.patch_type(handle, "join", _engine.BoundaryMethod(
        "_thread._ThreadHandle.join", join,
        replay=lambda recorded, h, *args: join(h, *args)))
    is_done = handle.__dict__["is_done"]
    _engine.patch_type(handle, "is_done", _engine.BoundaryMethod(
        "_thread._ThreadHandle.is_done", is_done))
    real_shutdown = _thread._shutdown
    _thread._shutdown = _engine.Boundary("_thread._shutdown", real_shutdown,
                                         replay=lambda recorded: real_shutdown())
    replaced[id(real_shutdown)] = (real_shutdown, _thread._shutdown)


def _shield_module_locks():
    """The import system's per-module locks are internal: never recorded."""
    bootstrap = sys.modules.get("importlib._bootstrap") or sys.modules["_frozen_importlib"]
    module_lock = bootstrap._ModuleLock
    for name in ("acquire", "release"):
        orig = getattr(module_lock, name)

        def unrecorded(self, *args, _orig=orig):
            _engine.suspend()
            try:
                return _orig(self, *args)
            finally:
                _engine.resume()

        setattr(module_lock, name, unrecorded)


def _stable_hash(cls):
    """Threads and futures hash by address, which differs in replay: a set of
    them (ThreadPoolExecutor joins its workers from one, as_completed yields
    the finished futures of one) would be walked in another order. Hash them
    by the order in which they were first hashed instead; equality stays
    identity."""
    numbers = itertools.count()

    def __hash__(self):
        try:
            return self.__dict__["_retrace_hash"]
        except KeyError:
            return self.__dict__.setdefault("_retrace_hash", next(numbers))

    cls.__hash__ = __hash__


def _stable_futures(base):
    """concurrent.futures: futures hash stably, and wait()/as_completed() lock
    them in that order instead of by address (any fixed order avoids
    deadlocks; this one is the same in replay)."""
    _stable_hash(base.Future)

    def __init__(self, futures):
        self.futures = sorted(futures, key=hash)

    base._AcquireFutures.__init__ = __init__


def install(replaced):
    """Patch threads, locks and queues; `replaced` maps id(original) to
    (original, replacement) for _patch's reference rewriting."""
    _shield_module_locks()
    _onimport.when_imported("threading", lambda module: _stable_hash(module.Thread))
    _onimport.when_imported("concurrent.futures._base", _stable_futures)
    _thread_starters(replaced)
    _patch_lock_type(_thread.LockType, "_thread.lock",
                     ("acquire", "acquire_lock", "__enter__"),
                     ("release", "release_lock", "__exit__"))
    _patch_rlock_restore()   # first: it keeps RLock's original acquire and release
    _patch_lock_type(_thread.RLock, "_thread.RLock",
                     ("acquire", "__enter__"), ("release", "__exit__", "_release_save"))
    _patch_simple_queue()
    _patch_joins(replaced)
    _replay_identifiers(replaced)
