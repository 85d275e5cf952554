"""C database drivers at the boundary: installs _tables.DRIVERS.

A driver is patched right after the program first imports its C module
(_onimport), in recording and replay alike.  Its types keep their identity:
methods and attributes are replaced in the type's own dict, so a connection
is still an `sqlite3.Connection` or a `psycopg2.extensions.connection`.

- The driver's types are handle types (_engine.handle_type): an instance
  that crosses the boundary gets a handle, and replay builds a *stand-in* of
  the same class for it (the support module says how).
- Methods listed as events are receiver boundaries: the record names the
  object, and replay checks the call is made on the same one.
- Callables the program gives the driver (functions, adapters, row
  factories, typecasters) are wrapped in _engine.Callback, so that the
  driver's calls into them are recorded and made again in replay.  Wrapping
  happens in both runs, in the program's order, so callbacks get the same
  numbers; in replay no driver holds them, so they are kept here.
"""
import collections.abc
import importlib

from . import _engine, _onimport, _tables

_replay_keep = []   # replay: callbacks the stand-ins would otherwise not hold
_OWN_CODE = set()   # packages of the drivers' own Python code


def _callback(func):
    wrapped = _engine.Callback(func)
    if _engine.mode() == "replay":
        _replay_keep.append(wrapped)
    return wrapped


def callback(func, plain=()):
    """func wrapped for the driver, unless it is None, already wrapped, or
    one of `plain` (builtin factories such as str, which need no replay), or
    the driver's own code (its typecasters and adapters make plain values)."""
    if func is None or isinstance(func, _engine.Callback) or not callable(func) \
            or any(func is p for p in plain) \
            or (getattr(func, "__module__", None) or "").split(".")[0] in _OWN_CODE:
        return func
    return _callback(func)


_HEAPTYPE = 1 << 9   # Py_TPFLAGS_HEAPTYPE: a class made by a class statement
_constructors = {}   # the program's class -> its Callback, one per class in both runs


def is_c_type(cls):
    return isinstance(cls, type) and not cls.__flags__ & _HEAPTYPE


def constructor(cls):
    """A class (or function) that the driver calls to make one of its
    objects (a connection or cursor factory): a callback, so that the
    object is made by the program's code in replay too, with its Python
    __init__ state.  The driver's own C types are left alone: their objects
    become stand-ins."""
    if cls is None or isinstance(cls, _engine.Callback) or not callable(cls) or is_c_type(cls):
        return cls
    wrapped = _constructors.get(cls)
    if wrapped is None or not wrapped.number:   # numbered before a fork's own trace began
        wrapped = _constructors[cls] = _callback(cls)
    return wrapped


def unwrap(func):
    return func.__wrapped__ if isinstance(func, _engine.Callback) else func


def _wrapping(spots, wrap, first=1):
    """A function that applies `wrap` to the arguments at `spots` (positions
    counted from `first`: after self, for a method; or keyword names) of a
    call."""
    def apply(args, kwargs):
        args = list(args)
        for spot in spots:
            if isinstance(spot, int):
                if spot + first < len(args):
                    args[spot + first] = wrap(args[spot + first])
            elif spot in kwargs:
                kwargs[spot] = wrap(kwargs[spot])
        return args, kwargs
    return apply


class _Aggregate:
    """What the driver holds for an instance of an aggregate class.  The
    driver calls its methods during later calls too (the fetches of a query),
    so the callbacks name it by number, given in creation order in both runs,
    rather than by a reference to an object of one call."""

    count = 0
    live = {}     # number -> _Aggregate, until finalize (replay holds no other reference)

    def __init__(self, instance, calls):
        _Aggregate.count += 1
        self.number = _Aggregate.count
        self.instance = instance
        self._calls = calls
        _Aggregate.live[self.number] = self

    def step(self, *args):
        return self._calls["step"](self.number, *args)

    def finalize(self):
        return self._calls["finalize"](self.number)

    def value(self):
        return self._calls["value"](self.number)

    def inverse(self, *args):
        return self._calls["inverse"](self.number, *args)


def _aggregate_method(name):
    if name == "finalize":
        return lambda number: _Aggregate.live.pop(number).instance.finalize()
    return lambda number, *args: getattr(_Aggregate.live[number].instance, name)(*args)


def aggregate(cls):
    """An aggregate class as the driver sees it: a callback making _Aggregates."""
    if cls is None or not callable(cls):
        return cls
    calls = {name: callback(_aggregate_method(name))
             for name in ("step", "finalize", "value", "inverse")}
    return callback(lambda: _Aggregate(cls(), calls))


def _with_wrapped_arguments(event, apply, orig):
    """The event, its callable arguments wrapped first, outside the event and
    in both runs (replay makes the callbacks before the call's records)."""
    def method(*args, **kwargs):
        args, kwargs = apply(args, kwargs)
        return event(*args, **kwargs)

    method.__name__ = method.__qualname__ = orig.__name__
    method.__doc__ = orig.__doc__
    method.__wrapped__ = orig
    return method


def _factory_property(descr, wrap):
    return property(lambda obj: unwrap(descr.__get__(obj)),
                    lambda obj, value: descr.__set__(obj, wrap(value)))


def _attribute(cls, name, qualname, getter, setter):
    descr = cls.__dict__[name]
    fget = fset = None
    if getter:
        fget = _engine.BoundaryMethod(qualname, descr.__get__, receiver=True)
    else:
        fget = descr.__get__
    if setter:
        fset = _engine.BoundaryMethod(qualname + ".set", descr.__set__, receiver=True)
    _engine.patch_type(cls, name, property(fget, fset))


def sequence(items):
    """The parameter sets of an executemany as a list: an iterator is
    consumed here, by the program in both runs, not by the driver out of
    sight (replay runs no driver), and its parameters can be checked."""
    return list(items) if isinstance(items, collections.abc.Iterator) else items


def _argument_wraps(spec, support):
    """method name -> the function wrapping its callable (or iterable) arguments"""
    wraps = {}
    for table, wrap in (("callbacks", callback), ("aggregates", aggregate),
                        ("files", getattr(support, "file_callbacks", None)),
                        ("constructors", constructor), ("sequences", sequence)):
        for name, spots in spec.get(table, {}).items():
            wraps[name] = _wrapping(spots, wrap)
    return wraps


def _install_type(module, cls, prefix, spec, support):
    d = cls.__dict__
    _engine.handle_type(cls, support.STANDINS[cls.__name__])
    wraps = _argument_wraps(spec, support)
    replays = getattr(support, "REPLAY", {})
    for name in dict.fromkeys([*spec.get("events", ()), *spec.get("execute", ()),
                               *spec.get("rows", ()), *wraps]):
        if name not in d:
            continue
        orig, qualname = d[name], f"{prefix}.{name}"
        if name in spec.get("execute", ()):
            event = support.execute(cls, name, qualname, orig)
        elif name in spec.get("rows", ()):
            event = support.rows(cls, name, qualname, orig)
        else:
            event = _engine.BoundaryMethod(qualname, orig, replay=replays.get(qualname),
                                           receiver=True)
        if name in wraps:
            event = _with_wrapped_arguments(event, wraps[name], orig)
        # a class assignment, so that slots follow (tp_iternext, tp_init)
        _engine.set_type_attr(cls, name, event)
    getters, setters = spec.get("getters", ()), spec.get("setters", ())
    for name in dict.fromkeys([*getters, *setters]):
        if name in d:
            _attribute(cls, name, f"{prefix}.{name}", name in getters, name in setters)
    for table, wrap in (("factories", lambda f: callback(f, support.PLAIN_FACTORIES)),
                        ("constructor_attributes", constructor)):
        for name in spec.get(table, ()):
            if name in d:
                _engine.patch_type(cls, name, _factory_property(d[name], wrap))


def _registry(orig, spots):
    return _with_wrapped_arguments(orig, _wrapping(spots, callback, first=0), orig)


def _install_driver(module, spec):
    from . import _patch
    support = importlib.import_module(f"retrace.{spec['support']}")
    _OWN_CODE.update(spec.get("own_code", ()))
    support.prepare(module)
    replaced = {}
    for name in spec.get("functions", ()):
        orig = module.__dict__.get(name)
        if orig is not None:
            event = _engine.Boundary(f"{module.__name__}.{name}", orig)
            if name in spec.get("constructors", {}):
                event = _with_wrapped_arguments(
                    event, _wrapping(spec["constructors"][name], constructor, first=0), orig)
            if name in getattr(support, "FUNCTIONS", {}):
                event = support.FUNCTIONS[name](event, orig)
            replaced[id(orig)] = (orig, event)
    for name, spots in spec.get("registries", {}).items():
        orig = module.__dict__.get(name)
        if orig is not None:
            replaced[id(orig)] = (orig, _registry(orig, spots))
    for orig, wrapper in replaced.values():
        setattr(module, orig.__name__, wrapper)
    for typename, typespec in spec["objects"].items():
        cls = getattr(module, typename, None)
        if cls is not None:
            _install_type(module, cls, f"{module.__name__}.{typename}", typespec, support)
    support.finish(module)
    _patch._rewrite_references(replaced)
    for modname, registries in spec.get("python_registries", {}).items():
        _onimport.when_imported(modname, lambda m, r=registries: _install_registries(m, r))


def _install_registries(module, registries):
    from . import _patch
    replaced = {}
    for name, spots in registries.items():
        orig = module.__dict__.get(name)
        if orig is not None:
            replaced[id(orig)] = (orig, _registry(orig, spots))
            setattr(module, name, replaced[id(orig)][1])
    _patch._rewrite_references(replaced)


def install():
    """Patch each driver when the program imports it (or now, if it has)."""
    for modname, spec in _tables.DRIVERS.items():
        _onimport.when_imported(modname, lambda module, spec=spec: _install_driver(module, spec))
