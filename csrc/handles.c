/* handles.c - external objects the program holds, and callbacks into it.
 *
 * Handles. A C driver hands the program objects with a resource behind them
 * (an sqlite3.Connection, a psycopg2 cursor). Their types are registered with
 * handle_type(); each instance gets a small number, its handle, the first
 * time it crosses the boundary (as a value, codec.c's 'n' and 'H' tags, or as
 * the receiver of a method call). Handles are given in event order, so replay
 * gives the same numbers to its own objects: a value 'n' makes a stand-in
 * (make_standin(cls), the driver module's choice of an object of the real
 * type with no resource behind it), 'H' finds the object again, and a method
 * call is checked to be made on the object the recording made it on.
 *
 * The table pointer -> handle must forget an object when it dies, or a new
 * object at the same address would inherit its handle: registering a type
 * replaces its tp_dealloc by one that drops the entry first. Entries also
 * keep the exact type, a second guard against reuse by a C subtype that
 * copied the old tp_dealloc.
 *
 * Callbacks. Callback(func) wraps a callable that the program gives a driver
 * (a typecaster, an sqlite3 function, a row factory). Calling it goes through
 * rt_boundary_callback (boundary.c), which records the call when it happens
 * inside an external call and runs the program's function with the boundary
 * on. Each Callback has a number in creation order; replay finds it by that
 * number to call it again.
 *
 * Statements. A driver method that runs a statement (a Boundary made with
 * statement=True) records, with its result, the statement text and the
 * CRC-32 of its parameters, and the values of some members of the result
 * (a cursor's description and lastrowid, which C code reads straight from
 * the struct); replay checks the statement and the parameters are the
 * recorded ones, and stores the members into the replayed result.
 */
#include "retrace.h"

#include <structmember.h>

/* ---- handle types -------------------------------------------------------- */

#define MAX_HANDLE_TYPES 16

static struct {
    PyTypeObject *type;
    destructor dealloc;       /* the type's own */
    PyObject *make_standin;   /* make_standin(cls) -> a stand-in for replay */
} g_types[MAX_HANDLE_TYPES];
static int g_ntypes;

/* pointer -> handle, open addressing with linear probing */
typedef struct {
    PyObject *obj;           /* borrowed; NULL: free slot */
    PyTypeObject *type;
    uint64_t handle;
} entry;
static entry *g_table;
static size_t g_cap;         /* a power of two, or 0 */
static size_t g_count;

/* handle -> its object (borrowed, NULL once dead) and its class (owned) */
typedef struct {
    PyObject *obj;
    PyObject *cls;
} slot;
static slot *g_slots;
static size_t g_nslots;
static uint64_t g_next_handle = 1;

static size_t
bucket(PyObject *o)
{
    return (size_t)(((uintptr_t)o >> 4) * 0x9E3779B97F4A7C15ull) & (g_cap - 1);
}

static entry *
find_entry(PyObject *o)
{
    if (!g_cap)
        return NULL;
    for (size_t i = bucket(o);; i = (i + 1) & (g_cap - 1)) {
        if (g_table[i].obj == o)
            return &g_table[i];
        if (!g_table[i].obj)
            return NULL;
    }
}

static void
remove_entry(entry *e)
{
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t i = (size_t)(e - g_table);
    if (e->handle < g_nslots)
        g_slots[e->handle].obj = NULL;
    for (size_t j = (i + 1) & (g_cap - 1); g_table[j].obj; j = (j + 1) & (g_cap - 1)) {
        size_t home = bucket(g_table[j].obj);
        /* move j into the hole at i unless its home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            g_table[i] = g_table[j];
            i = j;
        }
    }
    g_table[i].obj = NULL;
    g_count--;
}

static int
put_entry(PyObject *o, uint64_t handle)
{
    if ((g_count + 1) * 2 > g_cap) {
        size_t cap = g_cap ? g_cap * 2 : 256;
        entry *old = g_table;
        size_t old_cap = g_cap;
        g_table = calloc(cap, sizeof *g_table);
        if (!g_table) {
            g_table = old;
            return -1;
        }
        g_cap = cap;
        g_count = 0;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].obj) {
                size_t k = bucket(old[i].obj);
                while (g_table[k].obj)
                    k = (k + 1) & (g_cap - 1);
                g_table[k] = old[i];
                g_count++;
            }
        }
        free(old);
    }
    size_t k = bucket(o);
    while (g_table[k].obj)
        k = (k + 1) & (g_cap - 1);
    g_table[k] = (entry){o, Py_TYPE(o), handle};
    g_count++;
    return 0;
}

static int
set_slot(uint64_t handle, PyObject *o)
{
    if (handle >= g_nslots) {
        size_t n = g_nslots ? g_nslots : 256;
        while (n <= handle)
            n *= 2;
        slot *grown = realloc(g_slots, n * sizeof *grown);
        if (!grown)
            return -1;
        memset(grown + g_nslots, 0, (n - g_nslots) * sizeof *grown);
        g_slots = grown;
        g_nslots = n;
    }
    g_slots[handle].obj = o;
    Py_XSETREF(g_slots[handle].cls, Py_NewRef((PyObject *)Py_TYPE(o)));
    return 0;
}

static int
registered(PyTypeObject *t)
{
    for (; t; t = t->tp_base) {
        for (int i = 0; i < g_ntypes; i++) {
            if (g_types[i].type == t)
                return i;
        }
    }
    return -1;
}

/* Replaces the registered types' tp_dealloc: forget the object, then free it
 * as before. Python subclasses reach it through subtype_dealloc. */
static void
handle_dealloc(PyObject *o)
{
    entry *e = find_entry(o);
    if (e)
        remove_entry(e);
    g_types[registered(Py_TYPE(o))].dealloc(o);
}

int
rt_handle_is_external(PyObject *v)
{
    return g_ntypes && registered(Py_TYPE(v)) >= 0;
}

int
rt_handle_get(PyObject *v, uint64_t *handle, int *is_new)
{
    entry *e = find_entry(v);
    if (e && e->type == Py_TYPE(v)) {
        *handle = e->handle;
        *is_new = 0;
        return 0;
    }
    if (e)
        remove_entry(e);   /* a stale entry of a dead object */
    *handle = g_next_handle;
    *is_new = 1;
    if (put_entry(v, *handle) < 0 || set_slot(*handle, v) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    g_next_handle++;
    return 0;
}

static PyObject *
make_standin(PyObject *cls)
{
    int i = PyType_Check(cls) ? registered((PyTypeObject *)cls) : -1;
    if (i < 0) {
        PyErr_Format(rt_TraceCorrupt, "%R is not a type of external objects", cls);
        return NULL;
    }
    rt_boundary_suspend(1);    /* Retrace's own work */
    PyObject *o = PyObject_CallOneArg(g_types[i].make_standin, cls);
    rt_boundary_suspend(-1);
    if (o && !PyObject_TypeCheck(o, (PyTypeObject *)cls)) {
        PyErr_Format(PyExc_TypeError, "make_standin(%R) made a %s", cls, Py_TYPE(o)->tp_name);
        Py_CLEAR(o);
    }
    return o;
}

PyObject *
rt_handle_new_standin(PyObject *cls, uint64_t handle)
{
    if (handle != g_next_handle) {
        PyErr_Format(rt_TraceCorrupt, "external object #%llu out of order (expected #%llu)",
                     (unsigned long long)handle, (unsigned long long)g_next_handle);
        return NULL;
    }
    PyObject *o = make_standin(cls);
    uint64_t h;
    int is_new;
    if (o && rt_handle_get(o, &h, &is_new) < 0)
        Py_CLEAR(o);
    return o;
}

PyObject *
rt_handle_find(uint64_t handle)
{
    if (handle == 0 || handle >= g_next_handle || handle >= g_nslots) {
        PyErr_Format(rt_TraceCorrupt, "unknown external object #%llu", (unsigned long long)handle);
        return NULL;
    }
    if (g_slots[handle].obj)
        return Py_NewRef(g_slots[handle].obj);
    /* The replay's object died while the recorded one lived on (a driver
     * object kept it alive): a new stand-in of the same class takes over. */
    PyObject *o = make_standin(g_slots[handle].cls);
    if (o && (put_entry(o, handle) < 0 || set_slot(handle, o) < 0)) {
        Py_DECREF(o);
        return PyErr_NoMemory();
    }
    return o;
}

/* ---- references to the objects of a call ------------------------------------ */

static size_t
ref_bucket(const rt_refs *r, PyObject *o)
{
    return (size_t)(((uintptr_t)o >> 4) * 0x9E3779B97F4A7C15ull) & (r->cap - 1);
}

Py_ssize_t
rt_refs_find(const rt_refs *r, PyObject *o)
{
    if (!r->cap || o == Py_None || o == Py_True || o == Py_False)
        return -1;
    for (size_t i = ref_bucket(r, o); r->keys[i]; i = (i + 1) & (r->cap - 1)) {
        if (r->keys[i] == o)
            return r->index[i];
    }
    return -1;
}

static void
refs_index(rt_refs *r, PyObject *o, Py_ssize_t at)
{
    size_t i = ref_bucket(r, o);
    while (r->keys[i] && r->keys[i] != o)
        i = (i + 1) & (r->cap - 1);
    if (!r->keys[i]) {           /* the first index of an object wins */
        r->keys[i] = o;
        r->index[i] = at;
    }
}

int
rt_refs_add(rt_refs *r, PyObject *o)
{
    if (!r->list && !(r->list = PyList_New(0)))
        return -1;
    Py_ssize_t at = PyList_GET_SIZE(r->list);
    if (PyList_Append(r->list, o) < 0)
        return -1;
    if ((size_t)(at + 1) * 2 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        PyObject **keys = calloc(cap, sizeof *keys);
        Py_ssize_t *index = calloc(cap, sizeof *index);
        if (!keys || !index) {
            free(keys);
            free(index);
            PyErr_NoMemory();
            return -1;
        }
        free(r->keys);
        free(r->index);
        r->keys = keys;
        r->index = index;
        r->cap = cap;
        for (Py_ssize_t i = 0; i < at; i++)
            refs_index(r, PyList_GET_ITEM(r->list, i), i);
    }
    refs_index(r, o, at);
    return 0;
}

void
rt_refs_free(rt_refs *r)
{
    if (!r->list)
        return;     /* most calls have none: the table exists only with a list */
    Py_CLEAR(r->list);
    free(r->keys);
    free(r->index);
    r->keys = NULL;
    r->index = NULL;
    r->cap = 0;
}

/* ---- callbacks ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *func;
    uint64_t cbid;
    vectorcallfunc vectorcall;
} Callback;

static Callback **g_callbacks;   /* cbid -> Callback (borrowed; NULL once dead) */
static size_t g_ncallbacks;
static uint64_t g_next_cbid = 1;

static PyObject *
callback_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Callback *self = (Callback *)op;
    return rt_boundary_callback(self->cbid, self->func, args, nargsf, kwnames);
}

static PyObject *
callback_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"func", NULL};
    PyObject *func;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Callback", kwlist, &func))
        return NULL;
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "Callback(func): func must be callable");
        return NULL;
    }
    uint64_t cbid = g_next_cbid;
    if (cbid >= g_ncallbacks) {
        size_t n = g_ncallbacks ? g_ncallbacks * 2 : 64;
        Callback **grown = realloc(g_callbacks, n * sizeof *grown);
        if (!grown)
            return PyErr_NoMemory();
        memset(grown + g_ncallbacks, 0, (n - g_ncallbacks) * sizeof *grown);
        g_callbacks = grown;
        g_ncallbacks = n;
    }
    Callback *self = (Callback *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->func = Py_NewRef(func);
    self->cbid = cbid;
    self->vectorcall = callback_vectorcall;
    g_callbacks[cbid] = self;
    g_next_cbid++;
    return (PyObject *)self;
}

static int
callback_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(((Callback *)op)->func);
    return 0;
}

static void
callback_dealloc(PyObject *op)
{
    Callback *self = (Callback *)op;
    PyObject_GC_UnTrack(op);
    if (self->cbid < g_ncallbacks && g_callbacks[self->cbid] == self)
        g_callbacks[self->cbid] = NULL;
    Py_CLEAR(self->func);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
callback_repr(PyObject *op)
{
    Callback *self = (Callback *)op;
    return PyUnicode_FromFormat("<retrace callback #%llu %R>", (unsigned long long)self->cbid,
                                self->func);
}

static PyObject *
callback_get_func(PyObject *op, void *Py_UNUSED(c))
{
    return Py_NewRef(((Callback *)op)->func);
}

static PyObject *
callback_get_cbid(PyObject *op, void *Py_UNUSED(c))
{
    return PyLong_FromUnsignedLongLong(((Callback *)op)->cbid);
}

static PyGetSetDef callback_getset[] = {
    {"__wrapped__", callback_get_func, NULL, "the program's callable", NULL},
    {"number", callback_get_cbid, NULL, "the callback's number in the trace", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CallbackType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "retrace._engine.Callback",
    .tp_doc = "Callback(func): func as given to a C driver; its calls from inside an\n"
              "external call are recorded and made again in replay.",
    .tp_basicsize = sizeof(Callback),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = callback_new,
    .tp_dealloc = callback_dealloc,
    .tp_traverse = callback_traverse,
    .tp_repr = callback_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Callback, vectorcall),
    .tp_getset = callback_getset,
};

PyObject *
rt_callback_func(uint64_t cbid)
{
    if (cbid < g_ncallbacks && g_callbacks[cbid])
        return g_callbacks[cbid]->func;
    return NULL;
}

/* A new recording or replay: numbering starts again. */
void
rt_handles_reset(void)
{
    for (size_t i = 0; i < g_cap; i++)
        g_table[i].obj = NULL;
    g_count = 0;
    for (size_t i = 0; i < g_nslots; i++) {
        g_slots[i].obj = NULL;
        Py_CLEAR(g_slots[i].cls);
    }
    g_next_handle = 1;
    for (size_t i = 0; i < g_ncallbacks; i++) {
        if (g_callbacks[i])
            g_callbacks[i]->cbid = 0;   /* numbered in an earlier session */
        g_callbacks[i] = NULL;
    }
    g_next_cbid = 1;
}

/* ---- statements ------------------------------------------------------------ */

/* The statement of a call (args[0] is the receiver) and its parameters:
 * the second and third positional argument, or keyword ones. Borrowed;
 * NULL if absent. */
static void
statement_args(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **sql,
               PyObject **params)
{
    static const char *sql_names[] = {"sql", "query", "sql_script", "procname", NULL};
    static const char *param_names[] = {"parameters", "vars", "vars_list",
                                        "seq_of_parameters", NULL};
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    *sql = n > 1 ? args[1] : NULL;
    *params = n > 2 ? args[2] : NULL;
    for (Py_ssize_t i = 0; kwnames && i < PyTuple_GET_SIZE(kwnames); i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        for (int k = 0; sql_names[k]; k++) {
            if (PyUnicode_CompareWithASCIIString(key, sql_names[k]) == 0)
                *sql = args[n + i];
        }
        for (int k = 0; param_names[k]; k++) {
            if (PyUnicode_CompareWithASCIIString(key, param_names[k]) == 0)
                *params = args[n + i];
        }
    }
    if (*sql && !PyUnicode_Check(*sql) && !PyBytes_Check(*sql))
        *sql = NULL;   /* a composed statement object: not checked */
}

/* The text and the digest (an int, or None without parameters) of a call. */
static int
statement_of(PyObject *const *args, size_t nargsf, PyObject *kwnames, rt_buf *tmp,
             PyObject **sql, PyObject **digest)
{
    PyObject *params;
    uint32_t crc;
    statement_args(args, nargsf, kwnames, sql, &params);
    if (!*sql)
        *sql = Py_None;
    if (!params) {
        *digest = Py_NewRef(Py_None);
        return 0;
    }
    if (rt_digest(params, tmp, &crc) < 0)
        return -1;
    *digest = PyLong_FromUnsignedLong(crc);
    return *digest ? 0 : -1;
}

PyObject *
rt_statement_record(PyObject *result, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                    PyObject *members, rt_buf *tmp)
{
    PyObject *sql, *digest;
    if (statement_of(args, nargsf, kwnames, tmp, &sql, &digest) < 0)
        return NULL;
    Py_ssize_t m = members ? PyTuple_GET_SIZE(members) : 0;
    PyObject *rec = PyTuple_New(3 + m);
    if (!rec) {
        Py_DECREF(digest);
        return NULL;
    }
    PyTuple_SET_ITEM(rec, 0, Py_NewRef(result));
    PyTuple_SET_ITEM(rec, 1, Py_NewRef(sql));
    PyTuple_SET_ITEM(rec, 2, digest);
    for (Py_ssize_t i = 0; i < m; i++) {
        PyMemberDescrObject *md = (PyMemberDescrObject *)PyTuple_GET_ITEM(members, i);
        PyObject *v = PyObject_TypeCheck(result, PyDescr_TYPE(md))
            ? PyMember_GetOne((const char *)result, md->d_member) : Py_NewRef(Py_None);
        if (!v) {
            Py_DECREF(rec);
            return NULL;
        }
        PyTuple_SET_ITEM(rec, 3 + i, v);
    }
    return rec;
}

int
rt_statement_replay(PyObject *name, PyObject *recorded, PyObject *const *args, size_t nargsf,
                    PyObject *kwnames, PyObject *members, rt_buf *tmp, PyObject **result)
{
    Py_ssize_t m = members ? PyTuple_GET_SIZE(members) : 0;
    if (!PyTuple_CheckExact(recorded) || PyTuple_GET_SIZE(recorded) != 3 + m) {
        PyErr_Format(rt_TraceCorrupt, "the record of %U holds no statement", name);
        return -1;
    }
    PyObject *sql, *digest, *rec_sql = PyTuple_GET_ITEM(recorded, 1);
    PyObject *rec_digest = PyTuple_GET_ITEM(recorded, 2);
    if (statement_of(args, nargsf, kwnames, tmp, &sql, &digest) < 0)
        return -1;
    PyObject *masked = rt_boundary_redact(sql);   /* as the recording masked its text */
    int same_sql = masked ? PyObject_RichCompareBool(rec_sql, masked, Py_EQ) : -1;
    Py_XDECREF(masked);
    int same_params = same_sql == 1 ? PyObject_RichCompareBool(rec_digest, digest, Py_EQ) : 0;
    Py_DECREF(digest);
    if (same_sql < 0 || same_params < 0)
        return -1;
    if (!same_sql || !same_params) {
        PyObject *params, *ignored;
        statement_args(args, nargsf, kwnames, &ignored, &params);
        PyObject *expected = same_sql
            ? PyUnicode_FromFormat("%U(%R, <parameters with CRC-32 %R>)", name, rec_sql,
                                   rec_digest)
            : PyUnicode_FromFormat("%U(%R)", name, rec_sql);
        PyObject *actual = same_sql
            ? PyUnicode_FromFormat("%U(%R, %.300R)", name, sql, params ? params : Py_None)
            : PyUnicode_FromFormat("%U(%R)", name, sql);
        if (expected && actual)
            rt_boundary_diverge(same_sql ? "the program passes other parameters to the "
                                           "statement than the recorded run"
                                         : "the program runs another statement than the "
                                           "recorded run", expected, actual);
        Py_XDECREF(expected);
        Py_XDECREF(actual);
        return -1;
    }
    *result = PyTuple_GET_ITEM(recorded, 0);
    for (Py_ssize_t i = 0; i < m; i++) {
        PyMemberDescrObject *md = (PyMemberDescrObject *)PyTuple_GET_ITEM(members, i);
        if (PyObject_TypeCheck(*result, PyDescr_TYPE(md))) {
            PyObject **slot = (PyObject **)((char *)*result + md->d_member->offset);
            Py_XSETREF(*slot, Py_NewRef(PyTuple_GET_ITEM(recorded, 3 + i)));
        }
    }
    Py_INCREF(*result);
    return 0;
}

/* Whether members is a tuple of object member descriptors (statement members). */
int
rt_statement_members_check(PyObject *members)
{
    for (Py_ssize_t i = 0; PyTuple_Check(members) && i < PyTuple_GET_SIZE(members); i++) {
        PyObject *d = PyTuple_GET_ITEM(members, i);
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            (((PyMemberDescrObject *)d)->d_member->type != T_OBJECT &&
             ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX))
            return 0;
    }
    return PyTuple_Check(members);
}

/* ---- module functions ------------------------------------------------------ */

/* handle_type(type, make_standin): instances of type (and its subclasses) are
 * external objects. */
static PyObject *
handle_type(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyTypeObject *type;
    PyObject *make;
    if (!PyArg_ParseTuple(args, "O!O:handle_type", &PyType_Type, &type, &make))
        return NULL;
    if (!PyCallable_Check(make)) {
        PyErr_SetString(PyExc_TypeError, "make_standin must be callable");
        return NULL;
    }
    int i = registered(type);
    if (i >= 0 && g_types[i].type == type) {
        Py_SETREF(g_types[i].make_standin, Py_NewRef(make));
        Py_RETURN_NONE;
    }
    int related = i >= 0;
    for (int k = 0; k < g_ntypes; k++)
        related |= PyType_IsSubtype(g_types[k].type, type);
    if (related || g_ntypes == MAX_HANDLE_TYPES) {
        PyErr_Format(PyExc_ValueError, "cannot register %s: related to a registered type, "
                     "or too many types", type->tp_name);
        return NULL;
    }
    g_types[g_ntypes].type = (PyTypeObject *)Py_NewRef((PyObject *)type);
    g_types[g_ntypes].dealloc = type->tp_dealloc;
    g_types[g_ntypes].make_standin = Py_NewRef(make);
    g_ntypes++;
    type->tp_dealloc = handle_dealloc;
    Py_RETURN_NONE;
}

/* handle_of(obj) -> its handle, or None if it has none (yet) */
static PyObject *
handle_of(PyObject *Py_UNUSED(m), PyObject *obj)
{
    entry *e = find_entry(obj);
    if (!e || e->type != Py_TYPE(obj))
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(e->handle);
}

/* set_member(obj, descriptor, value): store into an object member of a C type
 * (T_OBJECT or T_OBJECT_EX), read-only ones included. Replay uses it to give
 * a stand-in the state that C code reads straight from the struct. */
static PyObject *
set_member(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *obj, *descr, *value;
    if (!PyArg_ParseTuple(args, "OO!O:set_member", &obj, &PyMemberDescr_Type, &descr, &value))
        return NULL;
    PyMemberDescrObject *md = (PyMemberDescrObject *)descr;
    PyMemberDef *def = md->d_member;
    if (!PyObject_TypeCheck(obj, PyDescr_TYPE(md)) ||
        (def->type != T_OBJECT && def->type != T_OBJECT_EX)) {
        PyErr_Format(PyExc_TypeError, "set_member: %R is not an object member of %s", descr,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    Py_XSETREF(*(PyObject **)((char *)obj + def->offset), Py_NewRef(value));
    Py_RETURN_NONE;
}

/* set_type_attr(type, name, value): set an attribute of a C type as a class
 * assignment would, so that its slot follows (tp_iternext for __next__:
 * `for row in cursor` calls the slot, not the dict). The type is made
 * mutable for the assignment only. */
static PyObject *
set_type_attr(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyTypeObject *type;
    PyObject *name, *value;
    if (!PyArg_ParseTuple(args, "O!UO:set_type_attr", &PyType_Type, &type, &name, &value))
        return NULL;
    unsigned long immutable = type->tp_flags & Py_TPFLAGS_IMMUTABLETYPE;
    type->tp_flags &= ~Py_TPFLAGS_IMMUTABLETYPE;
    int rc = PyObject_SetAttr((PyObject *)type, name, value);
    type->tp_flags |= immutable;
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
exception_extras(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *cls, *fn;
    if (!PyArg_ParseTuple(args, "O!O:exception_extras", &PyType_Type, &cls, &fn))
        return NULL;
    if (rt_codec_exception_extras(cls, fn) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef handles_methods[] = {
    {"exception_extras", exception_extras, METH_VARARGS,
     "exception_extras(cls, fn): recorded exceptions of cls also keep the dict fn(exc)"},
    {"set_type_attr", set_type_attr, METH_VARARGS,
     "set_type_attr(type, name, value): set a C type's attribute, updating its slot"},
    {"handle_type", handle_type, METH_VARARGS,
     "handle_type(type, make_standin): its instances are external objects with handles"},
    {"handle_of", handle_of, METH_O, "handle_of(obj) -> its handle in the trace, or None"},
    {"set_member", set_member, METH_VARARGS,
     "set_member(obj, member_descriptor, value): store an object member, even read-only"},
    {NULL, NULL, 0, NULL},
};

int
rt_handles_init(PyObject *module)
{
    if (PyType_Ready(&CallbackType) < 0 ||
        PyModule_AddObjectRef(module, "Callback", (PyObject *)&CallbackType) < 0 ||
        PyModule_AddFunctions(module, handles_methods) < 0)
        return -1;
    return 0;
}
