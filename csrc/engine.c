/* engine.c - the retrace._engine module: module init and the functions it
 * exports. The record/replay machinery itself lives in boundary.c. */
#include "retrace.h"

PyObject *rt_TraceCorrupt;

static PyObject *
engine_encode(PyObject *Py_UNUSED(m), PyObject *v)
{
    rt_buf b = {0};
    if (rt_encode(&b, v) < 0) {
        rt_buf_free(&b);
        return NULL;
    }
    PyObject *res = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
    rt_buf_free(&b);
    return res;
}

static PyObject *
engine_decode(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    rt_cursor c = {view.buf, (const uint8_t *)view.buf + view.len};
    PyObject *res = rt_decode(&c);
    if (res && c.p != c.end) {
        Py_CLEAR(res);
        PyErr_Format(rt_TraceCorrupt, "%zd trailing bytes after the value",
                     (Py_ssize_t)(c.end - c.p));
    }
    PyBuffer_Release(&view);
    return res;
}

/* _write_records(path, header: bytes, records: list[bytes]) - writes a trace
 * through the real writer; used by tests of the stream layer. */
static PyObject *
engine_write_records(PyObject *Py_UNUSED(m), PyObject *args)
{
    const char *path;
    Py_buffer header;
    PyObject *records;
    char err[512];
    if (!PyArg_ParseTuple(args, "sy*O!", &path, &header, &PyList_Type, &records))
        return NULL;
    rt_writer *w = rt_writer_open(path, header.buf, (size_t)header.len, NULL, err, sizeof err);
    PyBuffer_Release(&header);
    if (!w) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *r = PyList_GET_ITEM(records, i);
        if (!PyBytes_Check(r)) {
            rt_writer_close(w, err, sizeof err);
            PyErr_SetString(PyExc_TypeError, "records must be bytes");
            return NULL;
        }
        rt_writer_append(w, (const uint8_t *)PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r));
    }
    if (rt_writer_close(w, err, sizeof err) < 0) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _read_records(path) -> (header, [records], truncated_offset or -1) */
static PyObject *
engine_read_records(PyObject *Py_UNUSED(m), PyObject *args)
{
    const char *path;
    char err[512];
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    rt_reader *r = rt_reader_open(path, err, sizeof err);
    if (!r) {
        PyErr_SetString(rt_TraceCorrupt, err);
        return NULL;
    }
    size_t hlen;
    const uint8_t *h = rt_reader_header(r, &hlen);
    PyObject *list = PyList_New(0);
    PyObject *header = PyBytes_FromStringAndSize((const char *)h, (Py_ssize_t)hlen);
    if (!list || !header)
        goto fail;
    const uint8_t *rec;
    size_t len;
    int st;
    while ((st = rt_reader_next(r, &rec, &len)) == 1) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)rec, (Py_ssize_t)len);
        if (!b || PyList_Append(list, b) < 0) {
            Py_XDECREF(b);
            goto fail;
        }
        Py_DECREF(b);
    }
    if (st < 0) {
        PyErr_SetString(rt_TraceCorrupt, rt_reader_error(r));
        goto fail;
    }
    PyObject *res = Py_BuildValue("(NNL)", header, list, (long long)rt_reader_truncated(r));
    rt_reader_close(r);
    return res;
fail:
    Py_XDECREF(list);
    Py_XDECREF(header);
    rt_reader_close(r);
    return NULL;
}

/* on_main_start(callback): call callback() once, when the interpreter is about
 * to run the program (-c, -m, a file or stdin) - after site.py, .pth files and
 * sitecustomize are done. Uses the audit event CPython raises at that point;
 * after it fired, the hook returns at the first comparison. */
static PyObject *g_main_start;

static int
main_start_hook(const char *event, PyObject *Py_UNUSED(args), void *Py_UNUSED(data))
{
    if (!g_main_start || strncmp(event, "cpython.run_", 12) != 0)
        return 0;
    PyObject *callback = g_main_start;
    g_main_start = NULL;
    PyObject *res = PyObject_CallNoArgs(callback);
    if (!res)
        PyErr_WriteUnraisable(callback);   /* never stop the program */
    Py_XDECREF(res);
    Py_DECREF(callback);
    return 0;
}

static PyObject *
engine_on_main_start(PyObject *Py_UNUSED(m), PyObject *callback)
{
    if (g_main_start) {
        PyErr_SetString(PyExc_RuntimeError, "on_main_start is already armed");
        return NULL;
    }
    if (PySys_AddAuditHook(main_start_hook, NULL) < 0)
        return NULL;
    g_main_start = Py_NewRef(callback);
    Py_RETURN_NONE;
}

static PyMethodDef engine_methods[] = {
    {"on_main_start", engine_on_main_start, METH_O,
     "on_main_start(callback): call it once when the interpreter starts the program"},
    {"encode", engine_encode, METH_O, "encode(value) -> bytes in the trace value encoding"},
    {"decode", engine_decode, METH_O, "decode(bytes) -> value; raises TraceCorrupt"},
    {"_write_records", engine_write_records, METH_VARARGS, "write a trace of raw records (tests)"},
    {"_read_records", engine_read_records, METH_VARARGS, "read (header, records, truncated_at)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT, "retrace._engine",
    "The C core of Retrace: codec, trace stream and boundary wrappers.",
    -1, engine_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__engine(void)
{
    PyObject *errors = PyImport_ImportModule("retrace.errors");
    if (!errors)
        return NULL;
    rt_TraceCorrupt = PyObject_GetAttrString(errors, "TraceCorrupt");
    Py_DECREF(errors);
    if (!rt_TraceCorrupt || rt_codec_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "FORMAT_VERSION", RT_FORMAT_VERSION) < 0 ||
        rt_codec_add_types(m) < 0 || rt_boundary_init(m) < 0 || rt_handles_init(m) < 0 ||
        rt_stepper_init(m) < 0 || rt_ckpt_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
