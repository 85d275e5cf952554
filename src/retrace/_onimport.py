"""Patches that wait until the program imports a module.

Importing a module at startup only to patch it would cost time (OpenSSL
loads in milliseconds) or run its import-time code at another point than
the program does. when_imported() runs the patch right after the module's
first import instead, in recording and replay alike.
"""
import sys

_pending = {}   # module name -> callbacks waiting for it


class _Finder:
    """A meta path finder that wraps the loader of a module waited for."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


class _Loader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self.loader
        for callback in _pending.pop(module.__name__, ()):
            callback(module)
        if not _pending and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


_finder = _Finder()


def when_imported(name, callback):
    """Call callback(module) now if `name` is imported, else right after the
    program first imports it."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _pending.setdefault(name, []).append(callback)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
