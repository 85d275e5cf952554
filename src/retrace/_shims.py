"""Library shims: where a library's own order of work follows object addresses.

A set of objects that hash by address (functions, instances without
__hash__) iterates in an order that follows their memory addresses.  Record
and replay allocate differently (Retrace's own work differs between them),
so such a set can iterate in another order in replay; when the order decides
which external calls come first, replay diverges.  Retrace cannot make
addresses repeat, but for the libraries below it makes the order not depend
on them: each shim is applied right after the program imports the module
(_onimport), in recording and replay alike, so both runs take the same,
deterministic order.  A shim changes an order the library leaves unspecified,
never what the library does.

SHIMS lists them: module name -> the function that patches it.
"""
from collections.abc import MutableSet

from . import _onimport


class InsertionOrderedSet(MutableSet):
    """A set that iterates in the order its items were first added."""

    def __init__(self, items=()):
        self._items = dict.fromkeys(items)

    def __contains__(self, item):
        return item in self._items

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def add(self, item):
        self._items[item] = None

    def discard(self, item):
        self._items.pop(item, None)

    def __repr__(self):
        return f"{type(self).__name__}({list(self._items)!r})"


def _django_check_registry(module):
    """django.core.checks.registry: CheckRegistry keeps its check functions
    in sets, and runserver runs them in that order; the first checks import
    modules and take locks (events).  They run in registration order."""
    cls = module.CheckRegistry
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _ordered_checks(self)

    __init__.__wrapped__ = init
    cls.__init__ = __init__
    _ordered_checks(module.registry)


def _ordered_checks(registry):
    for name in ("registered_checks", "deployment_checks"):
        checks = getattr(registry, name, None)
        if isinstance(checks, set):
            setattr(registry, name, InsertionOrderedSet(checks))


SHIMS = {
    "django.core.checks.registry": _django_check_registry,
}


def install():
    for name, shim in SHIMS.items():
        _onimport.when_imported(name, shim)
