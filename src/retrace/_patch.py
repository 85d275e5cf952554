"""Install the boundary: wrap the external functions named in _tables.

Runs once, at startup, before any user code, identically in recording and
in replay (replay depends on the same calls being intercepted).

- Module functions are replaced by Boundary wrappers in their module.
- Every other reference to an original that a loaded module holds (os.stat,
  `from time import time`, threading's `_time = monotonic`) is rewritten to
  the wrapper.  Modules imported later see the wrappers directly.
- Methods of C types (datetime.now) are replaced in the type's own dict, so
  instances keep their real type.
- The import system keeps a private copy of the original posix module: imports
  are Retrace's kind of internal work and never cross the boundary.
"""
import builtins
import datetime  # noqa: F401  imported before patching, in recording and replay alike
import os
import random
import sys
import types
import warnings

from . import _drivers, _engine, _files, _fork, _gc, _net, _shims, _signals, _tables, _threads


def _shield_import_system():
    posix = sys.modules[os.name]
    private = types.ModuleType(posix.__name__)
    private.__dict__.update(posix.__dict__)
    for modname in ("_frozen_importlib_external", "importlib._bootstrap_external"):
        mod = sys.modules.get(modname)
        if mod is not None and getattr(mod, "_os", None) is posix:
            mod._os = private


def _patch_functions(replaced):
    for modname, names in _tables.FUNCTIONS.items():
        try:
            module = __import__(modname)
        except ImportError:
            continue
        for name in names:
            orig = getattr(module, name, None)
            if orig is None or id(orig) in replaced:
                continue
            wrapper = _engine.Boundary(f"{modname}.{name}", orig)
            setattr(module, name, wrapper)
            replaced[id(orig)] = (orig, wrapper)


def _relaying_warnings(name, orig):
    """A boundary for a C function that may warn (datetime.utcnow on 3.12):
    the warnings it emits are recorded with its result, and emitted again from
    the caller's line in recording and replay alike."""
    def call(*args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _engine.world(orig, *args)
        return [(w.category.__name__, str(w.message)) for w in caught
                if getattr(builtins, w.category.__name__, None) is w.category], result

    def unrecorded(done, *args):
        """Where call failed: the result, its warnings emitted by orig itself
        (or, if it ran already, lost)."""
        return [], done[0] if done else orig(*args)

    event = _engine.Boundary(name, call, fallback=unrecorded)

    def relay(*args):
        caught, result = event(*args)
        for category, message in caught:
            warnings.warn(message, getattr(builtins, category), stacklevel=2)
        return result

    return relay


def _patch_methods():
    for modname, typename, name, kind in _tables.METHODS:
        cls = getattr(sys.modules[modname], typename)
        orig = next(c.__dict__[name] for c in cls.__mro__ if name in c.__dict__)
        qualname = f"{modname}.{typename}.{name}"
        if kind.endswith("+warns"):
            wrapper = _relaying_warnings(qualname, orig)
        else:
            wrapper = _engine.BoundaryMethod(qualname, orig)
        _engine.patch_type(cls, name, classmethod(wrapper) if kind.startswith("classmethod")
                           else wrapper)


def _patch_random_seed():
    """Seeding from the OS (seed() or seed(None)) seeds from 32 recorded random
    bytes instead: 256 bits of entropy for the Mersenne Twister, and 40 bytes
    of trace rather than its 2.5 KB state."""
    base = random.Random.__mro__[1]          # _random.Random
    orig_seed = base.seed
    urandom = os.urandom
    event = _engine.Boundary("_random.Random.seed",
                             lambda: int.from_bytes(urandom(32), "little"))

    def seed(self, n=None, /):
        orig_seed(self, event() if n is None else n)

    _engine.patch_type(base, "seed", seed)


# Modules whose references stay original: Retrace's own, and _io, whose
# `open` the C function io.open_code() looks up to load code.
_KEEP_ORIGINALS = ("retrace", "_io")


def _rewrite_references(replaced):
    for modname, module in list(sys.modules.items()):
        if modname.startswith(_KEEP_ORIGINALS) or module is None:
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            entry = replaced.get(id(value))
            if entry is not None and entry[0] is value:
                namespace[key] = entry[1]


def _sync_constants():
    """Module constants that depend on the machine (time.timezone ...)."""
    def read():
        return {m: {n: getattr(sys.modules[m], n) for n in names}
                for m, names in _tables.CONSTANTS.items()}

    def restore(recorded):
        for m, values in recorded.items():
            for n, v in values.items():
                setattr(sys.modules[m], n, v)
        return recorded

    _engine.Boundary("retrace.constants", read, replay=restore)()


def install(exit_hook):
    """Patch everything; the boundary must already be recording or replaying.

    exit_hook replaces os._exit, which leaves without atexit: the session has
    to end the recording (or check the replay ends) there."""
    _shield_import_system()
    replaced = {}
    _patch_functions(replaced)
    _threads.install(replaced)
    _fork.install(replaced)
    _signals.install(replaced)
    _gc.install()
    for orig, replacement in ((_files._real_scandir, _files.scandir),
                              (_files._real_open, _files.open),
                              (os._exit, exit_hook)):
        replaced[id(orig)] = (orig, replacement)
    _rewrite_references(replaced)
    _patch_methods()
    _patch_random_seed()
    _sync_constants()
    random.seed()
    sys.stdin = _files.recorded_stdin()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout, sys.stderr = _files.checked_stdio()
    _net.install()
    _drivers.install()
    _shims.install()
