/* boundary.c - the boundary between the program and the outside world.
 *
 * A Boundary object wraps one external callable (time.time, posix.stat, ...).
 * Recording: the call runs for real and its result or exception is appended
 * to the trace as a CALL record.  Replay: the call does not run; the next
 * CALL record must name the same function and thread, and its outcome is
 * returned or raised.  Any mismatch is a divergence, and replay stops.
 *
 * Records (each framed by stream.c):
 *   'D' varint fid, str name          defines a function id on first use
 *   'C' varint tid, varint fid, u8 outcome, [varint receiver], value
 *        outcome bit 0: raised; bit 1: the receiver's handle follows;
 *        bit 2: made by code the garbage collector ran
 *   'K' varint tid, varint fid, varint callback, value (args, kwargs)
 *        a callback made by the external call `fid` that is in progress
 *   'E' value                          the end of the run (a dict)
 *   'X' varint reason, varint limit    the recording was cut here (stream.c)
 *
 * Work done by Retrace itself, and calls made while an external call is in
 * progress, run with the boundary disabled for that thread: they execute
 * for real and are not recorded. The exception are Callbacks (handles.c),
 * functions of the program that a driver calls: each call is a 'K' record
 * written before the function runs, with the boundary on, so its own events
 * follow it; the external call's 'C' record comes last. Replay, asked for
 * that call, first makes the recorded callbacks with the recorded arguments
 * and then returns the recorded outcome. Arguments of the call and what the
 * callbacks returned are the call's "refs": values refer to them by index
 * ('R'), so a row a row factory made is the object the replay's row factory
 * made.
 *
 * A "receiver" boundary is a method of an external object (handles.c): the
 * record carries the object's handle, and replay checks that the call is
 * made on the object the recording made it on. A receiver seen for the first
 * time gets its handle when the call's record is written (recording) or
 * read (replay), not when the call starts: handles then follow the order of
 * the records even when another thread's records come between the start
 * and the end of the call.
 *
 * Replay runs one thread at a time, in the recorded order of events (demux.c).
 * "Ordered" boundaries (lock release, queue put) record only their place in
 * that order: the event is written before the call, so that whatever the call
 * unblocks comes after it in the trace, and replay makes the same call for
 * real when its turn comes.
 *
 * Code that the cyclic garbage collector runs (finalizers) makes calls at
 * moments replay does not share: they are kept out of that order (see "code
 * the garbage collector runs" below).
 */
#include "retrace.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <zlib.h>
#include <frameobject.h>

enum { MODE_OFF, MODE_RECORD, MODE_REPLAY };
enum { OUTCOME_RETURN = 0, OUTCOME_RAISE = 1, OUTCOME_RECEIVER = 2, OUTCOME_COLLECTOR = 4 };

typedef struct {
    PyObject_HEAD
    PyObject *name;      /* "time.time": the identity written to the trace */
    PyObject *func;      /* the real callable */
    PyObject *replay;    /* optional: replay(recorded, *args) makes the result */
    int split;           /* func returns (recorded, returned); the call returns `returned` */
    int ordered;         /* only the call's place in the order is recorded; it runs in replay too */
    int output;          /* func(fd, data) writes output: see record_output */
    int outcome_only;    /* record whether it returned or raised, not the value */
    int receiver;        /* a method of an external object: its handle is checked */
    int statement;       /* runs a statement: text and parameters checked (handles.c) */
    PyObject *members;   /* with statement: members of the result recorded with it, or NULL */
    PyObject *collector; /* optional: what replay runs when the garbage collector's code calls */
    PyObject *fallback;  /* optional: func is Retrace's Python code around world() calls;
                          * fallback(done, *args) is the call without Retrace (see recover) */
    uint64_t fid;        /* id in this recording; 0 until first recorded use */
    vectorcallfunc vectorcall;
} Boundary;

/* The external call a thread is making (recording), for its callbacks. */
typedef struct {
    Boundary *call;            /* NULL: none */
    PyObject *const *args;     /* its positional and keyword arguments (borrowed) */
    Py_ssize_t nargs;
    PyObject *receiver;        /* its receiver, an external object (borrowed), or NULL */
    rt_refs refs;              /* set up at its first callback */
    PyObject *world_result;    /* what its func's latest world() call returned, or NULL */
    PyObject *world_exc;       /* ... or the exception it raised, or NULL */
} rt_frame;

typedef struct {
    int disabled;        /* > 0: calls pass through unrecorded */
    rt_frame frame;
    uint64_t tid;        /* thread number in the trace */
    int has_tid;
    uint64_t last_event; /* index of this thread's latest CALL record */
    rt_buf scratch;      /* the record being encoded */
    int collecting;      /* > 0: the thread runs code of the cyclic garbage collector */
    int program;         /* ... but now the program's own (a signal handler inside it) */
    int in_gc;           /* a collection of this thread entered the collector's context */
    int outside_disabled;    /* the thread's state when the collector began */
    rt_frame outside_frame;
    rt_buf other_scratch;    /* the collector's scratch outside a collection, and back */
} rt_thread;

static int g_mode = MODE_OFF;
static PyObject *g_divergence_exc; /* the first divergence, raised again on every later call */
static uint64_t g_event_index;      /* CALL records recorded or replayed so far */
static int g_live_outputs;          /* replay: output calls run live, recorded ones are skipped */
static int g_refuse;                /* a debugger's throwaway process: external calls raise */
static rt_thread *g_ender;          /* the thread that ended the recording */
static uint64_t g_next_fid = 1;
static uint64_t g_next_tid;
static rt_writer *g_writer;
static rt_reader *g_reader;
static PyObject *g_registry;        /* name -> Boundary, for replay lookups */
static PyObject *g_divergence;      /* callable building a ReplayDivergence */
static PyObject *g_signal_event;    /* the Boundary of "a signal handler ran here" */
static PyObject *g_signal_deliver;  /* runs a handler at an external call (_signals.py) */
/* Recording: a handler that would have run between two bytecodes waits for
 * the main thread's next external call, where replay can run it too. */
static volatile int g_signals_deferred;
static unsigned long g_deferred_thread;
static struct timespec g_deferred_since;
static int g_deferred_signum;   /* one of them, to raise again when overdue */
static int g_overdue_signum;    /* raised again: its next handler call is ours */
static PyObject *g_redact;          /* redact(value) -> value to record, or NULL; replay:
                                     * the recording's, for rt_boundary_redact */

/* Replay: recorded fid -> its recorded name and the Boundary of that name in
 * this replay (borrowed from g_registry; NULL if not intercepted here). */
typedef struct {
    PyObject *name;
    Boundary *boundary;
} rt_fid;
static rt_fid *g_fids;
static size_t g_nfids;

/* Replay: the next record, read ahead but not yet consumed */
static const uint8_t *g_pending;
static size_t g_pending_len;

static pthread_key_t g_thread_key;
static _Thread_local rt_thread *t_state;

static void
thread_state_free(void *p)
{
    rt_thread *t = p;
    rt_buf_free(&t->scratch);
    rt_buf_free(&t->other_scratch);
    free(t);
}

static rt_thread *
thread_alloc(void)
{
    if (!t_state) {
        t_state = calloc(1, sizeof *t_state);
        if (!t_state)
            return NULL;
        pthread_setspecific(g_thread_key, t_state);
    }
    return t_state;
}

/* This thread's state. A thread that Retrace did not number when it was
 * spawned (spawn_thread) gets the next number at its first event. */
static rt_thread *
thread_state(void)
{
    if (!thread_alloc())
        return NULL;
    if (!t_state->has_tid && g_mode != MODE_OFF) {
        t_state->tid = g_next_tid++;
        t_state->has_tid = 1;
        rt_stepper_thread_numbered();
    }
    return t_state;
}

/* The thread runs code of the cyclic garbage collector (see "code the
 * garbage collector runs"). */
static int
in_collector(const rt_thread *t)
{
    return t->collecting && !t->program;
}

/* ---- exceptions -------------------------------------------------------- */

static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
#endif
}

/* Raise ReplayDivergence built by the Python factory. `expected` describes the
 * recorded event, `actual` the call replay made (NULL when replay asked for
 * the end of the run). After the first divergence every boundary call raises
 * that same exception again: nothing after it can be trusted. */
static PyObject *
diverge(const char *reason, PyObject *expected, PyObject *expected_tid, PyObject *actual,
        uint64_t actual_tid)
{
    if (!g_divergence_exc) {
        rt_thread *t = thread_state();
        if (t)
            t->disabled++;
        PyObject *at_end = g_pending && g_pending[0] == 'E' ? Py_True : Py_False;
        g_divergence_exc = PyObject_CallFunction(
            g_divergence, "sKOOOKO", reason, (unsigned long long)g_event_index,
            expected ? expected : Py_None, expected_tid ? expected_tid : Py_None,
            actual ? actual : Py_None, (unsigned long long)actual_tid, at_end);
        if (t)
            t->disabled--;
        if (!g_divergence_exc)
            return NULL;
        rt_demux_abort();
    }
    PyErr_SetObject((PyObject *)Py_TYPE(g_divergence_exc), g_divergence_exc);
    return NULL;
}

/* A split func's result must be (recorded, returned): else res is released
 * and -1 returned with SystemError set. */
static int
check_split(Boundary *self, PyObject *res)
{
    if (PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 2)
        return 0;
    Py_DECREF(res);
    PyErr_Format(PyExc_SystemError, "split boundary %U must return a 2-tuple", self->name);
    return -1;
}

/* self->func(*args). An exception raised through a split function written in
 * Python loses that function's frame from its traceback: the program's
 * traceback shows its own call, as without Retrace. */
static PyObject *
call_func(Boundary *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *res = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
    if (res || !self->split || !PyFunction_Check(self->func))
        return res;
    PyObject *exc = take_exception();
    PyObject *tb = exc ? PyException_GetTraceback(exc) : NULL;
    if (tb) {
        PyTracebackObject *own = (PyTracebackObject *)tb;
        PyCodeObject *code = PyFrame_GetCode(own->tb_frame);
        if ((PyObject *)code == PyFunction_GET_CODE(self->func))
            PyException_SetTraceback(exc, own->tb_next ? (PyObject *)own->tb_next : Py_None);
        Py_DECREF(code);
        Py_DECREF(tb);
    }
    restore_exception(exc);
    return NULL;
}

/* The call with the boundary off: the real thing (of a split function, the
 * part it returns to the caller). */
static PyObject *
call_through(Boundary *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *res = call_func(self, args, nargsf, kwnames);
    if (res && self->split) {
        if (check_split(self, res) < 0)
            return NULL;
        Py_SETREF(res, Py_NewRef(PyTuple_GET_ITEM(res, 1)));
    }
    return res;
}

/* fn(*args) as Retrace's own work: the boundary off for the thread. */
static PyObject *
call_internal(rt_thread *t, PyObject *fn, PyObject *const *args, size_t nargsf,
              PyObject *kwnames)
{
    t->disabled++;
    PyObject *res = PyObject_Vectorcall(fn, args, nargsf, kwnames);
    t->disabled--;
    return res;
}

/* ---- recording ----------------------------------------------------------- */

static int
append_scratch(rt_thread *t)
{
    /* An I/O error stops the recording inside the writer; the application
     * carries on, so the result is deliberately ignored here. A thread whose
     * external call outlived the recording (a daemon thread at exit) finds
     * the recording over: its event is dropped. Both only change under the
     * GIL, which this thread holds. */
    if (g_writer && g_mode == MODE_RECORD)
        rt_writer_append(g_writer, t->scratch.data, t->scratch.len);
    rt_buf_clear(&t->scratch);
    return 0;
}

static int
define_fid(Boundary *self, rt_thread *t)
{
    Py_ssize_t n;
    const char *name = PyUnicode_AsUTF8AndSize(self->name, &n);
    if (!name)
        return -1;
    self->fid = g_next_fid++;
    rt_buf_clear(&t->scratch);
    if (rt_buf_put_u8(&t->scratch, 'D') < 0 || rt_buf_put_varint(&t->scratch, self->fid) < 0 ||
        rt_buf_put_str(&t->scratch, name, (size_t)n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return append_scratch(t);
}

/* Encode the CALL record for `result` (or the raised exception when result
 * is NULL) and append it. The raised exception, if any, is left in place.
 * A call made by the collector's code takes an event number but not the
 * thread's place in the order (last_event). */
static int
record_outcome(Boundary *self, rt_thread *t, PyObject *result)
{
    PyObject *exc = result ? NULL : take_exception();
    PyObject *redacted = NULL;
    /* Payloads (str and bytes, alone or in a tuple or list) go through the
     * user's redaction patterns. The redactor guards itself: on a bug it
     * cuts the recording, and the record is then refused. */
    if (g_redact && result && (PyUnicode_CheckExact(result) || PyBytes_CheckExact(result)
                               || PyTuple_CheckExact(result) || PyList_CheckExact(result))) {
        redacted = PyObject_CallOneArg(g_redact, result);
        if (!redacted) {
            if (exc)
                restore_exception(exc);
            return -1;
        }
        result = redacted;
    }
    rt_buf *b = &t->scratch;
    rt_buf_clear(b);
    int rc = 0, is_new;
    int collector = in_collector(t);
    int outcome = (result ? OUTCOME_RETURN : OUTCOME_RAISE) | (self->receiver ? OUTCOME_RECEIVER : 0) |
                  (collector ? OUTCOME_COLLECTOR : 0);
    uint64_t receiver = 0;
    if (self->receiver && t->frame.receiver &&
        rt_handle_get(t->frame.receiver, &receiver, &is_new) < 0)
        rc = -1;
    else if (rt_buf_put_u8(b, 'C') < 0 || rt_buf_put_varint(b, t->tid) < 0 ||
        rt_buf_put_varint(b, self->fid) < 0 || rt_buf_put_u8(b, (uint8_t)outcome) < 0 ||
        (self->receiver && rt_buf_put_varint(b, receiver) < 0)) {
        PyErr_NoMemory();
        rc = -1;
    }
    else
        rc = rt_encode_refs(b, result ? result : exc, t->frame.refs.list ? &t->frame.refs : NULL);
    if (rc == 0) {
        append_scratch(t);
        if (collector)
            g_event_index++;
        else
            t->last_event = g_event_index++;
    }
    Py_XDECREF(redacted);
    if (exc)
        restore_exception(exc);
    return rc;
}

PyObject *
rt_boundary_redact(PyObject *v)
{
    return g_redact ? PyObject_CallOneArg(g_redact, v) : Py_NewRef(v);
}

/* The recording cannot continue (out of memory while encoding): cut it here
 * and let the application go on with the real result. */
static void
abandon_recording(void)
{
    PyErr_WriteUnraisable(NULL);
    PySys_WriteStderr("retrace: recording stopped: could not encode an event\n");
    if (g_writer)
        rt_writer_cut(g_writer, RT_CUT_INTERNAL);
}

/* ---- bugs in Retrace's recording functions ----------------------------------
 *
 * A recording function written in Python (the func of a Boundary given a
 * fallback) mixes Retrace's own code with the real call, which it makes
 * through world(fn, *args): world() keeps the real call's outcome in the
 * call's frame. An exception leaving func that world() saw the real call
 * raise is the call's outcome, recorded as usual; any other is a bug in
 * Retrace: the recording is cut there, the bug reported once, and the
 * program gets what it would have got without Retrace (recover). Once the
 * recording is cut, calls run the fallback instead of func. */

/* RETRACE_TEST_FAULT=NAME@before[:N] or NAME@after[:N] (tests only): at the
 * Nth world() call made for boundary NAME (after: the Nth that returned), a
 * bug in Retrace's code right before or after the real call. */
static char g_fault_spec[256];
static PyObject *g_fault_name;
static int g_fault_after;
static long g_fault_countdown;   /* 0: no fault armed */

static void
arm_test_fault(void)
{
    const char *spec = getenv("RETRACE_TEST_FAULT");
    const char *at = spec ? strchr(spec, '@') : NULL;
    g_fault_countdown = 0;
    if (!at || strlen(spec) >= sizeof g_fault_spec)
        return;
    snprintf(g_fault_spec, sizeof g_fault_spec, "%s", spec);
    g_fault_after = strncmp(at + 1, "after", 5) == 0;
    const char *nth = strchr(at, ':');
    g_fault_countdown = nth ? atol(nth + 1) : 1;
    Py_XSETREF(g_fault_name, PyUnicode_FromStringAndSize(spec, at - spec));
    if (!g_fault_name) {
        PyErr_Clear();
        g_fault_countdown = 0;
    }
}

static PyObject *
raise_test_fault(void)
{
    return PyErr_Format(PyExc_RuntimeError, "fault injected by RETRACE_TEST_FAULT=%s",
                        g_fault_spec);
}

/* world(fn, *args, **kwargs): fn(*args, **kwargs), the real call made by a
 * recording function. Its outcome goes to the thread's current call: a
 * recording function must not call another boundary whose func is a
 * recording function (none does). */
static PyObject *
world(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "world(fn, *args, **kwargs) needs fn");
        return NULL;
    }
    rt_thread *t = t_state;
    rt_frame *f = g_mode == MODE_RECORD && t && t->frame.call ? &t->frame : NULL;
    int armed = f && g_fault_countdown && PyUnicode_Compare(f->call->name, g_fault_name) == 0;
    if (armed && !g_fault_after && --g_fault_countdown == 0)
        return raise_test_fault();
    PyObject *res = PyObject_Vectorcall(args[0], args + 1, (size_t)(nargs - 1), kwnames);
    if (!f)
        return res;
    Py_CLEAR(f->world_result);
    Py_CLEAR(f->world_exc);
    if (res)
        f->world_result = Py_NewRef(res);
    else {
        PyObject *exc = take_exception();
        f->world_exc = Py_NewRef(exc);
        restore_exception(exc);
    }
    if (armed && g_fault_after && res && --g_fault_countdown == 0) {
        Py_DECREF(res);
        return raise_test_fault();
    }
    return res;
}

/* The error set was raised by the real call: world() saw it pass. */
static int
raised_by_world(rt_thread *t)
{
    if (!t->frame.world_exc)
        return 0;
    PyObject *exc = take_exception();
    int yes = exc == t->frame.world_exc;
    restore_exception(exc);
    return yes;
}

/* fallback(done, *args, **kwargs): the call without Retrace. done is () when
 * the real call was not made yet (the fallback makes it), else a 1-tuple of
 * what world() returned (the fallback must not make it again). */
static PyObject *
call_fallback(Boundary *self, PyObject *done, PyObject *const *args, size_t nargsf,
              PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **all = n < 8 ? small : PyMem_New(PyObject *, n + 1);
    if (!all)
        return PyErr_NoMemory();
    all[0] = done;
    memcpy(all + 1, args, (size_t)n * sizeof *args);
    PyObject *res = PyObject_Vectorcall(self->fallback, all, (size_t)nargs + 1, kwnames);
    if (all != small)
        PyMem_Free(all);
    return res;
}

/* A call the recording no longer takes (it was cut): without Retrace's code. */
static PyObject *
call_unrecorded(Boundary *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (!self->fallback)
        return call_through(self, args, nargsf, kwnames);
    PyObject *done = PyTuple_New(0);
    PyObject *res = done ? call_fallback(self, done, args, nargsf, kwnames) : NULL;
    Py_XDECREF(done);
    return res;
}

/* self->func raised an error that is not the real call's: a bug in Retrace.
 * Cut the recording, report it once (_settings.internal_error), and give the
 * program what the real call gives it: its exception if it raised, else the
 * fallback's result. */
static PyObject *
recover(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *bug = take_exception();
    PyObject *settings = PyImport_ImportModule("retrace._settings");
    PyObject *res = settings ? PyObject_CallMethod(settings, "internal_error", "(NO)",
                                                   PyUnicode_FromFormat("the recording of %U",
                                                                        self->name), bug)
                             : NULL;
    if (!res)
        abandon_recording();
    Py_XDECREF(res);
    Py_XDECREF(settings);
    Py_DECREF(bug);
    rt_frame *f = &t->frame;
    if (f->world_exc) {
        restore_exception(Py_NewRef(f->world_exc));
        return NULL;
    }
    PyObject *done = f->world_result ? PyTuple_Pack(1, f->world_result) : PyTuple_New(0);
    res = done ? call_fallback(self, done, args, nargsf, kwnames) : NULL;
    Py_XDECREF(done);
    return res;
}

/* An output boundary, func(fd, data) -> bytes written: records the CRC-32
 * and length of what was written, not the bytes. func must write without
 * releasing the GIL (write_all), so that the order of the events is the order
 * in which the threads' output reached the file. The collector's output is
 * recorded as (fd, bytes): replay writes it at its place. */
static PyObject *
record_output(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf)
{
    Py_buffer data;
    if (PyVectorcall_NARGS(nargsf) != 2 || PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%U takes (fd, data)", self->name);
        return NULL;
    }
    t->disabled++;
    PyObject *res = PyObject_Vectorcall(self->func, args, nargsf, NULL);
    Py_ssize_t n = res ? PyLong_AsSsize_t(res) : 0;
    PyObject *recorded = NULL;
    if (res && n >= 0 && n <= data.len)
        recorded = in_collector(t) ? Py_BuildValue("(Oy#)", args[0], (const char *)data.buf, n)
                                 : Py_BuildValue("(kn)", crc32(0, data.buf, (uInt)n), n);
    if ((res && recorded) || !res) {
        if (record_outcome(self, t, recorded) < 0)
            abandon_recording();
    }
    else
        PyErr_Clear();
    t->disabled--;
    Py_XDECREF(recorded);
    PyBuffer_Release(&data);
    return res;
}

/* A method's receiver (args[0]) if it is an external object, else NULL. */
static PyObject *
receiver_of(Boundary *self, PyObject *const *args, size_t nargsf)
{
    if (!self->receiver || PyVectorcall_NARGS(nargsf) < 1 || !rt_handle_is_external(args[0]))
        return NULL;
    return args[0];
}

static PyObject *record_call_framed(Boundary *self, rt_thread *t, PyObject *const *args,
                                    size_t nargsf, PyObject *kwnames);

static PyObject *
record_call(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
            PyObject *kwnames)
{
    if (!self->fid && define_fid(self, t) < 0) {
        abandon_recording();
        return call_through(self, args, nargsf, kwnames);
    }
    if (self->output)
        return record_output(self, t, args, nargsf);
    rt_frame outer = t->frame;
    t->frame = (rt_frame){self, args, PyVectorcall_NARGS(nargsf) + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0),
                          receiver_of(self, args, nargsf), {0}, NULL, NULL};
    PyObject *res = record_call_framed(self, t, args, nargsf, kwnames);
    rt_refs_free(&t->frame.refs);
    Py_CLEAR(t->frame.world_result);
    Py_CLEAR(t->frame.world_exc);
    t->frame = outer;
    return res;
}

static PyObject *
record_call_framed(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames)
{
    t->disabled++;
    if (self->ordered) {
        if (record_outcome(self, t, Py_None) < 0)
            abandon_recording();
        PyObject *res = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
        if (!res && self->fallback && !raised_by_world(t))
            res = recover(self, t, args, nargsf, kwnames);
        t->disabled--;
        return res;
    }
    PyObject *res = call_func(self, args, nargsf, kwnames);
    if (!res && self->fallback && !raised_by_world(t)) {
        res = recover(self, t, args, nargsf, kwnames);
        t->disabled--;
        return res;
    }
    PyObject *recorded = res && self->outcome_only ? Py_None : res, *statement = NULL;
    if (res && self->split) {
        if (check_split(self, res) < 0) {
            t->disabled--;
            return NULL;
        }
        recorded = PyTuple_GET_ITEM(res, 0);
    }
    if (res && self->statement) {
        statement = rt_statement_record(res, args, nargsf, kwnames, self->members, &t->scratch);
        if (!statement) {
            abandon_recording();
            t->disabled--;
            return res;
        }
        recorded = statement;
    }
    if (record_outcome(self, t, recorded) < 0) {
        /* record_outcome failed while a real exception may be pending too */
        if (res)
            abandon_recording();
        else {
            PyObject *exc = take_exception();
            abandon_recording();
            restore_exception(exc);
        }
    }
    t->disabled--;
    Py_XDECREF(statement);
    if (res && self->split)
        Py_SETREF(res, Py_NewRef(PyTuple_GET_ITEM(res, 1)));
    return res;
}

/* The arguments of an external call, and the items of those that are
 * tuples, lists or dicts, two levels deep (the parameters of a query, or of
 * each query of executemany), are the first refs. */
static int
add_refs(rt_refs *refs, PyObject *const *items, Py_ssize_t n, int depth)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = items[i], *inner = NULL;
        if (rt_refs_add(refs, a) < 0)
            return -1;
        if (depth == 0)
            continue;
        if (PyTuple_Check(a) || PyList_Check(a)) {
            inner = PySequence_Tuple(a);
        }
        else if (PyDict_Check(a)) {
            PyObject *values = PyDict_Values(a);
            inner = values ? PySequence_Tuple(values) : NULL;
            Py_XDECREF(values);
        }
        else {
            continue;
        }
        if (!inner)
            return -1;
        int rc = add_refs(refs, &PyTuple_GET_ITEM(inner, 0), PyTuple_GET_SIZE(inner), depth - 1);
        Py_DECREF(inner);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
seed_refs(rt_refs *refs, PyObject *const *args, Py_ssize_t n)
{
    if (rt_refs_add(refs, Py_None) < 0)   /* makes the list even with no arguments */
        return -1;
    return add_refs(refs, args, n, 2);
}

/* (args, kwargs or None) of a call, as a 'K' record holds them */
static PyObject *
pack_call(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    PyObject *pos = PyTuple_New(n);
    PyObject *kw = kwnames && PyTuple_GET_SIZE(kwnames) ? PyDict_New() : Py_NewRef(Py_None);
    for (Py_ssize_t i = 0; pos && i < n; i++)
        PyTuple_SET_ITEM(pos, i, Py_NewRef(args[i]));
    for (Py_ssize_t i = 0; kw && kw != Py_None && i < PyTuple_GET_SIZE(kwnames); i++) {
        if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0)
            Py_CLEAR(kw);
    }
    PyObject *res = pos && kw ? PyTuple_Pack(2, pos, kw) : NULL;
    Py_XDECREF(pos);
    Py_XDECREF(kw);
    return res;
}

PyObject *
rt_boundary_callback(uint64_t cbid, PyObject *func, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    rt_thread *t = t_state;
    if (g_mode != MODE_RECORD || !t || !t->frame.call || !t->disabled || !cbid || in_collector(t))
        return PyObject_Vectorcall(func, args, nargsf, kwnames);
    rt_frame *f = &t->frame;
    if (!f->refs.list && seed_refs(&f->refs, f->args, f->nargs) < 0)
        return NULL;
    PyObject *call = pack_call(args, nargsf, kwnames);
    if (!call)
        return NULL;
    rt_buf *b = &t->scratch;
    rt_buf_clear(b);
    int rc = rt_buf_put_u8(b, 'K') < 0 || rt_buf_put_varint(b, t->tid) < 0 ||
             rt_buf_put_varint(b, f->call->fid) < 0 || rt_buf_put_varint(b, cbid) < 0
             ? -1 : rt_encode_refs(b, call, &f->refs);
    Py_DECREF(call);
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        abandon_recording();
        return PyObject_Vectorcall(func, args, nargsf, kwnames);
    }
    append_scratch(t);
    g_event_index++;
    /* the program's function runs with the boundary on, as outside any call */
    rt_frame outer = *f;
    int disabled = t->disabled;
    t->frame = (rt_frame){0};
    t->disabled = 0;
    PyObject *res = PyObject_Vectorcall(func, args, nargsf, kwnames);
    t->frame = outer;
    t->disabled = disabled;
    if (rt_refs_add(&t->frame.refs, res ? res : Py_None) < 0) {
        Py_XDECREF(res);
        return NULL;
    }
    return res;
}

void
rt_boundary_suspend(int delta)
{
    rt_thread *t = thread_state();
    if (t)
        t->disabled += delta;
}

/* ---- replay -------------------------------------------------------------- */

static PyObject *
corrupt(const char *what)
{
    PyErr_Format(rt_TraceCorrupt, "record %llu is corrupt: %s",
                 (unsigned long long)g_event_index, what);
    return NULL;
}

static int
note_definition(rt_cursor *c)
{
    uint64_t fid;
    const uint8_t *name;
    size_t n;
    if (rt_cur_varint(c, &fid) < 0 || rt_cur_str(c, &name, &n) < 0 || fid == 0 ||
        fid > (1u << 24)) {
        corrupt("bad function definition");
        return -1;
    }
    if (fid >= g_nfids) {
        size_t cap = g_nfids ? g_nfids : 64;
        while (cap <= fid)
            cap *= 2;
        rt_fid *grown = realloc(g_fids, cap * sizeof *grown);
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        memset(grown + g_nfids, 0, (cap - g_nfids) * sizeof *grown);
        g_fids = grown;
        g_nfids = cap;
    }
    PyObject *key = PyUnicode_DecodeUTF8((const char *)name, (Py_ssize_t)n, "replace");
    if (!key)
        return -1;
    /* A name this replay does not intercept maps to NULL: calling it diverges. */
    Boundary *b = (Boundary *)PyDict_GetItemWithError(g_registry, key);
    if (!b && PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    Py_XSETREF(g_fids[fid].name, key);
    g_fids[fid].boundary = b;
    return 0;
}

static int
is_output_record(const uint8_t *rec, size_t len)
{
    rt_cursor c = {rec + 1, rec + len};
    uint64_t tid, fid;
    return rec[0] == 'C' && rt_cur_varint(&c, &tid) == 0 && rt_cur_varint(&c, &fid) == 0 &&
           fid < g_nfids && g_fids[fid].boundary && g_fids[fid].boundary->output;
}

static int pass_over_collector_record(const uint8_t *rec, size_t len);
static int g_reading;   /* fetch_pending is reading: the collector must not read ahead */

static int
read_pending(void)
{
    while (!g_pending) {
        const uint8_t *rec;
        size_t len;
        int st = rt_reader_next(g_reader, &rec, &len);
        if (st < 0) {
            PyErr_SetString(rt_TraceCorrupt, rt_reader_error(g_reader));
            return -1;
        }
        if (st == 0)
            return 0;
        if (len == 0) {
            corrupt("empty record");
            return -1;
        }
        if (rec[0] == 'D') {
            rt_cursor c = {rec + 1, rec + len};
            if (note_definition(&c) < 0)
                return -1;
            continue;
        }
        int passed = g_live_outputs && is_output_record(rec, len)
                     ? 1 : pass_over_collector_record(rec, len);
        if (passed < 0)
            return -1;
        if (passed) {
            g_event_index++;    /* counted, so indexes keep the recording's numbering */
            continue;
        }
        g_pending = rec;
        g_pending_len = len;
    }
    return 1;
}

/* Make the next non-definition record pending. 1: pending, 0: end of the
 * recording, -1: error set. */
static int
fetch_pending(void)
{
    if (!g_reader) {
        PyErr_SetString(PyExc_RuntimeError, "the replay is over");
        return -1;
    }
    g_reading++;
    int st = read_pending();
    g_reading--;
    return st;
}

/* What the pending record expects, for messages: ("time.time", tid) or a
 * description of a non-call record. Returns new refs in *name, *tid. */
static void
describe_pending(PyObject **name, PyObject **tid)
{
    *name = NULL;
    *tid = NULL;
    if (!g_pending) {
        int64_t cut = g_reader ? rt_reader_truncated(g_reader) : -1;
        *name = cut >= 0
            ? PyUnicode_FromFormat("<end of recording: the trace was cut short at offset %lld>",
                                   (long long)cut)
            : PyUnicode_FromString("<end of recording>");
        return;
    }
    if (g_pending[0] == 'E') {
        *name = PyUnicode_FromString("<end of the recorded run>");
        return;
    }
    if (g_pending[0] == RT_REC_CUT) {
        char why[256];
        rt_describe_cut(g_pending, g_pending_len, why, sizeof why);
        *name = PyUnicode_FromFormat("<end of recording: it was cut here: %s>", why);
        return;
    }
    rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
    uint64_t t, fid, cbid;
    if ((g_pending[0] != 'C' && g_pending[0] != 'K') || rt_cur_varint(&c, &t) < 0 ||
        rt_cur_varint(&c, &fid) < 0 || (g_pending[0] == 'K' && rt_cur_varint(&c, &cbid) < 0)) {
        *name = PyUnicode_FromString("<corrupt record>");
        return;
    }
    *tid = PyLong_FromUnsignedLongLong(t);
    if (g_pending[0] == 'K')
        *name = fid < g_nfids && g_fids[fid].name
            ? PyUnicode_FromFormat("callback #%llu called by %U", (unsigned long long)cbid,
                                   g_fids[fid].name)
            : PyUnicode_FromFormat("callback #%llu", (unsigned long long)cbid);
    else if (fid < g_nfids && g_fids[fid].name)
        *name = g_fids[fid].boundary
            ? Py_NewRef(g_fids[fid].name)
            : PyUnicode_FromFormat("%U (not intercepted by this replay)", g_fids[fid].name);
    else
        *name = PyUnicode_FromFormat("<undefined function #%llu>", (unsigned long long)fid);
}

static PyObject *
diverge_at_pending(const char *reason, PyObject *actual, uint64_t actual_tid)
{
    PyObject *name, *tid;
    describe_pending(&name, &tid);
    diverge(reason, name, tid, actual, actual_tid);
    Py_XDECREF(name);
    Py_XDECREF(tid);
    return NULL;
}

/* The thread that owns the pending record: a call's thread; the end of the
 * run belongs to thread 0, which ends it. -1 for a corrupt record. */
static int
pending_owner(uint64_t *owner)
{
    *owner = 0;
    if (g_pending[0] != 'C' && g_pending[0] != 'K')
        return 0;
    rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
    if (rt_cur_varint(&c, owner) < 0) {
        corrupt("bad call record");
        return -1;
    }
    return 0;
}

/* Wait until thread t holds the baton and owns the pending record.
 * 1: go on; 0: the recording has ended; -1: error or divergence set. */
static int
take_turn(rt_thread *t, PyObject *actual)
{
    char why[256];
    for (;;) {
        int st = fetch_pending();
        if (st <= 0)
            return st;
        uint64_t owner;
        if (pending_owner(&owner) < 0)
            return -1;
        int turn = rt_demux_turn(t->tid, owner, why, sizeof why);
        if (turn < 0) {
            diverge_at_pending(why, actual, t->tid);
            return -1;
        }
        if (turn == 1)
            return 1;
        if (g_divergence_exc) {
            diverge(NULL, NULL, NULL, NULL, 0);
            return -1;
        }
    }
}

/* Replay of an output boundary: the program must write what it wrote. */
static PyObject *
replay_output(Boundary *self, rt_thread *t, PyObject *const *args, PyObject *recorded)
{
    unsigned long crc;
    Py_ssize_t n;
    Py_buffer data;
    if (!PyArg_ParseTuple(recorded, "kn", &crc, &n) || n < 0)
        return corrupt("bad output record");
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *res = NULL;
    if (n > data.len || crc32(0, data.buf, (uInt)n) != crc) {
        char what[64];
        snprintf(what, sizeof what, "%zd bytes with CRC-32 %08lx", n, crc);
        PyObject *expected = PyUnicode_FromString(what);
        PyObject *shown = PyBytes_FromStringAndSize(data.buf, data.len < 200 ? data.len : 200);
        PyObject *actual = shown ? PyObject_Repr(shown) : NULL;
        if (expected && actual)
            diverge("the program writes other output than the recorded run here", expected,
                    NULL, actual, t->tid);
        Py_XDECREF(expected);
        Py_XDECREF(shown);
        Py_XDECREF(actual);
    }
    else {
        PyObject *part = PyBytes_FromStringAndSize(data.buf, n);
        if (part) {
            PyObject *call[2] = {args[0], part};
            t->disabled++;
            res = PyObject_Vectorcall(self->func, call, 2, NULL);
            t->disabled--;
            Py_DECREF(part);
        }
    }
    PyBuffer_Release(&data);
    return res;
}

/* Signal handlers that ran at this point of the recording, before the call
 * or inside it, run now: g_signal_deliver replays the signal event and runs
 * the program's handler, whose own calls follow in the trace. A handler that
 * raised inside the recorded call ended that call with its exception: it is
 * returned in *raised, for replay_recorded to raise in place of the recorded
 * one. 0: go on with the call; -1: error set. */
static int
replay_signals(rt_thread *t, PyObject *actual, PyObject **raised)
{
    for (;;) {
        int st = take_turn(t, actual);
        if (st < 0)
            return -1;
        if (st == 0 || g_pending[0] != 'C')
            return 0;   /* replay_recorded reports it */
        rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
        uint64_t tid, fid;
        if (rt_cur_varint(&c, &tid) < 0 || rt_cur_varint(&c, &fid) < 0)
            return 0;
        if (tid != t->tid || fid >= g_nfids ||
            (PyObject *)g_fids[fid].boundary != g_signal_event)
            return 0;
        PyObject *res = PyObject_CallNoArgs(g_signal_deliver);
        if (!res)
            return -1;
        if (res == Py_None)
            Py_DECREF(res);
        else
            Py_XSETREF(*raised, res);
    }
}

static PyObject *replay_recorded(Boundary *self, rt_thread *t, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames, PyObject *raised);
static PyObject *deliver_outcome(Boundary *self, rt_thread *t, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames, PyObject *value,
                                 uint8_t raised);

/* The pending 'K' record: a callback the external call `self` made. Call it
 * as the recording did; what it returns joins the call's refs. */
static int
replay_callback(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
                PyObject *kwnames, rt_refs *refs)
{
    rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
    uint64_t tid, fid, cbid;
    if (rt_cur_varint(&c, &tid) < 0 || rt_cur_varint(&c, &fid) < 0 ||
        rt_cur_varint(&c, &cbid) < 0) {
        corrupt("bad callback record");
        return -1;
    }
    if (fid >= g_nfids || g_fids[fid].boundary != self) {
        diverge_at_pending("a callback of another call was recorded here", self->name, t->tid);
        return -1;
    }
    PyObject *func = rt_callback_func(cbid);
    if (!func) {
        diverge_at_pending("the recording calls back a function this replay did not give "
                           "the driver", self->name, t->tid);
        return -1;
    }
    Py_ssize_t n = PyVectorcall_NARGS(nargsf) + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (!refs->list && seed_refs(refs, args, n) < 0)
        return -1;
    PyObject *call = rt_decode_refs(&c, refs->list);
    if (!call)
        return -1;
    if (!PyTuple_CheckExact(call) || PyTuple_GET_SIZE(call) != 2 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(call, 0)) ||
        (PyTuple_GET_ITEM(call, 1) != Py_None && !PyDict_CheckExact(PyTuple_GET_ITEM(call, 1)))) {
        Py_DECREF(call);
        corrupt("bad callback arguments");
        return -1;
    }
    g_pending = NULL;
    g_event_index++;
    rt_demux_progress();
    Py_INCREF(func);
    PyObject *kw = PyTuple_GET_ITEM(call, 1);
    PyObject *res = PyObject_Call(func, PyTuple_GET_ITEM(call, 0), kw == Py_None ? NULL : kw);
    Py_DECREF(func);
    Py_DECREF(call);
    if (!res) {
        if (g_divergence_exc)
            return -1;
        /* the driver dealt with it in the recording; its outcome is recorded */
        PyErr_Clear();
    }
    int rc = rt_refs_add(refs, res ? res : Py_None);
    Py_XDECREF(res);
    return rc;
}

/* The pending record must be the 'C' record of this call (on the same
 * receiver): its decoded value, and in *raised whether it was raised. NULL
 * with an error or divergence. */
static PyObject *
replay_outcome(Boundary *self, rt_thread *t, uint64_t receiver, rt_refs *refs, uint8_t *raised)
{
    rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
    uint64_t tid, fid, recorded_receiver = 0;
    uint8_t outcome;
    if (g_pending[0] == RT_REC_CUT)
        return diverge_at_pending("the recording ends before this call", self->name, t->tid);
    if (g_pending[0] != 'C')
        return diverge_at_pending("the recorded run made no further call here", self->name,
                                  t->tid);
    if (rt_cur_varint(&c, &tid) < 0 || rt_cur_varint(&c, &fid) < 0 ||
        rt_cur_u8(&c, &outcome) < 0 || outcome > (OUTCOME_RAISE | OUTCOME_RECEIVER) ||
        ((outcome & OUTCOME_RECEIVER) && rt_cur_varint(&c, &recorded_receiver) < 0))
        return corrupt("bad call record");
    if (fid >= g_nfids || g_fids[fid].boundary != self || tid != t->tid)
        return diverge_at_pending("a different call was recorded here", self->name, t->tid);
    if (recorded_receiver != receiver) {
        char what[160];
        snprintf(what, sizeof what,
                 "the call is made on another object than in the recording "
                 "(external object #%llu, recorded #%llu)",
                 (unsigned long long)receiver, (unsigned long long)recorded_receiver);
        return diverge_at_pending(what, self->name, t->tid);
    }
    PyObject *value = rt_decode_refs(&c, refs->list);
    *raised = outcome & OUTCOME_RAISE;
    return value;
}

static PyObject *
replay_call(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
            PyObject *kwnames)
{
    if (g_divergence_exc)
        return diverge(NULL, NULL, NULL, NULL, 0);
    if (self->output && g_live_outputs)
        return call_through(self, args, nargsf, kwnames);
    PyObject *handler_exc = NULL;
    if (g_signal_event && (PyObject *)self != g_signal_event &&
        replay_signals(t, self->name, &handler_exc) < 0) {
        Py_XDECREF(handler_exc);
        return NULL;
    }
    PyObject *res = replay_recorded(self, t, args, nargsf, kwnames, handler_exc);
    Py_XDECREF(handler_exc);
    return res;
}

/* Replay of the call itself, after the signal handlers that ran before it;
 * handler_exc: what a handler raised inside the recorded call, or NULL. */
static PyObject *
replay_recorded(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
                PyObject *kwnames, PyObject *handler_exc)
{
    rt_refs refs = {0};
    int st = take_turn(t, self->name);
    while (st == 1 && g_pending[0] == 'K') {
        if (replay_callback(self, t, args, nargsf, kwnames, &refs) < 0)
            st = -1;
        else
            st = take_turn(t, self->name);
    }
    /* a receiver seen for the first time gets its handle here, where the
     * recording gave it (record_outcome) */
    PyObject *receiver = receiver_of(self, args, nargsf);
    uint64_t handle = 0;
    int is_new;
    if (st == 1 && receiver && rt_handle_get(receiver, &handle, &is_new) < 0)
        st = -1;
    uint8_t outcome = 0;
    PyObject *value = st == 1 ? replay_outcome(self, t, handle, &refs, &outcome) : NULL;
    rt_refs_free(&refs);
    if (st == 0)
        return diverge_at_pending("the recording ends before this call", self->name, t->tid);
    if (!value)
        return NULL;
    if (handler_exc && outcome != OUTCOME_RAISE) {
        Py_DECREF(value);
        return diverge_at_pending("a signal handler raised inside this call, but the recorded "
                                  "call returned", self->name, t->tid);
    }
    g_pending = NULL;
    t->last_event = g_event_index++;
    rt_demux_progress();
    if (self->ordered) {
        Py_DECREF(value);
        t->disabled++;
        PyObject *res = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
        t->disabled--;
        return res;
    }
    if (self->output && outcome == OUTCOME_RETURN) {
        PyObject *res = replay_output(self, t, args, value);
        Py_DECREF(value);
        return res;
    }
    if (handler_exc) {
        Py_DECREF(value);
        PyErr_SetObject((PyObject *)Py_TYPE(handler_exc), handler_exc);
        return NULL;
    }
    return deliver_outcome(self, t, args, nargsf, kwnames, value, outcome);
}

/* A recorded outcome (value, stolen) becomes the call's: raised, made into
 * the result by the replay function, or returned. */
static PyObject *
deliver_outcome(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
                PyObject *kwnames, PyObject *value, uint8_t raised)
{
    if (raised) {
        if (!PyExceptionInstance_Check(value)) {
            Py_DECREF(value);
            return corrupt("raised value is not an exception");
        }
        PyErr_SetObject((PyObject *)Py_TYPE(value), value);
        Py_DECREF(value);
        return NULL;
    }
    if (self->statement) {
        PyObject *recorded = value;
        int rc = rt_statement_replay(self->name, recorded, args, nargsf, kwnames, self->members,
                                     &t->scratch, &value);
        Py_DECREF(recorded);
        if (rc < 0)
            return NULL;
    }
    PyObject *res;
    if (self->replay) {
        /* replay(recorded, *args, **kwargs): internal work, so the boundary is off */
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
        PyObject **full = PyMem_Malloc((size_t)(total + 1) * sizeof *full);
        if (!full) {
            Py_DECREF(value);
            return PyErr_NoMemory();
        }
        full[0] = value;
        for (Py_ssize_t i = 0; i < total; i++)
            full[i + 1] = args[i];
        t->disabled++;
        res = PyObject_Vectorcall(self->replay, full, (size_t)nargs + 1, kwnames);
        t->disabled--;
        PyMem_Free(full);
        Py_DECREF(value);
        return res;
    }
    return value;
}

/* ---- code the garbage collector runs ----------------------------------------
 *
 * The cyclic garbage collector starts when allocations cross a threshold, in
 * whichever thread allocates, and runs finalizers (__del__, weakref
 * callbacks, weakref.finalize) that may cross the boundary: a pool that
 * drains its queue (locks), a socket or a file closed, a clock read, a
 * warning printed. Replay allocates otherwise (Retrace's own objects; one
 * thread at a time), so its collections come at other moments or in other
 * threads, and which objects are garbage at a given point depends on
 * generations that differ too. So the collector's calls take no place in
 * the order of the program's events.
 *
 * gc.callbacks tells a thread when it runs a collection (_gc_start, kept
 * first, and _gc_stop, kept last). In between, the thread runs in a context
 * of its own: the boundary on even if the collection began inside Retrace's
 * work or an external call (so that in replay a finalizer never reaches the
 * world by passing through), no call in progress, and a scratch buffer of
 * its own (the collection may have begun while a record was half encoded).
 * sys.unraisablehook runs in that context too (as_collector): what it
 * prints holds addresses, which differ in replay.
 *
 * Recording: the collector's calls are 'C' records flagged OUTCOME_COLLECTOR.
 * They take event numbers, not the thread's place in the order. Output is
 * recorded as (fd, bytes). Not recorded: ordered calls and those with a
 * `collector` function (locks, which replay runs for real), and methods of
 * driver objects (their handles must keep following the program's order).
 *
 * Replay passes over those records (counting them): an output is written at
 * its place, any other record waits in a small stash. The collector's calls
 * in replay consume no event and reach nothing outside the process:
 *   - a boundary's `collector` function runs (a lock is taken only if it is
 *     free: a thread that holds it waits for the baton, so waiting would
 *     never end);
 *   - an ordered call (a lock release) runs for real;
 *   - output is dropped: the recorded output is written instead;
 *   - any other call takes the outcome of the oldest stashed record of the
 *     same thread and function, reading ahead up to the program's next
 *     event (so a gc.collect() at the same place in both runs replays
 *     exactly), or else raises FinalizerRefused, an OSError, which cleanup
 *     code usually tolerates; an escaping one is reported by the hook, whose
 *     output replay drops.
 */

#define STASH_MAX 64

static PyObject *g_refused;        /* retrace.errors.FinalizerRefused */
static PyObject *g_gc_callbacks;   /* gc.callbacks */
static PyObject *g_gc_stop;        /* our "stop" callback, kept last in it */

/* Replay: records of the collector's calls passed over, oldest first */
typedef struct {
    uint64_t tid, fid;
    uint8_t *rec;     /* a copy */
    size_t len;
} rt_stashed;
static rt_stashed g_stash[STASH_MAX];
static size_t g_nstash;

static void
swap_scratch(rt_thread *t)
{
    rt_buf b = t->scratch;
    t->scratch = t->other_scratch;
    t->other_scratch = b;
}

static void
collector_enter(rt_thread *t)
{
    if (t->collecting++)
        return;
    t->outside_disabled = t->disabled;
    t->outside_frame = t->frame;
    t->disabled = 0;
    t->frame = (rt_frame){0};
    swap_scratch(t);
}

static void
collector_leave(rt_thread *t)
{
    if (!t->collecting || --t->collecting)
        return;
    swap_scratch(t);
    t->frame = t->outside_frame;
    t->disabled = t->outside_disabled;
}

static rt_stashed
stash_take(size_t i)
{
    rt_stashed s = g_stash[i];
    memmove(&g_stash[i], &g_stash[i + 1], (g_nstash - i - 1) * sizeof *g_stash);
    g_nstash--;
    return s;
}

static void
stash_clear(void)
{
    while (g_nstash)
        free(stash_take(0).rec);
}

/* The recorded output of the collector's code, written at its place. */
static int
write_collector_output(Boundary *b, rt_cursor *c)
{
    PyObject *v = rt_decode(c);
    if (!v)
        return -1;
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(v, 1))) {
        Py_DECREF(v);
        corrupt("bad output record");
        return -1;
    }
    rt_thread *t = thread_alloc();
    if (!t) {
        Py_DECREF(v);
        PyErr_NoMemory();
        return -1;
    }
    PyObject *res = call_internal(t, b->func, &PyTuple_GET_ITEM(v, 0), 2, NULL);
    Py_DECREF(v);
    Py_XDECREF(res);
    return res ? 1 : -1;
}

/* Replay: rec is read. 1: a record of the collector's code, passed over;
 * 0: another record; -1: error set. */
static int
pass_over_collector_record(const uint8_t *rec, size_t len)
{
    rt_cursor c = {rec + 1, rec + len};
    uint64_t tid, fid;
    uint8_t outcome;
    if (rec[0] != 'C' || rt_cur_varint(&c, &tid) < 0 || rt_cur_varint(&c, &fid) < 0 ||
        rt_cur_u8(&c, &outcome) < 0 || !(outcome & OUTCOME_COLLECTOR))
        return 0;   /* a malformed record is reported when its turn comes */
    Boundary *b = fid < g_nfids ? g_fids[fid].boundary : NULL;
    if (b && b->output)
        return (outcome & OUTCOME_RAISE) || g_live_outputs ? 1 : write_collector_output(b, &c);
    if (g_nstash == STASH_MAX)
        free(stash_take(0).rec);
    uint8_t *copy = malloc(len);
    if (!copy) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, rec, len);
    g_stash[g_nstash++] = (rt_stashed){tid, fid, copy, len};
    return 1;
}

/* The outcome of the oldest stashed record of thread t calling self (new
 * reference, *raised set), reading ahead to the program's next event first.
 * NULL without an error: there is none. */
static PyObject *
take_stashed(Boundary *self, rt_thread *t, uint8_t *raised)
{
    if (!g_pending && !g_reading && g_reader && fetch_pending() < 0)
        PyErr_Clear();   /* the program's next call meets it again */
    for (size_t i = 0; i < g_nstash; i++) {
        if (g_stash[i].tid != t->tid || g_stash[i].fid >= g_nfids ||
            g_fids[g_stash[i].fid].boundary != self)
            continue;
        /* out of the stash before decoding: decoding may run the collector */
        rt_stashed s = stash_take(i);
        rt_cursor c = {s.rec + 1, s.rec + s.len};
        uint64_t skip;
        uint8_t outcome;
        PyObject *value = NULL;
        if (rt_cur_varint(&c, &skip) < 0 || rt_cur_varint(&c, &skip) < 0 ||
            rt_cur_u8(&c, &outcome) < 0 ||
            ((outcome & OUTCOME_RECEIVER) && rt_cur_varint(&c, &skip) < 0))
            corrupt("bad call record");
        else
            value = rt_decode(&c);
        free(s.rec);
        *raised = outcome & OUTCOME_RAISE;
        return value;
    }
    return NULL;
}

static PyObject *
refused(PyObject *name, const char *why)
{
    PyErr_Format(g_refused ? g_refused : PyExc_OSError,
                 "retrace: in replay, code the garbage collector runs (a finalizer) "
                 "cannot call %U: %s", name, why);
    return NULL;
}

/* A call made by code the collector runs, with the boundary on. */
static PyObject *
collector_call(Boundary *self, rt_thread *t, PyObject *const *args, size_t nargsf,
               PyObject *kwnames)
{
    if (g_mode == MODE_RECORD) {
        if (!self->collector && !self->ordered && !self->receiver && t->has_tid &&
            !(g_writer && rt_writer_stopped(g_writer)))
            return record_call(self, t, args, nargsf, kwnames);
        t->disabled++;
        PyObject *res = g_writer && rt_writer_stopped(g_writer)
                            ? call_unrecorded(self, args, nargsf, kwnames)
                            : call_through(self, args, nargsf, kwnames);
        t->disabled--;
        return res;
    }
    if (g_divergence_exc)
        return diverge(NULL, NULL, NULL, NULL, 0);
    if (self->collector)
        return call_internal(t, self->collector, args, nargsf, kwnames);
    if (self->ordered || (self->output && g_live_outputs)) {
        t->disabled++;
        PyObject *res = call_through(self, args, nargsf, kwnames);
        t->disabled--;
        return res;
    }
    if (self->output) {
        Py_ssize_t n = PyVectorcall_NARGS(nargsf) == 2 ? PyObject_Length(args[1]) : -1;
        if (n < 0 && !PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%U takes (fd, data)", self->name);
        return n < 0 ? NULL : PyLong_FromSsize_t(n);
    }
    uint8_t raised = 0;
    PyObject *value = self->receiver || !t->has_tid ? NULL : take_stashed(self, t, &raised);
    if (value)
        return deliver_outcome(self, t, args, nargsf, kwnames, value, raised);
    if (PyErr_Occurred())
        return NULL;
    return refused(self->name, "the recording has no such call by this thread's finalizers here");
}

/* ---- the Boundary type ----------------------------------------------------- */

/* After the end of the run was recorded, the recording is complete: another
 * thread (a daemon still running while the interpreter exits) must not go on
 * to do what replay, which stops at the end record, would not. It waits here,
 * without the GIL, until the process exits. */
static void
park_forever(void)
{
    Py_BEGIN_ALLOW_THREADS
    for (;;)
        pause();
    Py_END_ALLOW_THREADS
}

/* Run the signal handlers deferred by _signals.py (see g_signals_deferred),
 * oldest first. 0, or -1 with the exception a handler raised. */
static int
run_deferred_signals(void)
{
    while (g_signals_deferred) {
        g_signals_deferred = 0;   /* set again while more wait */
        PyObject *res = PyObject_CallNoArgs(g_signal_deliver);
        if (!res)
            return -1;
        Py_DECREF(res);
    }
    return 0;
}

/* How long a deferred handler may wait for an external call: a loop that
 * makes none still gets its KeyboardInterrupt, between two bytecodes. */
#define SIGNAL_DEFER_NS 50000000L

/* A pending call (main thread, between bytecodes) that re-queues itself
 * until the handlers ran at an external call or waited SIGNAL_DEFER_NS;
 * then it raises a deferred signal again, so that the handlers run where
 * CPython runs handlers: it calls the wrapper, which runs them (take_overdue). */
static int
deferred_signals_deadline(void *Py_UNUSED(arg))
{
    if (!g_signals_deferred || g_overdue_signum)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long waited = (now.tv_sec - g_deferred_since.tv_sec) * 1000000000L +
                  (now.tv_nsec - g_deferred_since.tv_nsec);
    if (waited < SIGNAL_DEFER_NS) {
        Py_AddPendingCall(deferred_signals_deadline, NULL);
        return 0;
    }
    g_overdue_signum = g_deferred_signum;
    PyErr_SetInterruptEx(g_overdue_signum);
    return 0;
}

static PyObject *
boundary_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Boundary *self = (Boundary *)op;
    if (g_refuse && !(t_state && t_state->disabled))
        return PyErr_Format(PyExc_RuntimeError,
                            "%U is an external call: the debugger does not let an evaluation "
                            "reach the outside world or the recording", self->name);
    if (g_mode == MODE_OFF) {
        if (g_ender && t_state != g_ender && !(t_state && t_state->disabled))
            park_forever();
        return call_through(self, args, nargsf, kwnames);
    }
    if (t_state && in_collector(t_state) && !t_state->disabled)
        return collector_call(self, t_state, args, nargsf, kwnames);
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    if (t->disabled)
        return call_through(self, args, nargsf, kwnames);
    if (g_mode == MODE_RECORD) {
        if (g_signals_deferred && (PyObject *)self != g_signal_event &&
            PyThread_get_thread_ident() == g_deferred_thread && run_deferred_signals() < 0)
            return NULL;
        /* A cut recording takes no more events: calls go straight through. */
        if (g_writer && rt_writer_stopped(g_writer))
            return call_unrecorded(self, args, nargsf, kwnames);
        return record_call(self, t, args, nargsf, kwnames);
    }
    return replay_call(self, t, args, nargsf, kwnames);
}

static PyTypeObject BoundaryType;
static PyTypeObject BoundaryMethodType;

static PyObject *
boundary_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "func", "replay", "split", "ordered", "output",
                             "outcome_only", "receiver", "statement", "members", "collector",
                             "fallback", NULL};
    PyObject *name, *func, *replay = Py_None, *members = Py_None, *collector = Py_None;
    PyObject *fallback = Py_None;
    int split = 0, ordered = 0, output = 0, outcome_only = 0, receiver = 0, statement = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UO|$OppppppOOO:Boundary", kwlist, &name,
                                     &func, &replay, &split, &ordered, &output, &outcome_only,
                                     &receiver, &statement, &members, &collector, &fallback))
        return NULL;
    if (statement && (!receiver || split || outcome_only)) {
        PyErr_SetString(PyExc_TypeError, "a statement boundary is a receiver one, "
                        "neither split nor outcome_only");
        return NULL;
    }
    if (members != Py_None && (!statement || !rt_statement_members_check(members))) {
        PyErr_SetString(PyExc_TypeError, "members: a tuple of object member descriptors, "
                        "of a statement boundary");
        return NULL;
    }
    if (receiver && (ordered || output)) {
        PyErr_SetString(PyExc_TypeError, "a receiver boundary is neither ordered nor output");
        return NULL;
    }
    if (!PyCallable_Check(func) || (replay != Py_None && !PyCallable_Check(replay)) ||
        (collector != Py_None && !PyCallable_Check(collector)) ||
        (fallback != Py_None && !PyCallable_Check(fallback))) {
        PyErr_SetString(PyExc_TypeError, "func, replay, collector and fallback must be callable");
        return NULL;
    }
    if (fallback != Py_None && (output || statement)) {
        PyErr_SetString(PyExc_TypeError, "an output or statement boundary takes no fallback");
        return NULL;
    }
    if (split && replay == Py_None) {
        PyErr_SetString(PyExc_TypeError, "a split boundary needs a replay function");
        return NULL;
    }
    if (outcome_only && replay == Py_None) {
        PyErr_SetString(PyExc_TypeError, "an outcome_only boundary needs a replay function");
        return NULL;
    }
    if (ordered && (split || replay != Py_None)) {
        PyErr_SetString(PyExc_TypeError, "an ordered boundary takes neither split nor replay");
        return NULL;
    }
    Boundary *self = (Boundary *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->name = Py_NewRef(name);
    self->func = Py_NewRef(func);
    self->replay = replay == Py_None ? NULL : Py_NewRef(replay);
    self->split = split;
    self->ordered = ordered;
    self->output = output;
    self->outcome_only = outcome_only;
    self->receiver = receiver;
    self->statement = statement;
    self->members = members == Py_None ? NULL : Py_NewRef(members);
    self->collector = collector == Py_None ? NULL : Py_NewRef(collector);
    self->fallback = fallback == Py_None ? NULL : Py_NewRef(fallback);
    self->vectorcall = boundary_vectorcall;
    if (PyDict_SetItem(g_registry, name, (PyObject *)self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
boundary_traverse(PyObject *op, visitproc visit, void *arg)
{
    Boundary *self = (Boundary *)op;
    Py_VISIT(self->name);
    Py_VISIT(self->func);
    Py_VISIT(self->replay);
    Py_VISIT(self->members);
    Py_VISIT(self->collector);
    Py_VISIT(self->fallback);
    return 0;
}

static void
boundary_dealloc(PyObject *op)
{
    Boundary *self = (Boundary *)op;
    PyObject_GC_UnTrack(op);
    Py_CLEAR(self->name);
    Py_CLEAR(self->func);
    Py_CLEAR(self->replay);
    Py_CLEAR(self->members);
    Py_CLEAR(self->collector);
    Py_CLEAR(self->fallback);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
boundary_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<retrace boundary %U>", ((Boundary *)op)->name);
}

/* Methods of C types bind like functions: obj.meth(...) calls meth(obj, ...). */
static PyObject *
boundary_method_get(PyObject *op, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(op);
    return PyMethod_New(op, obj);
}

static PyObject *
boundary_get_name(PyObject *op, void *Py_UNUSED(c))
{
    return Py_NewRef(((Boundary *)op)->name);
}

static PyObject *
boundary_get_func(PyObject *op, void *Py_UNUSED(c))
{
    return Py_NewRef(((Boundary *)op)->func);
}

static PyGetSetDef boundary_getset[] = {
    {"name", boundary_get_name, NULL, "the identity written to the trace", NULL},
    {"__wrapped__", boundary_get_func, NULL, "the real callable", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define BOUNDARY_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL)
#define BOUNDARY_TYPE_FIELDS                                                       \
    .tp_basicsize = sizeof(Boundary),                                              \
    .tp_new = boundary_new, .tp_dealloc = boundary_dealloc,                          \
    .tp_traverse = boundary_traverse, .tp_repr = boundary_repr,                      \
    .tp_call = PyVectorcall_Call, .tp_vectorcall_offset = offsetof(Boundary, vectorcall), \
    .tp_getset = boundary_getset

static PyTypeObject BoundaryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "retrace._engine.Boundary",
    .tp_doc = "Boundary(name, func, *, replay=None, split=False, ordered=False,\n"
              "output=False, outcome_only=False, receiver=False, collector=None,\n"
              "fallback=None): an external callable.\n\n"
              "Recording calls func and records its result. With split, func returns\n"
              "(recorded, returned). Replay returns replay(recorded, *args) if given,\n"
              "else the recorded value. With ordered, only the call's place among\n"
              "the events is recorded, before it runs; replay runs it in that place.\n"
              "output marks func(fd, data) that writes output: its CRC-32 is checked.\n"
              "outcome_only records whether the call returned or raised, not its value\n"
              "(replay makes the value). receiver marks a method of an external object:\n"
              "replay checks it is called on the object the recording called it on.\n"
              "statement (with receiver) marks a method running the statement given as\n"
              "its first argument with the parameters given second: the record holds\n"
              "(result, statement, CRC-32 of the parameters, the values of `members`,\n"
              "member descriptors of the result); replay checks the statement and the\n"
              "parameters, stores the members and passes on the result.\n"
              "collector: what replay runs, for real, when code the garbage collector\n"
              "runs makes the call (the call is then not recorded either).\n"
              "fallback marks func as Retrace's code making the real call through\n"
              "world(): an exception from func that the real call did not raise is a\n"
              "bug, which cuts the recording; the program then gets\n"
              "fallback(done, *args): done is () if the real call was not made yet,\n"
              "else (what it returned,). A cut recording calls fallback((), *args).",
    .tp_flags = BOUNDARY_FLAGS,
    BOUNDARY_TYPE_FIELDS,
};

static PyTypeObject BoundaryMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "retrace._engine.BoundaryMethod",
    .tp_doc = "A Boundary that binds like a method when stored in a class",
    .tp_flags = BOUNDARY_FLAGS | Py_TPFLAGS_METHOD_DESCRIPTOR,
    BOUNDARY_TYPE_FIELDS,
    .tp_descr_get = boundary_method_get,
};

/* ---- module functions ------------------------------------------------------ */

static PyObject *
busy_error(void)
{
    PyErr_SetString(PyExc_RuntimeError, "a recording or replay is already active");
    return NULL;
}

static void
reset_state(void)
{
    Py_CLEAR(g_divergence_exc);
    g_live_outputs = 0;
    g_ender = NULL;
    g_event_index = 0;
    g_next_fid = 1;
    g_next_tid = 0;
    g_pending = NULL;
    stash_clear();
    rt_handles_reset();
    for (size_t i = 0; i < g_nfids; i++) {
        Py_CLEAR(g_fids[i].name);
        g_fids[i].boundary = NULL;
    }
    rt_thread *t = thread_state();
    if (t)
        t->has_tid = 0;
    /* fids are per recording */
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(g_registry, &pos, &key, &value))
        ((Boundary *)value)->fid = 0;
}

/* start_recording(path, header: bytes, max_size=0, max_memory=0, flight=False) */
static PyObject *
start_recording(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "header", "max_size", "max_memory", "flight", NULL};
    PyObject *path;
    Py_buffer header;
    unsigned long long max_size = 0, max_memory = 0;
    int flight = 0;
    char err[512];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&y*|KKp", kwlist, PyUnicode_FSConverter,
                                     &path, &header, &max_size, &max_memory, &flight))
        return NULL;
    rt_writer_limits limits = {max_size, max_memory, flight};
    if (g_mode != MODE_OFF || g_writer || g_reader) {
        Py_DECREF(path);
        PyBuffer_Release(&header);
        return busy_error();
    }
    rt_writer *w;
    Py_BEGIN_ALLOW_THREADS
    w = rt_writer_open(PyBytes_AS_STRING(path), header.buf, (size_t)header.len, &limits,
                       err, sizeof err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    PyBuffer_Release(&header);
    if (!w) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    g_writer = w;
    rt_writer_install_fatal_handlers(w);
    reset_state();
    g_mode = MODE_RECORD;
    arm_test_fault();
    thread_state();       /* the starting thread is thread 0 */
    Py_RETURN_NONE;
}

/* open_replay(path) -> header bytes; replay starts with start_replay() */
static PyObject *
open_replay(PyObject *Py_UNUSED(m), PyObject *arg)
{
    PyObject *path;
    char err[512];
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    if (g_mode != MODE_OFF || g_writer || g_reader) {
        Py_DECREF(path);
        return busy_error();
    }
    g_reader = rt_reader_open(PyBytes_AS_STRING(path), err, sizeof err);
    Py_DECREF(path);
    if (!g_reader) {
        PyErr_SetString(rt_TraceCorrupt, err);
        return NULL;
    }
    size_t n;
    const uint8_t *h = rt_reader_header(g_reader, &n);
    reset_state();
    return PyBytes_FromStringAndSize((const char *)h, (Py_ssize_t)n);
}

static PyObject *
start_replay(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    if (!g_reader || g_mode != MODE_OFF)
        return busy_error();
    g_mode = MODE_REPLAY;
    thread_state();
    rt_demux_start();
    Py_RETURN_NONE;
}

/* end(info): record the END record; in replay, check the recording ends here
 * and return the recorded info. Either way the boundary is switched off. */
static PyObject *
end(PyObject *Py_UNUSED(m), PyObject *info)
{
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    if (g_mode == MODE_RECORD) {
        rt_buf_clear(&t->scratch);
        int rc = rt_buf_put_u8(&t->scratch, 'E') < 0 ? -1 : rt_encode(&t->scratch, info);
        if (rc == 0)
            append_scratch(t);
        g_mode = MODE_OFF;
        g_ender = t;
        if (rc < 0)
            return PyErr_Occurred() ? NULL : PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    if (g_mode != MODE_REPLAY)
        Py_RETURN_NONE;
    if (g_divergence_exc) {
        /* the program swallowed the divergence and finished anyway */
        g_mode = MODE_OFF;
        return diverge(NULL, NULL, NULL, NULL, 0);
    }
    int st = take_turn(t, NULL);
    if (st < 0) {
        g_mode = MODE_OFF;
        return NULL;
    }
    if (st == 0 || g_pending[0] != 'E') {
        diverge_at_pending(st == 0 || g_pending[0] == RT_REC_CUT
                               ? "the recording ends without the end of the run"
                               : "the replay finished while the recording continues",
                           NULL, t->tid);
        g_mode = MODE_OFF;
        return NULL;
    }
    rt_cursor c = {g_pending + 1, g_pending + g_pending_len};
    g_pending = NULL;
    g_mode = MODE_OFF;
    return rt_decode(&c);
}

/* stop() -> error message or None: close the writer or reader. */
static PyObject *
stop(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    char err[512] = "";
    int rc = 0;
    g_mode = MODE_OFF;
    if (g_writer) {
        rt_writer *w = g_writer;
        g_writer = NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = rt_writer_close(w, err, sizeof err);
        Py_END_ALLOW_THREADS
    }
    if (g_reader) {
        rt_reader_close(g_reader);
        g_reader = NULL;
        g_pending = NULL;
    }
    if (rc < 0)
        return PyUnicode_FromString(err);
    Py_RETURN_NONE;
}

static PyObject *
flush(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    int rc = 0;
    if (g_writer) {
        Py_BEGIN_ALLOW_THREADS
        rc = rt_writer_flush(g_writer);
        Py_END_ALLOW_THREADS
    }
    return PyBool_FromLong(rc == 0);
}

static PyObject *
mode(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    static const char *names[] = {"off", "record", "replay"};
    return PyUnicode_FromString(names[g_mode]);
}

/* active() -> True when a call made now by this thread would be recorded or
 * replayed (cheap check for Python-level wrappers). */
static PyObject *
active(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    if (g_mode == MODE_OFF || (g_mode == MODE_RECORD && g_writer && rt_writer_stopped(g_writer)))
        Py_RETURN_FALSE;
    rt_thread *t = thread_state();
    return PyBool_FromLong(t && !t->disabled);
}

static PyObject *
event_index(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    /* With live outputs, the recorded output calls ahead are passed over */
    if (g_mode == MODE_REPLAY && g_live_outputs && fetch_pending() < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(g_event_index);
}

/* The index of the calling thread's latest event: the same number in
 * recording and replay, so it names an ordered call (a queue put) from
 * inside it without racing other threads. */
static PyObject *
thread_event_index(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    rt_thread *t = thread_state();
    if (!t)
        return NULL;
    return PyLong_FromUnsignedLongLong(t->last_event);
}

static PyObject *
suspend(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    t->disabled++;
    Py_RETURN_NONE;
}

static PyObject *
resume(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    if (t->disabled > 0)
        t->disabled--;
    Py_RETURN_NONE;
}

/* spawn_thread() -> the trace number of a thread about to be started by this
 * one. Numbers follow creation order, so replay numbers threads as the
 * recording did. */
static PyObject *
spawn_thread(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    if (g_mode == MODE_REPLAY && t_state && in_collector(t_state)) {
        PyObject *name = PyUnicode_FromString("a thread start");
        if (name)
            refused(name, "its number would shift the numbers of the program's threads");
        Py_XDECREF(name);
        return NULL;
    }
    uint64_t tid = g_next_tid++;
    if (g_mode == MODE_REPLAY && rt_demux_add(tid) < 0)
        return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(tid);
}

/* enter_thread(tid): the calling thread is the one spawn_thread() numbered. */
static PyObject *
enter_thread(PyObject *Py_UNUSED(m), PyObject *arg)
{
    uint64_t tid = PyLong_AsUnsignedLongLong(arg);
    if (tid == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    if (!thread_alloc())
        return PyErr_NoMemory();
    t_state->tid = tid;
    t_state->has_tid = 1;
    rt_stepper_thread_numbered();
    Py_RETURN_NONE;
}

/* leave_thread(): the calling thread made its last event; in replay the
 * baton goes to the owner of the next record. */
static PyObject *
leave_thread(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    if (g_mode == MODE_REPLAY) {
        uint64_t next = 0;
        int st = fetch_pending();
        if (st < 0 || (st == 1 && pending_owner(&next) < 0))
            PyErr_Clear();   /* the next thread to ask will report it */
        rt_demux_remove(t->tid, next);
    }
    rt_stepper_thread_left();
    Py_RETURN_NONE;
}

PyObject *
rt_boundary_diverge(const char *reason, PyObject *expected, PyObject *actual)
{
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    PyObject *tid = PyLong_FromUnsignedLongLong(t->tid);
    if (!tid)
        return NULL;
    diverge(reason, expected, tid, actual, t->tid);
    Py_DECREF(tid);
    return NULL;
}

/* divergence(reason, expected, actual): stop the replay from Python code that
 * found the replay disagreeing with the recording (e.g. a lock the recording
 * acquired is held in replay). Always raises. */
static PyObject *
divergence(PyObject *Py_UNUSED(m), PyObject *args)
{
    const char *reason;
    PyObject *expected, *actual;
    if (!PyArg_ParseTuple(args, "sUU", &reason, &expected, &actual))
        return NULL;
    return rt_boundary_diverge(reason, expected, actual);
}

/* write_all(fd, data) -> len(data): write everything, retrying short writes
 * and EINTR, WITHOUT releasing the GIL (see record_output). */
static PyObject *
write_all(PyObject *Py_UNUSED(m), PyObject *args)
{
    int fd;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iy*", &fd, &data))
        return NULL;
    const char *p = data.buf;
    Py_ssize_t left = data.len;
    while (left > 0) {
        ssize_t k = write(fd, p, (size_t)left);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            PyBuffer_Release(&data);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        p += k;
        left -= k;
    }
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(data.len);
}

/* set_live_outputs(): from now on replay does not hold output calls to the
 * recording: they run live, and the recorded ones are skipped. retrace check
 * uses it: a fixed program prints what it prints. */
static PyObject *
set_live_outputs(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    g_live_outputs = 1;
    Py_RETURN_NONE;
}

/* set_refuse(on): in a debugger's throwaway process (an inspection or the
 * evaluation of a condition), every boundary call raises RuntimeError instead
 * of consuming the recording or reaching the outside world. */
static PyObject *
set_refuse(PyObject *Py_UNUSED(m), PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    g_refuse = on;
    Py_RETURN_NONE;
}

/* ---- for the debugger's stepper (stepper.c) ------------------------------ */

uint64_t
rt_event_index(void)
{
    return g_event_index;
}

int
rt_thread_suspended(void)
{
    return t_state && t_state->disabled;
}

int64_t
rt_thread_number(void)
{
    return t_state && t_state->has_tid ? (int64_t)t_state->tid : -1;
}

static PyObject *
set_divergence_factory(PyObject *Py_UNUSED(m), PyObject *fn)
{
    Py_XSETREF(g_divergence, Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* set_signal_delivery(event, deliver): event is the Boundary that records a
 * signal handler running; deliver() runs one handler at an external call: in
 * replay the one recorded at the pending event (see replay_signals), in
 * recording the oldest deferred by defer_signals(). */
static PyObject *
set_signal_delivery(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *event, *deliver;
    if (!PyArg_ParseTuple(args, "O!O", &BoundaryType, &event, &deliver))
        return NULL;
    Py_XSETREF(g_signal_event, Py_NewRef(event));
    Py_XSETREF(g_signal_deliver, Py_NewRef(deliver));
    Py_RETURN_NONE;
}

/* defer_signal(signum): the handler of signum waits; the calling (main)
 * thread's next external call first calls deliver(), or, after
 * SIGNAL_DEFER_NS without one, signum is raised again (see
 * deferred_signals_deadline). */
static PyObject *
defer_signal(PyObject *Py_UNUSED(m), PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred())
        return NULL;
    if (signum < 1 || signum >= NSIG || !g_signal_deliver) {
        PyErr_SetString(PyExc_ValueError, "defer_signal: no such signal, or no delivery set");
        return NULL;
    }
    if (!g_signals_deferred) {
        g_deferred_thread = PyThread_get_thread_ident();
        clock_gettime(CLOCK_MONOTONIC, &g_deferred_since);
        g_deferred_signum = (int)signum;
        g_signals_deferred = 1;
        Py_AddPendingCall(deferred_signals_deadline, NULL);
    }
    Py_RETURN_NONE;
}

/* take_overdue(signum) -> True if this handler call is the deferred signal
 * raised again: the waiting handlers run now. */
static PyObject *
take_overdue(PyObject *Py_UNUSED(m), PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred())
        return NULL;
    if (!g_overdue_signum || signum != g_overdue_signum)
        Py_RETURN_FALSE;
    g_overdue_signum = 0;
    g_signals_deferred = 0;
    Py_RETURN_TRUE;
}

/* forget_signals(): a forked child was not signalled. */
static PyObject *
forget_signals(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    g_signals_deferred = 0;
    g_overdue_signum = 0;
    Py_RETURN_NONE;
}

static PyObject *
swap_disabled(PyObject *Py_UNUSED(m), PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "swap_disabled: depth out of range");
        return NULL;
    }
    rt_thread *t = thread_state();
    if (!t)
        return PyErr_NoMemory();
    int old = t->disabled;
    t->disabled = (int)n;
    return PyLong_FromLong(old);
}

/* cut(): a bug inside Retrace stops the recording here (the caller reports
 * it); the program goes on, its calls no longer recorded. */
static PyObject *
cut(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    if (g_mode == MODE_RECORD && g_writer)
        rt_writer_cut(g_writer, RT_CUT_INTERNAL);
    Py_RETURN_NONE;
}

/* keep(): a flight recording is written to its file now (and from then on). */
static PyObject *
keep(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    char err[512];
    int rc = 0;
    if (!g_writer) {
        PyErr_SetString(PyExc_RuntimeError, "not recording");
        return NULL;
    }
    rt_writer *w = g_writer;
    Py_BEGIN_ALLOW_THREADS
    rc = rt_writer_keep(w, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* describe_cut(record: bytes) -> why a recording was cut, for people */
static PyObject *
describe_cut(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_buffer rec;
    char why[256];
    if (PyObject_GetBuffer(arg, &rec, PyBUF_SIMPLE) < 0)
        return NULL;
    rt_describe_cut(rec.buf, (size_t)rec.len, why, sizeof why);
    PyBuffer_Release(&rec);
    return PyUnicode_FromString(why);
}

static PyObject *
set_redactor(PyObject *Py_UNUSED(m), PyObject *fn)
{
    Py_XSETREF(g_redact, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* gc.callbacks' first and last entries: a collection starts or stops in
 * this thread (see "code the garbage collector runs"). */
static PyObject *
gc_start(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (g_mode == MODE_OFF || nargs < 1 || !PyUnicode_Check(args[0]) ||
        PyUnicode_CompareWithASCIIString(args[0], "start") != 0)
        Py_RETURN_NONE;
    if (!thread_alloc())
        return PyErr_NoMemory();
    if (!t_state->in_gc) {
        t_state->in_gc = 1;
        collector_enter(t_state);
    }
    /* a callback the program appended since runs inside the collection too */
    Py_ssize_t n = PyList_GET_SIZE(g_gc_callbacks);
    if (n == 0 || PyList_GET_ITEM(g_gc_callbacks, n - 1) != g_gc_stop) {
        for (Py_ssize_t i = n - 1; i >= 0; i--) {
            if (PyList_GET_ITEM(g_gc_callbacks, i) == g_gc_stop) {
                if (PySequence_DelItem(g_gc_callbacks, i) < 0)
                    return NULL;
                break;
            }
        }
        if (PyList_Append(g_gc_callbacks, g_gc_stop) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
gc_stop(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1 && PyUnicode_Check(args[0]) && t_state && t_state->in_gc &&
        PyUnicode_CompareWithASCIIString(args[0], "stop") == 0) {
        t_state->in_gc = 0;
        collector_leave(t_state);
    }
    Py_RETURN_NONE;
}

/* watch_collector(refused): gc.callbacks tells each thread when it runs the
 * collector; refused is the exception of a call replay will not make. */
static PyObject *
watch_collector(PyObject *m, PyObject *refused_cls)
{
    if (!PyExceptionClass_Check(refused_cls)) {
        PyErr_SetString(PyExc_TypeError, "watch_collector takes an exception class");
        return NULL;
    }
    Py_XSETREF(g_refused, Py_NewRef(refused_cls));
    if (g_gc_callbacks)
        Py_RETURN_NONE;
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *callbacks = gc ? PyObject_GetAttrString(gc, "callbacks") : NULL;
    PyObject *start = PyObject_GetAttrString(m, "_gc_start");
    PyObject *stop = PyObject_GetAttrString(m, "_gc_stop");
    Py_XDECREF(gc);
    if (!callbacks || !start || !stop || !PyList_Check(callbacks) ||
        PyList_Insert(callbacks, 0, start) < 0 || PyList_Append(callbacks, stop) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "gc.callbacks is not a list");
        Py_XDECREF(callbacks);
        Py_XDECREF(start);
        Py_XDECREF(stop);
        return NULL;
    }
    g_gc_callbacks = callbacks;
    g_gc_stop = stop;
    Py_DECREF(start);
    Py_RETURN_NONE;
}

/* as_collector(func, *args): func(*args) as code the collector runs. */
static PyObject *
as_collector(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "as_collector(func, *args)");
        return NULL;
    }
    if (!thread_alloc())
        return PyErr_NoMemory();
    collector_enter(t_state);
    PyObject *res = PyObject_Vectorcall(args[0], args + 1, (size_t)nargs - 1, NULL);
    collector_leave(t_state);
    return res;
}

static PyObject *
collecting(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return PyBool_FromLong(t_state && in_collector(t_state));
}

/* swap_program_code(flag) -> old: a signal handler is the program's code,
 * even when it runs inside a collection. */
static PyObject *
swap_program_code(PyObject *Py_UNUSED(m), PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    if (!thread_alloc())
        return PyErr_NoMemory();
    int old = t_state->program;
    t_state->program = flag;
    return PyBool_FromLong(old);
}

/* patch_type(type, name, value): set an attribute of a C type, including
 * static and immutable ones, so that instances keep their real type. */
static PyObject *
patch_type(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyTypeObject *type;
    PyObject *name, *value;
    if (!PyArg_ParseTuple(args, "O!UO", &PyType_Type, &type, &name, &value))
        return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *dict = PyType_GetDict(type);
#else
    PyObject *dict = Py_XNewRef(type->tp_dict);
#endif
    if (!dict) {
        PyErr_Format(PyExc_TypeError, "type %s has no dict to patch", type->tp_name);
        return NULL;
    }
    int rc = PyDict_SetItem(dict, name, value);
    Py_DECREF(dict);
    if (rc < 0)
        return NULL;
    PyType_Modified(type);
    Py_RETURN_NONE;
}

static PyMethodDef boundary_methods[] = {
    {"start_recording", (PyCFunction)(void (*)(void))start_recording,
     METH_VARARGS | METH_KEYWORDS,
     "start_recording(path, header, max_size=0, max_memory=0, flight=False)"},
    {"cut", cut, METH_NOARGS, "an internal error stops the recording here"},
    {"world", (PyCFunction)(void (*)(void))world, METH_FASTCALL | METH_KEYWORDS,
     "world(fn, *args, **kwargs): the real call inside a recording function (fallback)"},
    {"keep", keep, METH_NOARGS, "write a flight recording to its file now"},
    {"describe_cut", describe_cut, METH_O, "describe_cut(record) -> why the recording was cut"},
    {"set_redactor", set_redactor, METH_O,
     "set_redactor(fn or None): fn(value) -> what to record of a str/bytes/tuple/list result"},
    {"open_replay", open_replay, METH_O, "open_replay(path) -> header bytes"},
    {"start_replay", start_replay, METH_NOARGS, "start replaying the opened trace"},
    {"end", end, METH_O, "end(info): the run ends here; returns the recorded info in replay"},
    {"stop", stop, METH_NOARGS, "close the trace; returns an error message or None"},
    {"flush", flush, METH_NOARGS, "write all recorded events to the file now"},
    {"mode", mode, METH_NOARGS, "'off', 'record' or 'replay'"},
    {"active", active, METH_NOARGS, "whether this thread's calls cross the boundary now"},
    {"event_index", event_index, METH_NOARGS, "calls recorded or replayed so far"},
    {"thread_event_index", thread_event_index, METH_NOARGS,
     "index of the calling thread's latest call record"},
    {"suspend", suspend, METH_NOARGS, "switch the boundary off for this thread (nests)"},
    {"resume", resume, METH_NOARGS, "undo one suspend()"},
    {"set_divergence_factory", set_divergence_factory, METH_O,
     "fn(reason, index, expected, expected_tid, actual, actual_tid, at_end) -> "
     "ReplayDivergence; at_end: the recorded run ended at this point"},
    {"patch_type", patch_type, METH_VARARGS, "patch_type(type, name, value)"},
    {"set_signal_delivery", set_signal_delivery, METH_VARARGS,
     "set_signal_delivery(event, deliver): how signal handlers record and replay"},
    {"defer_signal", defer_signal, METH_O,
     "defer_signal(signum): its handler waits for the next external call"},
    {"take_overdue", take_overdue, METH_O,
     "take_overdue(signum) -> whether the waiting handlers run now"},
    {"forget_signals", forget_signals, METH_NOARGS, "forget_signals(): no handler waits"},
    {"swap_disabled", swap_disabled, METH_O,
     "swap_disabled(n) -> old: set this thread's boundary-off depth"},
    {"divergence", divergence, METH_VARARGS,
     "divergence(reason, expected, actual): stop the replay here (raises)"},
    {"write_all", write_all, METH_VARARGS,
     "write_all(fd, data): write it all without releasing the GIL"},
    {"set_live_outputs", set_live_outputs, METH_NOARGS,
     "output boundaries run live; the recorded output calls are skipped"},
    {"set_refuse", set_refuse, METH_O,
     "set_refuse(on): every boundary call raises (a debugger's throwaway process)"},
    {"spawn_thread", spawn_thread, METH_NOARGS, "the trace number of a thread about to start"},
    {"enter_thread", enter_thread, METH_O, "enter_thread(tid): this thread is number tid"},
    {"leave_thread", leave_thread, METH_NOARGS, "this thread made its last event"},
    {"watch_collector", watch_collector, METH_O,
     "watch_collector(refused): know when each thread runs the garbage collector"},
    {"_gc_start", (PyCFunction)(void (*)(void))gc_start, METH_FASTCALL,
     "gc.callbacks entry: a collection starts"},
    {"_gc_stop", (PyCFunction)(void (*)(void))gc_stop, METH_FASTCALL,
     "gc.callbacks entry: a collection stops"},
    {"as_collector", (PyCFunction)(void (*)(void))as_collector, METH_FASTCALL,
     "as_collector(func, *args): call func as code the garbage collector runs"},
    {"collecting", collecting, METH_NOARGS,
     "whether this thread runs code of the garbage collector now"},
    {"swap_program_code", swap_program_code, METH_O,
     "swap_program_code(flag) -> old: inside a collection, the program's own code runs"},
    {NULL, NULL, 0, NULL},
};

int
rt_boundary_init(PyObject *module)
{
    if (pthread_key_create(&g_thread_key, thread_state_free) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_key_create failed");
        return -1;
    }
    g_registry = PyDict_New();
    if (!g_registry || PyType_Ready(&BoundaryType) < 0 || PyType_Ready(&BoundaryMethodType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Boundary", (PyObject *)&BoundaryType) < 0 ||
        PyModule_AddObjectRef(module, "BoundaryMethod", (PyObject *)&BoundaryMethodType) < 0 ||
        PyModule_AddObjectRef(module, "registry", g_registry) < 0 ||
        PyModule_AddFunctions(module, boundary_methods) < 0)
        return -1;
    return 0;
}
