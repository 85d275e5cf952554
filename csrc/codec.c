/* codec.c - the value encoding of the trace (docs/trace-format-values.md):
 * one tag byte and a payload per value, and retrace._engine.Opaque, which
 * stands in for values the codec has no tag for.
 *
 * Encoding never fails because of an odd value: anything without a tag, too
 * deeply nested or part of a reference cycle is written as OPAQUE (type name
 * and repr). Decoding treats its input as hostile: every count is checked
 * against the bytes left and nesting is bounded. Unlike pickle, a trace
 * cannot make the decoder import a module or call a function of its choosing:
 * it can only name classes already loaded, and only their C-level
 * constructors run (plus Decimal, UUID and ZoneInfo for their own tags).
 */
#include "retrace.h"

#include <datetime.h>
#include <stdarg.h>
#include <string.h>
#include <structmember.h>
#include <zlib.h>

enum {
    TAG_NONE = 'N', TAG_TRUE = 'T', TAG_FALSE = 'F',
    TAG_INT = 'i', TAG_BIGINT = 'I', TAG_FLOAT = 'f', TAG_STR = 's',
    TAG_BYTES = 'b', TAG_BYTEARRAY = 'a',
    TAG_TUPLE = 't', TAG_LIST = 'l', TAG_SET = 'S', TAG_FROZENSET = 'Z', TAG_DICT = 'd',
    TAG_DATETIME = 'D', TAG_DATE = 'e', TAG_TIME = 'h', TAG_TIMEDELTA = 'x',
    TAG_TIMEZONE = 'z', TAG_ZONEINFO = 'k',     /* tzinfo of 'D' and 'h' only */
    TAG_DECIMAL = 'C', TAG_UUID = 'U', TAG_STRUCTSEQ = 'q', TAG_EXCEPTION = 'E',
    TAG_OPAQUE = 'O', TAG_MEMORYVIEW = 'm',
    TAG_HANDLE = 'H', TAG_NEW_HANDLE = 'n',     /* external objects (handles.c) */
    TAG_REF = 'R',                              /* an object of the current call */
};

#define OPAQUE_REPR_MAX 200

/* _PyLong_AsByteArray gained a with_exceptions argument in 3.13. */
#if PY_VERSION_HEX >= 0x030D0000
#define LONG_AS_BYTES(v, buf, n, little, sign) \
    _PyLong_AsByteArray((PyLongObject *)(v), (buf), (n), (little), (sign), 1)
#else
#define LONG_AS_BYTES(v, buf, n, little, sign) \
    _PyLong_AsByteArray((PyLongObject *)(v), (buf), (n), (little), (sign))
#endif

/* Every struct sequence type shares one dealloc function; rt_codec_init
 * takes it from sys.float_info's type. */
static destructor structseq_dealloc;

/* "n_fields", "n_sequence_fields" and "n_unnamed_fields", interned by
 * rt_codec_init. */
static PyObject *structseq_count_names[3];

/* Classes of the stdlib modules that have their own tags, once seen. */
static PyObject *decimal_class, *uuid_class, *zoneinfo_class;

static const struct {
    const char *name;
    size_t offset;
} oserror_fields[] = {
    {"errno", offsetof(PyOSErrorObject, myerrno)},
    {"strerror", offsetof(PyOSErrorObject, strerror)},
    {"filename", offsetof(PyOSErrorObject, filename)},
    {"filename2", offsetof(PyOSErrorObject, filename2)},
};
#define N_OSERROR_FIELDS (sizeof oserror_fields / sizeof oserror_fields[0])

/* ---- the Opaque type ----------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *type_name;
    PyObject *repr;
} OpaqueObject;

static PyTypeObject Opaque_Type;

static PyObject *
opaque_create(PyObject *type_name, PyObject *repr)
{
    OpaqueObject *op = PyObject_New(OpaqueObject, &Opaque_Type);
    if (!op)
        return NULL;
    op->type_name = Py_NewRef(type_name);
    op->repr = Py_NewRef(repr);
    return (PyObject *)op;
}

static PyObject *
opaque_new(PyTypeObject *Py_UNUSED(type), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"type_name", "repr", NULL};
    PyObject *type_name, *repr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UU:Opaque", kwlist, &type_name, &repr))
        return NULL;
    return opaque_create(type_name, repr);
}

static void
opaque_dealloc(OpaqueObject *op)
{
    Py_DECREF(op->type_name);
    Py_DECREF(op->repr);
    Py_TYPE(op)->tp_free((PyObject *)op);
}

static PyObject *
opaque_repr(OpaqueObject *op)
{
    return PyUnicode_FromFormat("<retrace: unrecorded %U value %U>", op->type_name, op->repr);
}

/* Lets replayed programs copy or pickle values that contain an Opaque. */
static PyObject *
opaque_reduce(OpaqueObject *op, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("O(OO)", (PyObject *)Py_TYPE(op), op->type_name, op->repr);
}

static PyObject *
opaque_get_type_name(OpaqueObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(op->type_name);
}

static PyObject *
opaque_get_repr(OpaqueObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(op->repr);
}

static PyMethodDef opaque_methods[] = {
    {"__reduce__", (PyCFunction)opaque_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef opaque_getset[] = {
    {"type_name", (getter)opaque_get_type_name, NULL,
     "'module.qualname' of the recorded value's class", NULL},
    {"repr", (getter)opaque_get_repr, NULL,
     "repr() of the recorded value, cut to 200 characters", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Opaque_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "retrace._engine.Opaque",
    .tp_basicsize = sizeof(OpaqueObject),
    .tp_dealloc = (destructor)opaque_dealloc,
    .tp_repr = (reprfunc)opaque_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("A value the recording could not capture, kept as its "
                        "type name and repr."),
    .tp_methods = opaque_methods,
    .tp_getset = opaque_getset,
    .tp_new = opaque_new,
};

/* ---- helpers shared by both directions ----------------------------------- */

/* A class's own namespace (new reference). From 3.12 on, tp_dict is NULL
 * for static builtin types. */
static PyObject *
type_namespace(PyTypeObject *t)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyType_GetDict(t);
#else
    return Py_NewRef(t->tp_dict);
#endif
}

/* The number of fields of struct sequence type `t`, hidden ones included,
 * from its namespace; 0 if the counts there are missing or inconsistent. */
static Py_ssize_t
structseq_count(PyTypeObject *t)
{
    Py_ssize_t counts[3];
    PyObject *ns = type_namespace(t);
    for (int i = 0; i < 3; i++) {
        PyObject *n = PyDict_GetItemWithError(ns, structseq_count_names[i]);
        counts[i] = n && PyLong_CheckExact(n) ? PyLong_AsSsize_t(n) : -1;
        if (counts[i] < 0) {
            PyErr_Clear();   /* from the lookup or a count too large for Py_ssize_t */
            Py_DECREF(ns);
            return 0;
        }
    }
    Py_DECREF(ns);
    return counts[0] >= counts[1] ? counts[0] : 0;
}

/* structseq_count by type, for the few struct sequence types a program
 * returns (os.stat's, time's): looking the counts up in the type's dict was
 * a tenth of the cost of recording os.stat(). A type's first count is kept,
 * which is the one its instances were made for. Entries own their type, so
 * its address cannot be reused; the oldest entry makes room. */
#define STRUCTSEQ_CACHE_SIZE 8

static struct {
    PyTypeObject *type;
    Py_ssize_t fields;
} structseq_cache[STRUCTSEQ_CACHE_SIZE];
static int structseq_cache_next;

/* The number of fields, hidden ones included, if `t` is a struct sequence
 * type whose instances have `visible` items; else 0. Its n_fields attribute
 * alone proves nothing: a Python tuple subclass could declare one and make
 * PyStructSequence_GetItem read past its items. Only struct sequence types
 * use the struct sequence dealloc. */
static Py_ssize_t
structseq_fields(PyTypeObject *t, Py_ssize_t visible)
{
    if (t->tp_base != &PyTuple_Type || t->tp_dealloc != structseq_dealloc)
        return 0;
    Py_ssize_t fields = -1;
    for (int i = 0; i < STRUCTSEQ_CACHE_SIZE && fields < 0; i++) {
        if (structseq_cache[i].type == t)
            fields = structseq_cache[i].fields;
    }
    if (fields < 0) {
        fields = structseq_count(t);
        PyTypeObject *old = structseq_cache[structseq_cache_next].type;
        structseq_cache[structseq_cache_next].type = (PyTypeObject *)Py_NewRef(t);
        structseq_cache[structseq_cache_next].fields = fields;
        structseq_cache_next = (structseq_cache_next + 1) % STRUCTSEQ_CACHE_SIZE;
        Py_XDECREF(old);   /* only now: freeing a type can run code that encodes */
    }
    return fields >= visible ? fields : 0;
}

/* Resolve the parts of `name` after `start` ("Outer.Inner") from module or
 * class `obj` through namespace dicts only, so no __getattr__ runs. New
 * reference, or NULL (with an exception only for a real error). */
static PyObject *
lookup_qualname(PyObject *obj, PyObject *name, Py_ssize_t start)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(name);
    Py_INCREF(obj);
    for (;;) {
        Py_ssize_t end = PyUnicode_FindChar(name, '.', start, len, 1);
        if (end == -2) {
            Py_DECREF(obj);
            return NULL;
        }
        if (end == -1)
            end = len;
        PyObject *ns = NULL;
        if (PyModule_Check(obj))
            ns = Py_NewRef(PyModule_GetDict(obj));
        else if (PyType_Check(obj))
            ns = type_namespace((PyTypeObject *)obj);
        Py_DECREF(obj);
        if (!ns)
            return NULL;
        PyObject *part = PyUnicode_Substring(name, start, end);
        obj = part ? PyDict_GetItemWithError(ns, part) : NULL;
        Py_XINCREF(obj);
        Py_XDECREF(part);
        Py_DECREF(ns);
        if (!obj || end == len)
            return obj;
        start = end + 1;
    }
}

/* Find "module.qualname" among loaded modules: the module is the longest
 * dotted prefix that is a key of sys.modules. Never imports. New reference,
 * or NULL (with an exception only for a real error). */
static PyObject *
find_class(PyObject *name)
{
    PyObject *modules = PyImport_GetModuleDict();
    Py_ssize_t dot = PyUnicode_GET_LENGTH(name);
    while ((dot = PyUnicode_FindChar(name, '.', 0, dot, -1)) > 0) {
        PyObject *modname = PyUnicode_Substring(name, 0, dot);
        if (!modname)
            return NULL;
        PyObject *mod = PyDict_GetItemWithError(modules, modname);
        Py_DECREF(modname);
        if (mod)
            return lookup_qualname(mod, name, dot + 1);
        if (PyErr_Occurred())
            return NULL;
    }
    return NULL;
}

/* ---- encoding ------------------------------------------------------------- */

/* Returned by the encoders of particular kinds of value when they cannot
 * represent this one: encode_value() then rolls back and writes OPAQUE. */
#define FALLBACK 1

typedef struct {
    /* stack[d] is the container being encoded at depth d; meeting one of
     * them again further down is a reference cycle. */
    PyObject *stack[RT_CODEC_MAX_DEPTH];
    const rt_refs *refs;   /* or NULL: see rt_encode_refs */
    int digest;            /* rt_digest: no handles given, opaque values by type only */
} encoder;

static int encode_value(encoder *e, rt_buf *out, PyObject *v, int depth);

static int
nomem(void)
{
    PyErr_NoMemory();
    return -1;
}

/* Errors raised by the program's own code (a __repr__, tzname(), items()
 * that fails) must not stop the recording: clear them and return 0.
 * MemoryError and non-Exception errors such as KeyboardInterrupt stay set
 * and give -1. */
static int
clear_program_error(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_MemoryError))
        return -1;
    PyErr_Clear();
    return 0;
}

static int
fallback_after_error(void)
{
    return clear_program_error() < 0 ? -1 : FALLBACK;
}

static int
put_tag(rt_buf *out, uint8_t tag)
{
    return rt_buf_put_u8(out, tag) < 0 ? nomem() : 0;
}

static int
put_header(rt_buf *out, uint8_t tag, uint64_t n)
{
    if (rt_buf_put_u8(out, tag) < 0 || rt_buf_put_varint(out, n) < 0)
        return nomem();
    return 0;
}

static int
put_varint(rt_buf *out, uint64_t n)
{
    return rt_buf_put_varint(out, n) < 0 ? nomem() : 0;
}

static int
put_raw(rt_buf *out, const void *p, size_t n)
{
    return rt_buf_put(out, p, n) < 0 ? nomem() : 0;
}

static int
put_blob(rt_buf *out, uint8_t tag, const void *p, size_t n)
{
    if (rt_buf_put_u8(out, tag) < 0 || rt_buf_put_str(out, p, n) < 0)
        return nomem();
    return 0;
}

/* A str value. "surrogatepass" lets lone surrogates round-trip. */
static int
put_str_value(rt_buf *out, PyObject *s)
{
    if (PyUnicode_IS_ASCII(s))
        return put_blob(out, TAG_STR, PyUnicode_DATA(s), (size_t)PyUnicode_GET_LENGTH(s));
    PyObject *utf8 = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (!utf8)
        return -1;
    int r = put_blob(out, TAG_STR, PyBytes_AS_STRING(utf8), (size_t)PyBytes_GET_SIZE(utf8));
    Py_DECREF(utf8);
    return r;
}

static int
put_delta(rt_buf *out, int days, int seconds, int microseconds)
{
    if (rt_buf_put_u8(out, TAG_TIMEDELTA) < 0 || rt_buf_put_svarint(out, days) < 0
        || rt_buf_put_svarint(out, seconds) < 0 || rt_buf_put_svarint(out, microseconds) < 0)
        return nomem();
    return 0;
}

/* "module.qualname" of a class (new reference), or NULL with an exception. */
static PyObject *
type_fullname(PyTypeObject *t)
{
    PyObject *module = PyObject_GetAttrString((PyObject *)t, "__module__");
    if (!module)
        return NULL;
    PyObject *qualname = PyType_GetQualName(t);
    PyObject *res = NULL;
    if (qualname && PyUnicode_Check(module))
        res = PyUnicode_FromFormat("%U.%U", module, qualname);
    else if (qualname)
        PyErr_SetString(PyExc_TypeError, "__module__ is not a str");
    Py_XDECREF(qualname);
    Py_DECREF(module);
    return res;
}

/* 1 if decoding will find class `t` under `name`, 0 if not, -1 on error. */
static int
findable(PyObject *name, PyTypeObject *t)
{
    PyObject *found = find_class(name);
    int same = found == (PyObject *)t;
    Py_XDECREF(found);
    if (same)
        return 1;
    return PyErr_Occurred() ? -1 : 0;
}

/* `module.name` from a stdlib module, cached once found (borrowed). With
 * `import` false the module must already be loaded: a value of the class
 * cannot exist otherwise, and recording must not import anything. Then NULL
 * means "not loaded" and no exception is set. */
static PyObject *
stdlib_class(PyObject **cache, const char *module, const char *name, int import)
{
    if (*cache)
        return *cache;
    PyObject *mod;
    if (import) {
        mod = PyImport_ImportModule(module);
    }
    else {
        PyObject *modname = PyUnicode_FromString(module);
        mod = modname ? PyImport_GetModule(modname) : NULL;
        Py_XDECREF(modname);
    }
    if (mod) {
        *cache = PyObject_GetAttrString(mod, name);
        Py_DECREF(mod);
        if (*cache && !PyType_Check(*cache)) {
            Py_CLEAR(*cache);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a class", module, name);
        }
    }
    if (!import)
        PyErr_Clear();
    return *cache;
}

static int
encode_opaque(rt_buf *out, PyObject *v)
{
    PyObject *name = type_fullname(Py_TYPE(v));
    if (!name) {
        if (clear_program_error() < 0)
            return -1;
        name = PyUnicode_FromString(Py_TYPE(v)->tp_name);
        if (!name)
            return -1;
    }
    PyObject *repr = PyObject_Repr(v);
    if (!repr) {
        if (clear_program_error() < 0) {
            Py_DECREF(name);
            return -1;
        }
        repr = PyUnicode_FromString("<repr failed>");
    }
    else if (PyUnicode_GET_LENGTH(repr) > OPAQUE_REPR_MAX) {
        Py_SETREF(repr, PyUnicode_Substring(repr, 0, OPAQUE_REPR_MAX));
    }
    int r = -1;
    if (repr && put_tag(out, TAG_OPAQUE) == 0 && put_str_value(out, name) == 0)
        r = put_str_value(out, repr);
    Py_DECREF(name);
    Py_XDECREF(repr);
    return r;
}

/* Depth and cycle guard for every value that holds other values. */
static int
enter_container(encoder *e, PyObject *v, int depth)
{
    if (depth >= RT_CODEC_MAX_DEPTH)
        return FALLBACK;
    for (int i = 0; i < depth; i++) {
        if (e->stack[i] == v)
            return FALLBACK;
    }
    e->stack[depth] = v;
    return 0;
}

static int
encode_int(rt_buf *out, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (rt_buf_put_u8(out, TAG_INT) < 0 || rt_buf_put_svarint(out, x) < 0)
            return nomem();
        return 0;
    }
    size_t nbits = _PyLong_NumBits(v);
    if (nbits == (size_t)-1)
        return -1;
    size_t n = nbits / 8 + 1;   /* room for the sign bit */
    if (put_header(out, TAG_BIGINT, n) < 0)
        return -1;
    if (rt_buf_reserve(out, n) < 0)
        return nomem();
    if (LONG_AS_BYTES(v, out->data + out->len, n, 1, 1) < 0)
        return -1;
    out->len += n;
    return 0;
}

static int
encode_float(rt_buf *out, PyObject *v)
{
    double d = PyFloat_AS_DOUBLE(v);
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    if (rt_buf_put_u8(out, TAG_FLOAT) < 0 || rt_buf_put_u64(out, bits) < 0)
        return nomem();
    return 0;
}

/* Items of a tuple or list `items`, on behalf of `container` (the same
 * object, or the set they were copied from). */
static int
encode_items(encoder *e, rt_buf *out, uint8_t tag, PyObject *container, PyObject *items,
             int depth)
{
    int r = enter_container(e, container, depth);
    if (r)
        return r;
    Py_ssize_t n = Py_SIZE(items);
    if (put_header(out, tag, (uint64_t)n) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= Py_SIZE(items))
            return FALLBACK;   /* a list shrank while a __repr__ ran */
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(items, i));
        r = encode_value(e, out, item, depth + 1);
        Py_DECREF(item);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int
encode_set(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    PyObject *items = PySequence_Tuple(v);
    if (!items)
        return fallback_after_error();
    uint8_t tag = PyFrozenSet_Check(v) ? TAG_FROZENSET : TAG_SET;
    int r = encode_items(e, out, tag, v, items, depth);
    Py_DECREF(items);
    return r;
}

static int
encode_pair(encoder *e, rt_buf *out, PyObject *k, PyObject *v, int depth)
{
    Py_INCREF(k);
    Py_INCREF(v);
    int r = encode_value(e, out, k, depth);
    if (r == 0)
        r = encode_value(e, out, v, depth);
    Py_DECREF(k);
    Py_DECREF(v);
    return r;
}

static int
encode_dict(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    int r = enter_container(e, v, depth);
    if (r)
        return r;
    if (!PyDict_CheckExact(v)) {
        /* items() gives a subclass's own order (OrderedDict.move_to_end). */
        PyObject *items = PyMapping_Items(v);
        if (!items)
            return fallback_after_error();
        Py_ssize_t n = PyList_GET_SIZE(items);
        r = put_header(out, TAG_DICT, (uint64_t)n);
        for (Py_ssize_t i = 0; r == 0 && i < n; i++) {
            PyObject *kv = PyList_GET_ITEM(items, i);
            if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2)
                r = FALLBACK;
            else
                r = encode_pair(e, out, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1), depth + 1);
        }
        Py_DECREF(items);
        return r;
    }
    Py_ssize_t n = PyDict_GET_SIZE(v), pos = 0, i = 0;
    PyObject *key, *value;
    if (put_header(out, TAG_DICT, (uint64_t)n) < 0)
        return -1;
    for (; i < n && PyDict_Next(v, &pos, &key, &value); i++) {
        if (encode_pair(e, out, key, value, depth + 1) < 0)
            return -1;
    }
    return i == n ? 0 : FALLBACK;   /* the dict shrank while a __repr__ ran */
}

static int
encode_timezone(rt_buf *out, PyObject *tz)
{
    if (tz == PyDateTime_TimeZone_UTC) {
        if (put_tag(out, TAG_TIMEZONE) < 0 || put_delta(out, 0, 0, 0) < 0)
            return -1;
        return put_tag(out, TAG_NONE);
    }
    /* The name is kept only when it differs from the default one, so that
     * timezone(offset) decodes to an identical object, e.g. timezone.utc. */
    PyObject *offset = PyObject_CallMethod(tz, "utcoffset", "O", Py_None);
    PyObject *name = offset ? PyObject_CallMethod(tz, "tzname", "O", Py_None) : NULL;
    PyObject *plain = name ? PyTimeZone_FromOffset(offset) : NULL;
    PyObject *plain_name = plain ? PyObject_CallMethod(plain, "tzname", "O", Py_None) : NULL;
    int r;
    if (!plain_name)
        r = fallback_after_error();
    else if (!PyDelta_Check(offset) || !PyUnicode_Check(name) || !PyUnicode_Check(plain_name))
        r = FALLBACK;
    else if (put_tag(out, TAG_TIMEZONE) < 0
             || put_delta(out, PyDateTime_DELTA_GET_DAYS(offset), PyDateTime_DELTA_GET_SECONDS(offset),
                          PyDateTime_DELTA_GET_MICROSECONDS(offset)) < 0)
        r = -1;
    else if (PyUnicode_Compare(name, plain_name) == 0)
        r = put_tag(out, TAG_NONE);
    else
        r = put_str_value(out, name);
    Py_XDECREF(offset);
    Py_XDECREF(name);
    Py_XDECREF(plain);
    Py_XDECREF(plain_name);
    return r;
}

/* The tzinfo of a datetime or time. Other tzinfo classes (pytz, dateutil)
 * give FALLBACK: the whole datetime becomes OPAQUE. */
static int
encode_tzinfo(rt_buf *out, PyObject *tz)
{
    if (tz == Py_None)
        return put_tag(out, TAG_NONE);
    if (Py_IS_TYPE(tz, Py_TYPE(PyDateTime_TimeZone_UTC)))
        return encode_timezone(out, tz);
    PyObject *zoneinfo = stdlib_class(&zoneinfo_class, "zoneinfo", "ZoneInfo", 0);
    if (!zoneinfo || !Py_IS_TYPE(tz, (PyTypeObject *)zoneinfo))
        return FALLBACK;
    PyObject *key = PyObject_GetAttrString(tz, "key");
    if (!key)
        return fallback_after_error();
    int r = FALLBACK;   /* ZoneInfo.from_file() zones have no key */
    if (PyUnicode_Check(key))
        r = put_tag(out, TAG_ZONEINFO) < 0 ? -1 : put_str_value(out, key);
    Py_DECREF(key);
    return r;
}

static int
encode_datetime(rt_buf *out, PyObject *v)
{
    if (rt_buf_put_u8(out, TAG_DATETIME) < 0
        || rt_buf_put_svarint(out, PyDateTime_GET_YEAR(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_GET_MONTH(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_GET_DAY(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_DATE_GET_HOUR(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_DATE_GET_MINUTE(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_DATE_GET_SECOND(v)) < 0
        || rt_buf_put_varint(out, (uint64_t)PyDateTime_DATE_GET_MICROSECOND(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_DATE_GET_FOLD(v)) < 0)
        return nomem();
    return encode_tzinfo(out, PyDateTime_DATE_GET_TZINFO(v));
}

static int
encode_date(rt_buf *out, PyObject *v)
{
    if (rt_buf_put_u8(out, TAG_DATE) < 0
        || rt_buf_put_svarint(out, PyDateTime_GET_YEAR(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_GET_MONTH(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_GET_DAY(v)) < 0)
        return nomem();
    return 0;
}

static int
encode_time(rt_buf *out, PyObject *v)
{
    if (rt_buf_put_u8(out, TAG_TIME) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_TIME_GET_HOUR(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_TIME_GET_MINUTE(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_TIME_GET_SECOND(v)) < 0
        || rt_buf_put_varint(out, (uint64_t)PyDateTime_TIME_GET_MICROSECOND(v)) < 0
        || rt_buf_put_u8(out, (uint8_t)PyDateTime_TIME_GET_FOLD(v)) < 0)
        return nomem();
    return encode_tzinfo(out, PyDateTime_TIME_GET_TZINFO(v));
}

static int
encode_decimal(rt_buf *out, PyObject *v, PyObject *cls)
{
    /* The base class's str(), in case a subclass overrides __str__. */
    PyObject *s = ((PyTypeObject *)cls)->tp_str(v);
    if (!s)
        return fallback_after_error();
    int r = FALLBACK;
    if (PyUnicode_Check(s))
        r = put_tag(out, TAG_DECIMAL) < 0 ? -1 : put_str_value(out, s);
    Py_DECREF(s);
    return r;
}

static int
encode_uuid(rt_buf *out, PyObject *v)
{
    PyObject *i = PyObject_GetAttrString(v, "int");
    if (!i)
        return fallback_after_error();
    uint8_t raw[16];   /* big endian, as UUID.bytes */
    int r = FALLBACK;
    if (PyLong_Check(i)) {
        if (LONG_AS_BYTES(i, raw, sizeof raw, 0, 0) < 0)
            r = fallback_after_error();
        else if (put_tag(out, TAG_UUID) < 0 || put_raw(out, raw, sizeof raw) < 0)
            r = -1;
        else
            r = 0;
    }
    Py_DECREF(i);
    return r;
}

/* "module.qualname" of struct sequence type `t` if decoding can find it by
 * that name, else NULL (sys.flags' type cannot be found). NULL with an
 * exception if the name cannot be formed, or on a real error. */
static PyObject *
structseq_class_name(PyTypeObject *t)
{
    PyObject *name = type_fullname(t);
    if (!name)
        return NULL;
    int r = findable(name, t);
    if (r == 1)
        return name;
    Py_DECREF(name);
    if (r < 0)
        (void)clear_program_error();   /* not findable; MemoryError stays set */
    return NULL;
}

/* The name of the nearest class in the base chain of `t` that decoding can
 * find by name (classes made inside a function cannot be found); for an
 * exception BaseException always can. NULL, with an exception only on a
 * real error, if none qualifies. */
static PyObject *
nearest_class_name(PyTypeObject *t)
{
    for (; t; t = t->tp_base) {
        PyObject *name = type_fullname(t);
        int found = name ? findable(name, t) : -1;
        if (found == 1)
            return name;
        Py_XDECREF(name);
        if (found < 0 && clear_program_error() < 0)
            return NULL;
    }
    return NULL;
}

/* The results of the two functions above, by class: finding a name walks
 * sys.modules and class namespaces, which would otherwise be most of the
 * cost of recording os.stat() or a raised OSError. A class is looked up only
 * once, so a later change of its __module__ or __qualname__ goes unseen: a
 * stale name then decodes as "unknown type" (TraceCorrupt) or as the class
 * now under that name, checked like any other. Entries own their class, so
 * its address cannot be reused; the oldest entry makes room. */
#define NAME_CACHE_SIZE 32

static struct {
    PyTypeObject *type;
    PyObject *name;   /* NULL: no findable name */
} name_cache[NAME_CACHE_SIZE];
static int name_cache_next;

/* Set *name to find(t) (a new reference or NULL), computed once per class.
 * -1 if find() failed with an exception; failures are not remembered. */
static int
cached_class_name(PyTypeObject *t, PyObject *(*find)(PyTypeObject *), PyObject **name)
{
    for (int i = 0; i < NAME_CACHE_SIZE; i++) {
        if (name_cache[i].type == t) {
            *name = Py_XNewRef(name_cache[i].name);
            return 0;
        }
    }
    *name = find(t);
    if (!*name && PyErr_Occurred())
        return -1;
    PyTypeObject *old_type = name_cache[name_cache_next].type;
    PyObject *old_name = name_cache[name_cache_next].name;
    name_cache[name_cache_next].type = (PyTypeObject *)Py_NewRef(t);
    name_cache[name_cache_next].name = Py_XNewRef(*name);
    name_cache_next = (name_cache_next + 1) % NAME_CACHE_SIZE;
    /* Only now: freeing a class can run code that encodes (a __del__). */
    Py_XDECREF(old_type);
    Py_XDECREF(old_name);
    return 0;
}

static int
encode_structseq(encoder *e, rt_buf *out, PyObject *v, Py_ssize_t n, int depth)
{
    int r = enter_container(e, v, depth);
    if (r)
        return r;
    PyObject *name;
    if (cached_class_name(Py_TYPE(v), structseq_class_name, &name) < 0)
        return fallback_after_error();
    if (!name)   /* unreachable by name (sys.flags' type): keep the visible items */
        return encode_items(e, out, TAG_TUPLE, v, v, depth);
    r = put_tag(out, TAG_STRUCTSEQ) < 0 || put_str_value(out, name) < 0
        || put_varint(out, (uint64_t)n) < 0 ? -1 : 0;
    Py_DECREF(name);
    /* Hidden fields (st_atime_ns, tm_zone) are stored after the visible ones. */
    for (Py_ssize_t i = 0; r == 0 && i < n; i++)
        r = encode_value(e, out, PyStructSequence_GetItem(v, i), depth + 1);
    return r;
}

/* One entry of an exception's state dict, encoded after its key (written
 * from `mark` on); both are dropped if the value came out OPAQUE and
 * `drop_opaque` is set. */
static int
put_state_value(encoder *e, rt_buf *tmp, size_t mark, PyObject *value, int depth,
                int drop_opaque, uint64_t *n)
{
    size_t at = tmp->len;
    if (encode_value(e, tmp, value, depth) < 0)
        return -1;
    if (drop_opaque && tmp->data[at] == TAG_OPAQUE)
        tmp->len = mark;
    else
        (*n)++;
    return 0;
}

/* The object members (T_OBJECT) that C extension classes of exception `exc`
 * declare (psycopg2.Error's pgcode, pgerror, cursor): with `name`, the slot
 * of that member, else NULL; without, calls visit(name, slot) for each. */
static PyObject **
object_member(PyObject *exc, PyObject *name,
              int (*visit)(const char *name, PyObject **slot, void *arg), void *arg)
{
    for (PyTypeObject *t = Py_TYPE(exc); t; t = t->tp_base) {
        /* builtin exception classes have no dot in tp_name; their fields are
         * handled above or not kept */
        if (!t->tp_members || !strchr(t->tp_name, '.') || t->tp_flags & Py_TPFLAGS_HEAPTYPE)
            continue;
        for (PyMemberDef *m = t->tp_members; m->name; m++) {
            if (m->type != T_OBJECT && m->type != T_OBJECT_EX)
                continue;
            PyObject **slot = (PyObject **)((char *)exc + m->offset);
            if (name && PyUnicode_CompareWithASCIIString(name, m->name) == 0)
                return slot;
            if (!name && visit(m->name, slot, arg) < 0)
                return NULL;
        }
    }
    return NULL;
}

/* Registered by the drivers: cls -> fn(exc) giving more state to keep
 * (psycopg2's diagnostics, which live in the C library's result). */
#define MAX_EXCEPTION_EXTRAS 8
static struct {
    PyObject *cls;
    PyObject *fn;
} exception_extras[MAX_EXCEPTION_EXTRAS];
static int n_exception_extras;

int
rt_codec_exception_extras(PyObject *cls, PyObject *fn)
{
    if (n_exception_extras == MAX_EXCEPTION_EXTRAS) {
        PyErr_SetString(PyExc_RuntimeError, "too many exception_extras");
        return -1;
    }
    exception_extras[n_exception_extras].cls = Py_NewRef(cls);
    exception_extras[n_exception_extras].fn = Py_NewRef(fn);
    n_exception_extras++;
    return 0;
}

typedef struct {
    encoder *e;
    rt_buf *tmp;
    int depth;
    uint64_t *n;
} state_writer;

static int
put_state_entry(state_writer *w, PyObject *key, PyObject *value)
{
    size_t mark = w->tmp->len;
    Py_INCREF(key);
    Py_INCREF(value);
    int r = put_str_value(w->tmp, key) < 0 ? -1
            : put_state_value(w->e, w->tmp, mark, value, w->depth + 1, 1, w->n);
    Py_DECREF(key);
    Py_DECREF(value);
    return r;
}

static int
put_member(const char *name, PyObject **slot, void *arg)
{
    if (!*slot || *slot == Py_None)
        return 0;
    PyObject *key = PyUnicode_FromString(name);
    int r = key ? put_state_entry(arg, key, *slot) : -1;
    Py_XDECREF(key);
    return r;
}

/* The dict value after an exception's args: OSError's errno, strerror,
 * filename and filename2 (unless None), the object members of its C
 * extension classes, what exception_extras give, then the __dict__ items
 * that are not OPAQUE (custom attributes, __notes__). `depth` is the dict's
 * depth. */
static int
encode_exception_state(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    /* The count is known only at the end, so entries go to a side buffer. */
    rt_buf tmp = {0};
    uint64_t n = 0;
    int r = 0;
    e->stack[depth] = v;
    if (PyObject_TypeCheck(v, (PyTypeObject *)PyExc_OSError)) {
        for (size_t i = 0; r == 0 && i < N_OSERROR_FIELDS; i++) {
            PyObject *field = *(PyObject **)((char *)v + oserror_fields[i].offset);
            if (!field || field == Py_None)
                continue;
            size_t mark = tmp.len;
            Py_INCREF(field);   /* a __repr__ could reassign the attribute */
            if (put_blob(&tmp, TAG_STR, oserror_fields[i].name, strlen(oserror_fields[i].name)) < 0
                || put_state_value(e, &tmp, mark, field, depth + 1, 0, &n) < 0)
                r = -1;
            Py_DECREF(field);
        }
    }
    state_writer w = {e, &tmp, depth, &n};
    if (r == 0 && (object_member(v, NULL, put_member, &w), PyErr_Occurred()))
        r = -1;
    for (int i = 0; r == 0 && i < n_exception_extras; i++) {
        int is = PyObject_IsInstance(v, exception_extras[i].cls);
        PyObject *extra = is > 0 ? PyObject_CallOneArg(exception_extras[i].fn, v) : NULL;
        if (is < 0 || (is > 0 && !extra)) {
            r = clear_program_error();
            continue;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (r == 0 && extra && PyDict_Check(extra) && PyDict_Next(extra, &pos, &key, &value)) {
            if (PyUnicode_Check(key))
                r = put_state_entry(&w, key, value);
        }
        Py_XDECREF(extra);
    }
    PyObject *dict = Py_XNewRef(((PyBaseExceptionObject *)v)->dict);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (r == 0 && dict && PyDict_Next(dict, &pos, &key, &value)) {
        if (PyUnicode_Check(key))
            r = put_state_entry(&w, key, value);
    }
    Py_XDECREF(dict);
    if (r == 0 && (put_header(out, TAG_DICT, n) < 0 || put_raw(out, tmp.data, tmp.len) < 0))
        r = -1;
    rt_buf_free(&tmp);
    return r;
}

static int
encode_exception(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    /* args and the state dict sit one level further down. */
    if (depth + 1 >= RT_CODEC_MAX_DEPTH)
        return FALLBACK;
    int r = enter_container(e, v, depth);
    if (r)
        return r;
    PyObject *name;
    if (cached_class_name(Py_TYPE(v), nearest_class_name, &name) < 0)
        return -1;
    if (!name)
        return FALLBACK;
    r = put_tag(out, TAG_EXCEPTION) < 0 ? -1 : put_str_value(out, name);
    Py_DECREF(name);
    if (r < 0)
        return -1;
    PyObject *args = ((PyBaseExceptionObject *)v)->args;
    args = args ? Py_NewRef(args) : PyTuple_New(0);
    if (!args)
        return -1;
    /* Written as a plain tuple whatever its class, as decoding expects. */
    r = encode_items(e, out, TAG_TUPLE, args, args, depth + 1);
    Py_DECREF(args);
    if (r)
        return r;
    return encode_exception_state(e, out, v, depth + 1);
}

/* An external object: 'H' and its handle, or on first sight 'n', a new
 * handle and the class replay makes a stand-in of. */
static int
encode_handle(rt_buf *out, PyObject *v)
{
    uint64_t h;
    int is_new;
    PyObject *name;
    if (rt_handle_get(v, &h, &is_new) < 0)
        return -1;
    if (!is_new)
        return put_header(out, TAG_HANDLE, h);
    if (cached_class_name(Py_TYPE(v), nearest_class_name, &name) < 0)
        return -1;
    if (!name)
        return FALLBACK;
    int r = put_header(out, TAG_NEW_HANDLE, h) < 0 ? -1 : put_str_value(out, name);
    Py_DECREF(name);
    return r;
}

/* Everything but the common exact builtin types. Subclasses of builtin
 * types are encoded as their base type. */
static int
encode_other(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    PyObject *cls;
    if (PyLong_Check(v))
        return encode_int(out, v);
    if (PyUnicode_Check(v))
        return put_str_value(out, v);
    if (PyFloat_Check(v))
        return encode_float(out, v);
    if (PyBytes_Check(v))
        return put_blob(out, TAG_BYTES, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    if (PyByteArray_Check(v))
        return put_blob(out, TAG_BYTEARRAY, PyByteArray_AS_STRING(v), (size_t)PyByteArray_GET_SIZE(v));
    if (PyTuple_Check(v)) {
        Py_ssize_t n = structseq_fields(Py_TYPE(v), Py_SIZE(v));
        if (n)
            return encode_structseq(e, out, v, n, depth);
        return encode_items(e, out, TAG_TUPLE, v, v, depth);
    }
    if (PyList_Check(v))
        return encode_items(e, out, TAG_LIST, v, v, depth);
    if (PyDict_Check(v))
        return encode_dict(e, out, v, depth);
    /* After the builtin types, which no datetime class can also derive from:
     * each check below walks the class's bases (os.stat() returns a tuple). */
    if (PyDateTime_Check(v))   /* before PyDate_Check: datetime is a date */
        return encode_datetime(out, v);
    if (PyDate_Check(v))
        return encode_date(out, v);
    if (PyTime_Check(v))
        return encode_time(out, v);
    if (PyDelta_Check(v))
        return put_delta(out, PyDateTime_DELTA_GET_DAYS(v), PyDateTime_DELTA_GET_SECONDS(v),
                         PyDateTime_DELTA_GET_MICROSECONDS(v));
    if (PyAnySet_Check(v))
        return encode_set(e, out, v, depth);
    if (PyMemoryView_Check(v)) {
        PyObject *b = PyBytes_FromObject(v);
        if (!b)
            return fallback_after_error();   /* released */
        int r = put_blob(out, TAG_MEMORYVIEW, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        Py_DECREF(b);
        return r;
    }
    if (PyExceptionInstance_Check(v))
        return encode_exception(e, out, v, depth);
    if (Py_IS_TYPE(v, &Opaque_Type)) {   /* re-recording a replayed value */
        OpaqueObject *op = (OpaqueObject *)v;
        if (put_tag(out, TAG_OPAQUE) < 0 || put_str_value(out, op->type_name) < 0)
            return -1;
        return put_str_value(out, op->repr);
    }
    if ((cls = stdlib_class(&decimal_class, "decimal", "Decimal", 0))
        && PyObject_TypeCheck(v, (PyTypeObject *)cls))
        return encode_decimal(out, v, cls);
    if ((cls = stdlib_class(&uuid_class, "uuid", "UUID", 0))
        && PyObject_TypeCheck(v, (PyTypeObject *)cls))
        return encode_uuid(out, v);
    if (rt_handle_is_external(v))
        return e->digest ? FALLBACK : encode_handle(out, v);
    return FALLBACK;
}

/* The tag of None, True or False, which is their whole encoding; else 0. */
static inline uint8_t
singleton_tag(PyObject *v)
{
    return v == Py_None ? TAG_NONE : v == Py_True ? TAG_TRUE : v == Py_False ? TAG_FALSE : 0;
}

/* 0, -1 with an exception set, or FALLBACK. */
static int
encode_tagged(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    uint8_t tag = singleton_tag(v);
    if (tag)
        return put_tag(out, tag);
    if (t == &PyLong_Type)
        return encode_int(out, v);
    if (t == &PyUnicode_Type)
        return put_str_value(out, v);
    if (t == &PyFloat_Type)
        return encode_float(out, v);
    if (t == &PyBytes_Type)
        return put_blob(out, TAG_BYTES, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    if (t == &PyTuple_Type)
        return encode_items(e, out, TAG_TUPLE, v, v, depth);
    if (t == &PyList_Type)
        return encode_items(e, out, TAG_LIST, v, v, depth);
    if (t == &PyDict_Type)
        return encode_dict(e, out, v, depth);
    return encode_other(e, out, v, depth);
}

static int
encode_value(encoder *e, rt_buf *out, PyObject *v, int depth)
{
    size_t mark = out->len;
    Py_ssize_t ref = e->refs ? rt_refs_find(e->refs, v) : -1;
    if (ref >= 0)
        return put_header(out, TAG_REF, (uint64_t)ref);
    int r = encode_tagged(e, out, v, depth);
    if (r != FALLBACK)
        return r;
    out->len = mark;
    if (e->digest) {   /* by type: a repr may show an address, which the other run lacks */
        const char *name = Py_TYPE(v)->tp_name;
        return put_tag(out, TAG_OPAQUE) < 0 ? -1 : put_blob(out, TAG_STR, name, strlen(name));
    }
    return encode_opaque(out, v);
}

int
rt_encode(rt_buf *out, PyObject *v)
{
    return rt_encode_refs(out, v, NULL);
}

int
rt_encode_refs(rt_buf *out, PyObject *v, const rt_refs *refs)
{
    /* What lock events record (an ordered release: None; an acquire: True),
     * without the encoder's setup: these are never refs. */
    uint8_t tag = singleton_tag(v);
    if (tag)
        return put_tag(out, tag);
    encoder e;
    e.refs = refs;
    e.digest = 0;
    size_t mark = out->len;
    if (encode_value(&e, out, v, 0) < 0) {
        out->len = mark;
        return -1;
    }
    return 0;
}

/* The CRC-32 of v's encoding, for checking in replay that a value is the
 * recorded one without recording it (a statement's parameters). Objects the
 * codec has no tag for count by their type, external objects get no handle.
 * The items of a list or tuple are encoded and summed one at a time, in
 * `tmp`, so that a long executemany list is never encoded whole. */
int
rt_digest(PyObject *v, rt_buf *tmp, uint32_t *crc)
{
    encoder e;
    e.refs = NULL;
    e.digest = 1;
    int seq = PyList_Check(v) || PyTuple_Check(v);
    Py_ssize_t n = seq ? PySequence_Fast_GET_SIZE(v) : 0;
    uLong sum = crc32(0L, Z_NULL, 0);
    rt_buf_clear(tmp);
    if (seq ? put_header(tmp, PyList_Check(v) ? TAG_LIST : TAG_TUPLE, (uint64_t)n) < 0
            : encode_value(&e, tmp, v, 0) < 0)
        return -1;
    for (Py_ssize_t i = 0;; i++) {
        sum = crc32(sum, tmp->data, (uInt)tmp->len);
        rt_buf_clear(tmp);
        if (i >= n || i >= PySequence_Fast_GET_SIZE(v))   /* the list may shrink meanwhile */
            break;
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(v, i));
        int r = encode_value(&e, tmp, item, 0);
        Py_DECREF(item);
        if (r < 0)
            return -1;
    }
    *crc = (uint32_t)sum;
    return 0;
}

/* ---- decoding ------------------------------------------------------------- */

static PyObject *decode_value(rt_cursor *c, int depth);

static PyObject *
corrupt(const char *fmt, ...)
{
    va_list vargs;
    va_start(vargs, fmt);
    PyErr_FormatV(rt_TraceCorrupt, fmt, vargs);
    va_end(vargs);
    return NULL;
}

static PyObject *
truncated(void)
{
    return corrupt("truncated or malformed value data");
}

/* A constructor rejected decoded data (a month of 13, an unhashable dict
 * key): report it as TraceCorrupt. MemoryError and non-Exception errors
 * are left as they are. */
static PyObject *
corrupt_from_error(const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_MemoryError))
        return NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value)
        PyErr_Format(rt_TraceCorrupt, "%s: %S", what, value);
    else
        PyErr_SetString(rt_TraceCorrupt, what);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

/* A count of items that need at least `min_size` bytes each: a count the
 * remaining data cannot hold is rejected before anything is allocated. */
static int
read_count(rt_cursor *c, size_t min_size, Py_ssize_t *n)
{
    uint64_t v;
    if (rt_cur_varint(c, &v) < 0) {
        truncated();
        return -1;
    }
    if (v > (uint64_t)(c->end - c->p) / min_size) {
        corrupt("item count %llu exceeds the remaining data", (unsigned long long)v);
        return -1;
    }
    *n = (Py_ssize_t)v;
    return 0;
}

static int
check_depth(int depth)
{
    if (depth < RT_CODEC_MAX_DEPTH)
        return 0;
    corrupt("values nested deeper than %d levels", RT_CODEC_MAX_DEPTH);
    return -1;
}

static PyObject *
decode_str_payload(rt_cursor *c)
{
    const uint8_t *s;
    size_t n;
    if (rt_cur_str(c, &s, &n) < 0)
        return truncated();
    PyObject *res = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "surrogatepass");
    return res ? res : corrupt_from_error("bad str value");
}

/* A str value inside another value's payload (type names, reprs, ...). */
static PyObject *
decode_str_value(rt_cursor *c, const char *what)
{
    uint8_t tag;
    if (rt_cur_u8(c, &tag) < 0)
        return truncated();
    if (tag != TAG_STR)
        return corrupt("%s: expected a str value, found tag 0x%x", what, (unsigned)tag);
    return decode_str_payload(c);
}

/* The class named by a str value, found among loaded modules. */
static PyObject *
decode_class(rt_cursor *c, const char *what)
{
    PyObject *name = decode_str_value(c, what);
    if (!name)
        return NULL;
    PyObject *cls = find_class(name);
    if (!cls && !PyErr_Occurred()) {
        corrupt("unknown type %U (module not imported in this replay)", name);
    }
    else if (cls && !PyType_Check(cls)) {
        Py_CLEAR(cls);
        corrupt("%U is not a class", name);
    }
    Py_DECREF(name);
    return cls;
}

static PyObject *
decode_bigint(rt_cursor *c)
{
    const uint8_t *p;
    size_t n;
    if (rt_cur_str(c, &p, &n) < 0)
        return truncated();
    return _PyLong_FromByteArray(p, n, 1, 1);
}

static PyObject *
decode_float(rt_cursor *c)
{
    uint64_t bits;
    double d;
    if (rt_cur_u64(c, &bits) < 0)
        return truncated();
    memcpy(&d, &bits, sizeof d);
    return PyFloat_FromDouble(d);
}

static PyObject *
decode_bytes(rt_cursor *c, uint8_t tag)
{
    const uint8_t *p;
    size_t n;
    if (rt_cur_str(c, &p, &n) < 0)
        return truncated();
    if (tag == TAG_BYTEARRAY)
        return PyByteArray_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

/* Tuples, lists and sets: `n` items (the count already read). */
static PyObject *
decode_items(rt_cursor *c, uint8_t tag, Py_ssize_t n, int depth)
{
    PyObject *items = tag == TAG_LIST ? PyList_New(n) : PyTuple_New(n);
    if (!items)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode_value(c, depth + 1);
        if (!item) {
            Py_DECREF(items);
            return NULL;
        }
        if (tag == TAG_LIST)
            PyList_SET_ITEM(items, i, item);
        else
            PyTuple_SET_ITEM(items, i, item);
    }
    if (tag != TAG_SET && tag != TAG_FROZENSET)
        return items;
    PyObject *set = tag == TAG_SET ? PySet_New(items) : PyFrozenSet_New(items);
    Py_DECREF(items);
    return set ? set : corrupt_from_error("bad set item");
}

static PyObject *
decode_sequence(rt_cursor *c, uint8_t tag, int depth)
{
    Py_ssize_t n;
    if (check_depth(depth) < 0 || read_count(c, 1, &n) < 0)
        return NULL;
    return decode_items(c, tag, n, depth);
}

static PyObject *
decode_dict(rt_cursor *c, int depth)
{
    Py_ssize_t n;
    if (check_depth(depth) < 0 || read_count(c, 2, &n) < 0)
        return NULL;
    PyObject *dict = PyDict_New();
    for (Py_ssize_t i = 0; dict && i < n; i++) {
        PyObject *k = decode_value(c, depth + 1);
        PyObject *v = k ? decode_value(c, depth + 1) : NULL;
        if (!v || PyDict_SetItem(dict, k, v) < 0) {
            if (v)
                corrupt_from_error("bad dict key");
            Py_CLEAR(dict);
        }
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return dict;
}

/* The payload of a timedelta, canonical ranges only. */
static PyObject *
decode_delta_payload(rt_cursor *c)
{
    int64_t days, seconds, us;
    if (rt_cur_svarint(c, &days) < 0 || rt_cur_svarint(c, &seconds) < 0
        || rt_cur_svarint(c, &us) < 0)
        return truncated();
    if (days < -999999999 || days > 999999999 || seconds < 0 || seconds >= 86400
        || us < 0 || us >= 1000000)
        return corrupt("timedelta field out of range");
    return PyDelta_FromDSU((int)days, (int)seconds, (int)us);
}

static PyObject *
decode_timezone(rt_cursor *c)
{
    uint8_t tag;
    if (rt_cur_u8(c, &tag) < 0)
        return truncated();
    if (tag != TAG_TIMEDELTA)
        return corrupt("timezone offset: expected a timedelta, found tag 0x%x", (unsigned)tag);
    PyObject *offset = decode_delta_payload(c);
    if (!offset)
        return NULL;
    PyObject *name = NULL, *tz = NULL;
    if (rt_cur_u8(c, &tag) < 0)
        truncated();
    else if (tag == TAG_NONE)
        tz = PyTimeZone_FromOffset(offset);
    else if (tag != TAG_STR)
        corrupt("timezone name: expected a str or None, found tag 0x%x", (unsigned)tag);
    else if ((name = decode_str_payload(c)))
        tz = PyTimeZone_FromOffsetAndName(offset, name);
    if (!tz && !PyErr_ExceptionMatches(rt_TraceCorrupt))
        corrupt_from_error("bad timezone");
    Py_DECREF(offset);
    Py_XDECREF(name);
    return tz;
}

static PyObject *
decode_tzinfo(rt_cursor *c)
{
    uint8_t tag;
    if (rt_cur_u8(c, &tag) < 0)
        return truncated();
    if (tag == TAG_NONE)
        Py_RETURN_NONE;
    if (tag == TAG_TIMEZONE)
        return decode_timezone(c);
    if (tag != TAG_ZONEINFO)
        return corrupt("unknown tzinfo tag 0x%x", (unsigned)tag);
    PyObject *key = decode_str_value(c, "time zone key");
    if (!key)
        return NULL;
    PyObject *cls = stdlib_class(&zoneinfo_class, "zoneinfo", "ZoneInfo", 1);
    PyObject *tz = cls ? PyObject_CallOneArg(cls, key) : NULL;
    Py_DECREF(key);
    return tz || !cls ? tz : corrupt_from_error("cannot load time zone");
}

static PyObject *
decode_datetime(rt_cursor *c)
{
    int64_t year;
    uint8_t month, day, hour, minute, second, fold;
    uint64_t us;
    if (rt_cur_svarint(c, &year) < 0 || rt_cur_u8(c, &month) < 0 || rt_cur_u8(c, &day) < 0
        || rt_cur_u8(c, &hour) < 0 || rt_cur_u8(c, &minute) < 0 || rt_cur_u8(c, &second) < 0
        || rt_cur_varint(c, &us) < 0 || rt_cur_u8(c, &fold) < 0)
        return truncated();
    if (year < 1 || year > 9999 || us > 999999)
        return corrupt("datetime field out of range");
    PyObject *tz = decode_tzinfo(c);
    if (!tz)
        return NULL;
    PyObject *res = PyDateTimeAPI->DateTime_FromDateAndTimeAndFold(
        (int)year, month, day, hour, minute, second, (int)us, tz, fold, PyDateTimeAPI->DateTimeType);
    Py_DECREF(tz);
    return res ? res : corrupt_from_error("bad datetime");
}

static PyObject *
decode_date(rt_cursor *c)
{
    int64_t year;
    uint8_t month, day;
    if (rt_cur_svarint(c, &year) < 0 || rt_cur_u8(c, &month) < 0 || rt_cur_u8(c, &day) < 0)
        return truncated();
    if (year < 1 || year > 9999)
        return corrupt("date field out of range");
    PyObject *res = PyDate_FromDate((int)year, month, day);
    return res ? res : corrupt_from_error("bad date");
}

static PyObject *
decode_time(rt_cursor *c)
{
    uint8_t hour, minute, second, fold;
    uint64_t us;
    if (rt_cur_u8(c, &hour) < 0 || rt_cur_u8(c, &minute) < 0 || rt_cur_u8(c, &second) < 0
        || rt_cur_varint(c, &us) < 0 || rt_cur_u8(c, &fold) < 0)
        return truncated();
    if (us > 999999)
        return corrupt("time field out of range");
    PyObject *tz = decode_tzinfo(c);
    if (!tz)
        return NULL;
    PyObject *res = PyDateTimeAPI->Time_FromTimeAndFold(hour, minute, second, (int)us, tz, fold,
                                                        PyDateTimeAPI->TimeType);
    Py_DECREF(tz);
    return res ? res : corrupt_from_error("bad time");
}

static PyObject *
decode_decimal(rt_cursor *c)
{
    PyObject *s = decode_str_value(c, "Decimal");
    if (!s)
        return NULL;
    PyObject *cls = stdlib_class(&decimal_class, "decimal", "Decimal", 1);
    PyObject *res = cls ? PyObject_CallOneArg(cls, s) : NULL;
    Py_DECREF(s);
    return res || !cls ? res : corrupt_from_error("bad Decimal");
}

static PyObject *
decode_uuid(rt_cursor *c)
{
    const uint8_t *p;
    if (rt_cur_bytes(c, 16, &p) < 0)
        return truncated();
    PyObject *cls = stdlib_class(&uuid_class, "uuid", "UUID", 1);
    if (!cls)
        return NULL;
    /* UUID(hex=None, bytes=...) */
    return PyObject_CallFunction(cls, "Oy#", Py_None, (const char *)p, (Py_ssize_t)16);
}

static PyObject *
decode_structseq(rt_cursor *c, int depth)
{
    Py_ssize_t n;
    if (check_depth(depth) < 0)
        return NULL;
    PyObject *cls = decode_class(c, "struct sequence type");
    if (!cls)
        return NULL;
    if (!structseq_fields((PyTypeObject *)cls, 0)) {
        corrupt("%R is not a struct sequence type", cls);
        Py_DECREF(cls);
        return NULL;
    }
    PyObject *items = read_count(c, 1, &n) < 0 ? NULL : decode_items(c, TAG_TUPLE, n, depth);
    /* Its constructor takes the visible and the hidden fields in order. */
    PyObject *res = items ? PyObject_CallOneArg(cls, items) : NULL;
    if (items && !res)
        corrupt_from_error("bad struct sequence");
    Py_DECREF(cls);
    Py_XDECREF(items);
    return res;
}

/* The nearest class in t's base chain whose own `name` (__new__ or
 * __init__) is implemented in C, i.e. is of type `kind`. Methods written in
 * Python are skipped, so decoding never runs the program's code. */
static PyObject *
c_method(PyTypeObject *cls, const char *name, PyTypeObject *kind)
{
    for (PyTypeObject *t = cls; t; t = t->tp_base) {
        PyObject *ns = type_namespace(t);
        PyObject *f = PyDict_GetItemString(ns, name);
        Py_XINCREF(f);
        Py_DECREF(ns);
        if (f && PyObject_TypeCheck(f, kind))
            return f;
        Py_XDECREF(f);
    }
    return corrupt("%s has no C-level %s", cls->tp_name, name);
}

/* Call `f(first, *args)`. */
static PyObject *
call_prepended(PyObject *f, PyObject *first, PyObject *args)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *argv = PyTuple_New(n + 1);
    if (!argv)
        return NULL;
    PyTuple_SET_ITEM(argv, 0, Py_NewRef(first));
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(argv, i + 1, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    PyObject *res = PyObject_Call(f, argv, NULL);
    Py_DECREF(argv);
    return res;
}

/* Build an exception of class `t` from its args the way its nearest C
 * base would: cls.__new__ and cls.__init__ of that base, so builtin fields
 * (OSError.errno, StopIteration.value, ...) are set, while __new__ and
 * __init__ written in Python, which may expect other arguments, are not
 * run. The __new__ wrapper refuses a base whose memory layout does not fit. */
static PyObject *
new_exception(PyTypeObject *t, PyObject *args)
{
    PyObject *new = c_method(t, "__new__", &PyCFunction_Type);
    PyObject *init = new ? c_method(t, "__init__", &PyWrapperDescr_Type) : NULL;
    PyObject *exc = init ? call_prepended(new, (PyObject *)t, args) : NULL;
    if (exc && !PyExceptionInstance_Check(exc)) {
        Py_CLEAR(exc);
        corrupt("%s.__new__ did not return an exception", t->tp_name);
    }
    if (exc) {
        PyObject *none = call_prepended(init, exc, args);
        if (!none)
            Py_CLEAR(exc);
        Py_XDECREF(none);
    }
    if (!exc && init && !PyErr_ExceptionMatches(rt_TraceCorrupt))
        corrupt_from_error("cannot rebuild exception");
    Py_XDECREF(new);
    Py_XDECREF(init);
    return exc;
}

static int
restore_exception_state(PyObject *exc, PyObject *args, PyObject *state)
{
    PyObject **member;
    PyBaseExceptionObject *be = (PyBaseExceptionObject *)exc;
    int is_oserror = PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError);
    Py_ssize_t pos = 0;
    PyObject *key, *value;

    Py_XSETREF(be->args, Py_NewRef(args));
    while (PyDict_Next(state, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            corrupt("exception attribute names must be str, not %s", Py_TYPE(key)->tp_name);
            return -1;
        }
        size_t i = 0;
        while (is_oserror && i < N_OSERROR_FIELDS
               && PyUnicode_CompareWithASCIIString(key, oserror_fields[i].name) != 0)
            i++;
        if (is_oserror && i < N_OSERROR_FIELDS) {
            Py_XSETREF(*(PyObject **)((char *)exc + oserror_fields[i].offset), Py_NewRef(value));
            continue;
        }
        if ((member = object_member(exc, key, NULL, NULL))) {
            Py_XSETREF(*member, Py_NewRef(value));
            continue;
        }
        /* Straight into __dict__: no __setattr__ or property setter runs. */
        if (!be->dict && !(be->dict = PyDict_New()))
            return -1;
        if (PyDict_SetItem(be->dict, key, value) < 0)
            return -1;
    }
    return 0;
}

static PyObject *
decode_exception(rt_cursor *c, int depth)
{
    if (check_depth(depth) < 0)
        return NULL;
    PyObject *cls = decode_class(c, "exception type");
    if (!cls)
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_BaseException)) {
        corrupt("%R is not an exception class", cls);
        Py_DECREF(cls);
        return NULL;
    }
    PyObject *exc = NULL;
    PyObject *args = decode_value(c, depth + 1);
    PyObject *state = args ? decode_value(c, depth + 1) : NULL;
    if (state && (!PyTuple_CheckExact(args) || !PyDict_CheckExact(state)))
        corrupt("exception value: args must be a tuple and state a dict");
    else if (state && (exc = new_exception((PyTypeObject *)cls, args))
             && restore_exception_state(exc, args, state) < 0)
        Py_CLEAR(exc);
    Py_DECREF(cls);
    Py_XDECREF(args);
    Py_XDECREF(state);
    return exc;
}

static PyObject *
decode_opaque(rt_cursor *c)
{
    PyObject *name = decode_str_value(c, "opaque type name");
    PyObject *repr = name ? decode_str_value(c, "opaque repr") : NULL;
    PyObject *res = repr ? opaque_create(name, repr) : NULL;
    Py_XDECREF(name);
    Py_XDECREF(repr);
    return res;
}

static PyObject *
decode_memoryview(rt_cursor *c)
{
    PyObject *b = decode_bytes(c, TAG_BYTES);
    PyObject *res = b ? PyMemoryView_FromObject(b) : NULL;
    Py_XDECREF(b);
    return res;
}

static PyObject *
decode_handle(rt_cursor *c, uint8_t tag)
{
    uint64_t h;
    if (rt_cur_varint(c, &h) < 0)
        return truncated();
    if (tag == TAG_HANDLE)
        return rt_handle_find(h);
    PyObject *cls = decode_class(c, "class of an external object");
    PyObject *res = cls ? rt_handle_new_standin(cls, h) : NULL;
    Py_XDECREF(cls);
    return res;
}

/* The list of objects 'R' refers to, while rt_decode_refs runs. */
static PyObject *decode_refs;

static PyObject *
decode_ref(rt_cursor *c)
{
    uint64_t i;
    if (rt_cur_varint(c, &i) < 0)
        return truncated();
    if (!decode_refs || i >= (uint64_t)PyList_GET_SIZE(decode_refs))
        return corrupt("reference #%llu to an object of the call out of range",
                       (unsigned long long)i);
    return Py_NewRef(PyList_GET_ITEM(decode_refs, (Py_ssize_t)i));
}

static PyObject *
decode_value(rt_cursor *c, int depth)
{
    uint8_t tag;
    int64_t i;
    if (rt_cur_u8(c, &tag) < 0)
        return truncated();
    switch (tag) {
    case TAG_NONE:
        Py_RETURN_NONE;
    case TAG_TRUE:
        Py_RETURN_TRUE;
    case TAG_FALSE:
        Py_RETURN_FALSE;
    case TAG_INT:
        if (rt_cur_svarint(c, &i) < 0)
            return truncated();
        return PyLong_FromLongLong(i);
    case TAG_BIGINT:
        return decode_bigint(c);
    case TAG_FLOAT:
        return decode_float(c);
    case TAG_STR:
        return decode_str_payload(c);
    case TAG_BYTES:
    case TAG_BYTEARRAY:
        return decode_bytes(c, tag);
    case TAG_TUPLE:
    case TAG_LIST:
    case TAG_SET:
    case TAG_FROZENSET:
        return decode_sequence(c, tag, depth);
    case TAG_DICT:
        return decode_dict(c, depth);
    case TAG_DATETIME:
        return decode_datetime(c);
    case TAG_DATE:
        return decode_date(c);
    case TAG_TIME:
        return decode_time(c);
    case TAG_TIMEDELTA:
        return decode_delta_payload(c);
    case TAG_DECIMAL:
        return decode_decimal(c);
    case TAG_UUID:
        return decode_uuid(c);
    case TAG_STRUCTSEQ:
        return decode_structseq(c, depth);
    case TAG_EXCEPTION:
        return decode_exception(c, depth);
    case TAG_OPAQUE:
        return decode_opaque(c);
    case TAG_MEMORYVIEW:
        return decode_memoryview(c);
    case TAG_HANDLE:
    case TAG_NEW_HANDLE:
        return decode_handle(c, tag);
    case TAG_REF:
        return decode_ref(c);
    default:
        return corrupt("unknown value tag 0x%x", (unsigned)tag);
    }
}

PyObject *
rt_decode(rt_cursor *in)
{
    return rt_decode_refs(in, NULL);
}

PyObject *
rt_decode_refs(rt_cursor *in, PyObject *refs)
{
    /* decoding can run Python code (a stand-in's maker) that decodes too */
    PyObject *outer = decode_refs;
    decode_refs = refs;
    PyObject *res = decode_value(in, 0);
    decode_refs = outer;
    return res;
}

/* ---- module setup ---------------------------------------------------------- */

int
rt_codec_init(void)
{
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI)
        return -1;
    PyObject *info = PyFloat_GetInfo();
    if (!info)
        return -1;
    structseq_dealloc = Py_TYPE(info)->tp_dealloc;
    Py_DECREF(info);
    static const char *const count_names[] = {"n_fields", "n_sequence_fields", "n_unnamed_fields"};
    for (int i = 0; i < 3; i++) {
        structseq_count_names[i] = PyUnicode_InternFromString(count_names[i]);
        if (!structseq_count_names[i])
            return -1;
    }
    return PyType_Ready(&Opaque_Type);
}

/* Adds retrace._engine.Opaque; called from the module init in engine.c. */
int
rt_codec_add_types(PyObject *module)
{
    return PyModule_AddObjectRef(module, "Opaque", (PyObject *)&Opaque_Type);
}
