/* stepper.c - the debugger's position and stop rules inside a replay process.
 *
 * Position.  Under the debugger (docs/debugger.md) a replay counts the line
 * events of the program, with a C trace function on every thread the replay
 * numbers.  The count is the position: replay runs one thread at a time in
 * the recorded order (demux.c), so line event N is reached at the same frame,
 * line and locals in every replay.  Never counted: Retrace's own code, the
 * frozen import machinery (whose path depends on bytecode caches), and what
 * a thread runs while its boundary is switched off (Retrace's work).  The
 * exceptions the program newly raises are numbered within their line:
 * position (N, K) is the Kth raise after line event N began.
 *
 * Stops.  A paused process is told to run with a run spec (the "run"
 * command): a target position, a forward rule (step, next, step out),
 * breakpoints, exceptions; or a scan, which runs to the target noting the
 * last position where a predicate held (reverse moves, checkpoint.c's
 * controller side).  Each thread keeps a shadow stack of its counted frames
 * (the frame and the position its activation began), which gives the depth
 * and identity that next, step out and their reverses compare.
 *
 * The per-line path is C: the counter, the target, the rule and, when
 * breakpoints are set, a bitmap of their lines found through the code
 * object's co_extra slot.  Python runs only to test a breakpoint's
 * condition, in a throwaway fork (checkpoint.c).  Whatever the debugger is
 * asked, nothing here allocates Python objects, keeps a reference to the
 * program's objects or runs the program's code, so stops, breakpoints and
 * inspection never change the program's course or the positions.
 *
 * The program's own trace function.  A program that calls sys.settrace
 * (coverage tools, threading.settrace's threads) would replace the
 * stepper's.  Under the debugger sys.settrace is the stepper's: the thread
 * keeps the stepper's function, switched to its chaining twin, which calls
 * the program's function (CPython's, which handles the per-frame local
 * trace functions) after the stepper's work, with the events CPython would
 * give it, except in Retrace's own frames and work.  The program's function
 * object stays the thread's trace object, so sys.gettrace() returns it.
 * A thread whose program sets no trace function pays nothing for this.
 */
#include "retrace.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030C0000
#define CODE_GET_EXTRA PyUnstable_Code_GetExtra
#define CODE_SET_EXTRA PyUnstable_Code_SetExtra
#define REQUEST_CODE_EXTRA PyUnstable_Eval_RequestCodeExtraIndex
#else
#define CODE_GET_EXTRA _PyCode_GetExtra
#define CODE_SET_EXTRA _PyCode_SetExtra
#define REQUEST_CODE_EXTRA _PyEval_RequestCodeExtraIndex
#endif

#define TICK_MASK 1023u     /* checkpoint and pause checks every 1024 line events */
#define MAX_FILES 64        /* files holding line breakpoints */
#define MAX_PATHS 4         /* spellings of one file (absolute, resolved) */
#define MAX_BPS 256
#define MAX_HITS 16         /* breakpoint ids reported for one stop */
#define MAX_LINE 65536      /* lines past this are found by a walk of the table */
#define POOL_SIZE 65536     /* paths, names, conditions and log messages */
#define NONE UINT64_MAX
#define RING 256            /* recent raises, to find where an exception began */
#define MAX_LIBS 16         /* library directories (just my code) */

enum { RULE_NONE, RULE_STEP, RULE_NEXT, RULE_OUT };
enum { SCAN_NONE, SCAN_THREAD, SCAN_NEXT, SCAN_OUT, SCAN_BREAK };
enum { HIT_ALWAYS, HIT_EQ, HIT_GE, HIT_MOD };
enum { EXC_NONE, EXC_ALL, EXC_USER };   /* which raises a run stops at */

/* What a run stops at. rule and the thread predicates of a scan concern
 * thread tid and the frame at depth `depth` whose activation began at
 * `start`. */
typedef struct {
    uint64_t stop_at, stop_k;   /* the target position; stop_at NONE: none */
    int rule;                   /* RULE_*: stop at the first line it accepts */
    int scan;                   /* SCAN_*: note matches, stop only at the target */
    uint64_t tid, depth, start;
    int breakpoints;            /* stop at breakpoints */
    int exceptions;             /* EXC_*: stop where the program raises */
    int logs;                   /* print logpoint messages */
    uint64_t ckpt_ns;           /* fork a checkpoint every this much running time */
} run_spec;

typedef struct {
    PyFrameObject *frame;       /* borrowed: alive while it is on the stack */
    uint64_t start;             /* position of the activation's first line */
} activation;

/* A thread the replay numbered. */
typedef struct dthread {
    uint64_t tid;
    unsigned long ident;
    activation *stack;          /* its counted frames, outermost first */
    size_t depth, cap;
    Py_tracefunc program_trace; /* the program's trace function (the thread's trace
                                   object is its argument), or NULL */
    struct dthread *next;
} dthread;

/* Per code object, in its co_extra slot. */
typedef struct {
    uint64_t gen;               /* breakpoint table it was matched against */
    int skip;                   /* never counted */
    int own;                    /* Retrace's code: hidden from the program's trace function */
    int file;                   /* index in g_files, -1 */
    int func_bp;                /* index+1 of a function breakpoint on it */
    int library;                /* -1 not known yet; 1 library code (not the user's) */
} code_info;

typedef struct {
    int id;
    int file, line;             /* a line breakpoint; file -1 for a function breakpoint */
    int name;                   /* a function breakpoint: pool offset of its name */
    int cond, log;              /* pool offsets, -1 */
    int hit_op;
    long hit_n, hits;
} breakpoint;

static int g_active;            /* the program runs and is counted */
static int g_ended;             /* the program ended after g_step line events */
static int g_diverged;          /* a divergence was reported */
static uint64_t g_step;         /* line events counted */
static uint64_t g_pos;          /* the current line event */
static uint64_t g_raise_k;      /* raises since it began */
static run_spec g_run = {.stop_at = NONE};
static int g_checks;            /* the run looks at more than the target */
static int g_armed;             /* the target is the stop_k-th raise of this line */
static int g_at_tick;           /* paused in a tick: line g_pos is not yet looked at */
static Py_ssize_t g_extra = -1; /* co_extra index */
static char g_own_dir[PATH_MAX];
static PyObject *g_divergence_type;
static PyObject *g_settrace;    /* CPython's sys.settrace */
static char g_libs[MAX_LIBS][PATH_MAX]; /* library directories, resolved, ending in '/' */
static int g_nlibs;
static dthread *g_threads;
static _Thread_local dthread *t_dbg;
static rt_buf g_msg;            /* the message being built */

/* The breakpoint table, replaced as a whole by the controller. */
static uint64_t g_bp_gen = 1;
static char g_pool[POOL_SIZE];
static size_t g_pool_len;
static int g_paths[MAX_FILES][MAX_PATHS];
static int g_npaths[MAX_FILES];
static int g_nfiles;
static uint8_t g_lines[MAX_FILES][MAX_LINE / 8];
static breakpoint g_bps[MAX_BPS];
static int g_nbps, g_nfuncs;

/* The last match of a scan. */
static struct {
    int found;
    uint64_t step, k, tid;
    const char *cause;
    int ids[MAX_HITS], nids;
} g_match;

static struct {
    const void *exc;            /* identity only: never dereferenced */
    uint64_t step, k, tid;
} g_ring[RING];
static unsigned g_ring_next;
static struct {
    int set;
    uint64_t step, k, tid;
} g_last_raise;

/* Where the process is paused, for its inspectors. */
static PyFrameObject *g_stop_frame;
static PyObject *g_stop_exc;
static dthread *g_stop_thread;

static int trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
static int trace_chained(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
static void rescan_here(PyFrameObject *frame, PyObject *exc);

/* ---- code objects --------------------------------------------------------- */

static void
code_info_free(void *p)
{
    free(p);
}

static int
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int
own_file(const char *path)
{
    return g_own_dir[0] && starts_with(path, g_own_dir);
}

static int
skipped_file(PyObject *filename)
{
    char path[PATH_MAX];
    if (rt_utf8_into(filename, path, sizeof path) < 0)
        return 0;
    return starts_with(path, "<frozen ") || own_file(path);
}

static code_info *
info_of(PyCodeObject *code)
{
    void *extra = NULL;
    if (CODE_GET_EXTRA((PyObject *)code, g_extra, &extra) < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (extra)
        return extra;
    code_info *ci = calloc(1, sizeof *ci);
    if (!ci)
        return NULL;
    char path[PATH_MAX];
    if (rt_utf8_into(code->co_filename, path, sizeof path) >= 0) {
        ci->own = own_file(path);
        ci->skip = ci->own || starts_with(path, "<frozen ");
    }
    ci->file = -1;
    ci->library = -1;
    if (CODE_SET_EXTRA((PyObject *)code, g_extra, ci) < 0) {
        PyErr_Clear();
        free(ci);
        return NULL;
    }
    return ci;
}

/* Library code: a file under a library directory (the standard library,
 * site-packages, Retrace; the controller sends them) or one without a real
 * path ("<string>", "<frozen ...>"). Resolved once per code object. */
static int
library_code(PyCodeObject *code, code_info *ci)
{
    if (ci->library < 0) {
        char path[PATH_MAX], real[PATH_MAX];
        ci->library = 1;
        if (rt_utf8_into(code->co_filename, path, sizeof path) >= 0 && path[0] != '<') {
            const char *p = realpath(path, real) ? real : path;
            ci->library = 0;
            for (int i = 0; i < g_nlibs && !ci->library; i++)
                ci->library = starts_with(p, g_libs[i]);
        }
    }
    return ci->library;
}

static int
same_name(PyObject *name, const char *wanted)
{
    char buf[512];
    return rt_utf8_into(name, buf, sizeof buf) >= 0 && strcmp(buf, wanted) == 0;
}

/* Match a code object against the breakpoint table (once per table). */
static void
refresh(code_info *ci, PyCodeObject *code)
{
    char path[PATH_MAX];
    ci->gen = g_bp_gen;
    ci->file = -1;
    ci->func_bp = 0;
    if (g_nfiles && rt_utf8_into(code->co_filename, path, sizeof path) >= 0)
        for (int f = 0; f < g_nfiles && ci->file < 0; f++)
            for (int i = 0; i < g_npaths[f]; i++)
                if (strcmp(path, g_pool + g_paths[f][i]) == 0)
                    ci->file = f;
    for (int i = 0; i < g_nbps && g_nfuncs; i++)
        if (g_bps[i].file < 0 && (same_name(code->co_qualname, g_pool + g_bps[i].name) ||
                                  same_name(code->co_name, g_pool + g_bps[i].name))) {
            ci->func_bp = i + 1;
            break;
        }
}

/* ---- the program's trace function ------------------------------------------ */

static int
stepper_traces(PyThreadState *ts)
{
    return ts->c_tracefunc == trace || ts->c_tracefunc == trace_chained;
}

/* Put the stepper's trace function on this thread. A trace function already
 * there is the program's: the stepper's chaining twin takes its place and
 * calls it. Swapping one function for another keeps the trace object (what
 * sys.gettrace() returns) and raises no audit event the recording lacks. */
static void
install_here(dthread *th)
{
    PyThreadState *ts = PyThreadState_Get();
    if (stepper_traces(ts))
        return;
    th->program_trace = ts->c_tracefunc;
    if (th->program_trace) {
        ts->c_tracefunc = trace_chained;
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    PyEval_SetTrace(trace, NULL);
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyEval_SetTrace(trace, NULL);
    PyErr_Restore(type, value, tb);
#endif
}

/* sys.settrace(function) under the debugger (see the header). */
static PyObject *
debug_settrace(PyObject *Py_UNUSED(m), PyObject *function)
{
    PyThreadState *ts = PyThreadState_Get();
    dthread *th = t_dbg;
    if (!th || !stepper_traces(ts))
        return PyObject_CallOneArg(g_settrace, function);
    if (function == Py_None) {
        /* CPython's would remove the stepper's function too */
        if (PySys_Audit("sys.settrace", NULL) < 0)
            return NULL;
        th->program_trace = NULL;
        ts->c_tracefunc = trace;
        Py_CLEAR(ts->c_traceobj);
        Py_RETURN_NONE;
    }
    PyObject *res = PyObject_CallOneArg(g_settrace, function);
    install_here(th);
    return res;
}

/* Make sys.settrace the stepper's, with the name, doc, module and __self__
 * of CPython's: the program may look at them. */
static int
replace_settrace(void)
{
    static PyMethodDef def;
    PyObject *sys = PyImport_ImportModule("sys");
    if (!sys)
        return -1;
    PyObject *ours = NULL;
    g_settrace = PyObject_GetAttrString(sys, "settrace");
    if (g_settrace && PyCFunction_Check(g_settrace) &&
        ((PyCFunctionObject *)g_settrace)->m_ml->ml_flags == METH_O) {
        def = *((PyCFunctionObject *)g_settrace)->m_ml;
        def.ml_meth = debug_settrace;
        ours = PyCFunction_NewEx(&def, sys, ((PyCFunctionObject *)g_settrace)->m_module);
    } else if (g_settrace) {
        PyErr_SetString(PyExc_RuntimeError, "sys.settrace is not CPython's");
    }
    int res = ours ? PyObject_SetAttrString(sys, "settrace", ours) : -1;
    Py_XDECREF(ours);
    Py_DECREF(sys);
    return res;
}

/* The stepper's trace function on a thread where the program set its own:
 * the stepper's work, then the program's function, but not in Retrace's
 * frames and work. Errors are the program's: CPython's function removed
 * itself and the stepper's, which goes back. */
static int
trace_chained(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    trace(obj, frame, what, arg);
    dthread *th = t_dbg;
    if (!g_active || !th || !th->program_trace || rt_thread_suspended())
        return 0;
    PyCodeObject *code = PyFrame_GetCode(frame);
    code_info *ci = info_of(code);
    Py_DECREF(code);
    if (ci && ci->own)
        return 0;
    int res = th->program_trace(obj, frame, what, arg);
    install_here(th);
    return res;
}

/* ---- threads --------------------------------------------------------------- */

static dthread *
thread_here(void)
{
    if (t_dbg)
        return t_dbg;
    int64_t tid = rt_thread_number();
    if (tid < 0)
        return NULL;            /* not a thread of the replay */
    dthread *th = calloc(1, sizeof *th);
    if (!th)
        return NULL;
    th->tid = (uint64_t)tid;
    th->ident = PyThread_get_thread_ident();
    th->next = g_threads;
    g_threads = th;
    t_dbg = th;
    return th;
}

void
rt_stepper_thread_numbered(void)
{
    dthread *th;
    if (g_active && (th = thread_here()))
        install_here(th);
}

void
rt_stepper_thread_left(void)
{
    dthread *th = t_dbg;
    if (!th)
        return;
    PyThreadState *ts = PyThreadState_Get();
    if (ts->c_tracefunc == trace_chained)
        ts->c_tracefunc = th->program_trace;    /* the program's goes on alone */
    else if (ts->c_tracefunc == trace)
        PyEval_SetTrace(NULL, NULL);
    for (dthread **p = &g_threads; *p; p = &(*p)->next)
        if (*p == th) {
            *p = th->next;
            break;
        }
    t_dbg = NULL;
    free(th->stack);
    free(th);
}

uint64_t
rt_stepper_step(void)
{
    return g_ended ? g_step : g_pos;
}

int
rt_stepper_forkable(void)
{
    PyThreadState *me = PyThreadState_Get();
    PyThreadState *head = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me));
    return head == me && PyThreadState_Next(head) == NULL;
}

static void
push(dthread *th, PyFrameObject *frame)
{
    if (th->depth == th->cap) {
        size_t cap = th->cap ? 2 * th->cap : 64;
        activation *grown = realloc(th->stack, cap * sizeof *grown);
        if (!grown)
            return;             /* depth is then understated; only next/out suffer */
        th->stack = grown;
        th->cap = cap;
    }
    th->stack[th->depth++] = (activation){frame, g_step};
}

/* A frame returns (or yields). It is almost always the top one; a frame
 * that is not counted is not on the stack at all. */
static void
pop(dthread *th, PyFrameObject *frame)
{
    if (th->stack[th->depth - 1].frame == frame) {
        th->depth--;
        return;
    }
    PyCodeObject *code = PyFrame_GetCode(frame);
    code_info *ci = info_of(code);
    Py_DECREF(code);
    if (!ci || ci->skip)
        return;
    for (size_t i = th->depth - 1; i > 0; i--)
        if (th->stack[i - 1].frame == frame) {
            th->depth = i - 1;      /* inner frames whose return was not seen go too */
            return;
        }
}

static uint64_t
activation_start(dthread *th)
{
    return th && th->depth ? th->stack[th->depth - 1].start : 0;
}

/* ---- messages -------------------------------------------------------------- */

/* The hit counts of the breakpoints that have a hit condition: id, count, ... */
static void
put_hits(rt_buf *j)
{
    char num[48];
    int first = 1;
    rt_json_key(j, "hits");
    rt_buf_put_u8(j, '[');
    for (int i = 0; i < g_nbps; i++)
        if (g_bps[i].hit_op != HIT_ALWAYS) {
            int len = snprintf(num, sizeof num, "%s%d,%ld", first ? "" : ",", g_bps[i].id,
                               g_bps[i].hits);
            rt_buf_put(j, num, (size_t)len);
            first = 0;
        }
    rt_buf_put_u8(j, ']');
}

static void
put_ids(rt_buf *j, const char *key, const int *ids, int n)
{
    char num[24];
    rt_json_key(j, key);
    rt_buf_put_u8(j, '[');
    for (int i = 0; i < n; i++) {
        int len = snprintf(num, sizeof num, "%s%d", i ? "," : "", ids[i]);
        rt_buf_put(j, num, (size_t)len);
    }
    rt_buf_put_u8(j, ']');
}

/* Where a paused process is: "stop" (a stop was reported; "again" reports it
 * again), "tick" (at a checkpoint, before line g_pos is looked at: a run may
 * target g_pos itself), "end", or "start" (before the first line). */
static const char *
paused_at(void)
{
    return g_ended ? "end" : g_stop_frame ? "stop" : g_at_tick ? "tick" : "start";
}

void
rt_stepper_describe(rt_buf *j)
{
    rt_json_int(j, "step", (long long)rt_stepper_step());
    rt_json_int(j, "k", (long long)(g_ended ? 0 : g_raise_k));
    rt_json_int(j, "event", (long long)rt_event_index());
    rt_json_int(j, "ended", g_ended);
    rt_json_int(j, "forkable", rt_stepper_forkable());
    rt_json_str(j, "at", paused_at());
}

/* Report a stop at this frame ("stop"; or "scan": a scan reached its end,
 * with its last match) and wait for the next run. */
static void
stop_here(PyFrameObject *frame, const char *cause, const int *ids, int nids, PyObject *exc)
{
    dthread *th = thread_here();
    PyCodeObject *code = PyFrame_GetCode(frame);
    int scan = strcmp(cause, "scan") == 0;
    g_stop_frame = frame;
    g_stop_exc = exc;
    g_stop_thread = th;
    rt_buf *j = &g_msg;
    rt_buf_clear(j);
    rt_json_open(j);
    rt_json_str(j, "ev", scan ? "scan" : "stop");
    rt_json_str(j, "cause", scan ? "target" : cause);
    rt_stepper_describe(j);
    rt_json_int(j, "tid", th ? (long long)th->tid : 0);
    rt_json_int(j, "depth", th ? (long long)th->depth : 0);
    rt_json_int(j, "start", (long long)activation_start(th));
    rt_json_unicode(j, "file", code->co_filename);
    rt_json_int(j, "line", PyFrame_GetLineNumber(frame));
    rt_json_unicode(j, "function", code->co_qualname);
    put_ids(j, "bps", ids, nids);
    put_hits(j);
    if (exc)
        rt_json_str(j, "exc_type", Py_TYPE(exc)->tp_name);
    if (scan) {
        rt_json_int(j, "found", g_match.found);
        if (g_match.found) {
            rt_json_int(j, "match_step", (long long)g_match.step);
            rt_json_int(j, "match_k", (long long)g_match.k);
            rt_json_int(j, "match_tid", (long long)g_match.tid);
            rt_json_str(j, "match_cause", g_match.cause);
            put_ids(j, "match_bps", g_match.ids, g_match.nids);
        }
    }
    rt_json_close(j);
    Py_DECREF(code);
    rt_ckpt_pause(j);
    g_stop_frame = NULL;
    g_stop_exc = NULL;
    g_stop_thread = NULL;
    if (g_run.scan != SCAN_NONE)
        rescan_here(frame, exc);
}

static void
note_match(uint64_t tid, const char *cause, const int *ids, int nids)
{
    g_match.found = 1;
    g_match.step = g_pos;
    g_match.k = g_raise_k;
    g_match.tid = tid;
    g_match.cause = cause;
    g_match.nids = nids;
    if (nids)
        memcpy(g_match.ids, ids, (size_t)nids * sizeof *ids);
}

/* ---- breakpoints ----------------------------------------------------------- */

/* Whether breakpoint bp, reached at this frame, stops the run. Its condition
 * and log message are evaluated in a throwaway fork; a logpoint prints (on
 * forward runs) and never stops; a condition that fails to evaluate stops,
 * with the error on the console, as in pdb. Hits are counted on forward runs
 * that stop at breakpoints (the controller carries the counts over). */
static int
fires(breakpoint *bp, PyFrameObject *frame)
{
    int scanning = g_run.scan != SCAN_NONE;
    const char *log = bp->log >= 0 ? g_pool + bp->log : NULL;
    if (log && (scanning || !g_run.logs))
        return 0;
    if (bp->cond >= 0 || log) {
        char out[1024];
        int r = rt_ckpt_test((PyObject *)frame, bp->cond >= 0 ? g_pool + bp->cond : NULL, log,
                             out, sizeof out);
        if (r < 0 || (r > 0 && log)) {
            if (!scanning)
                rt_ckpt_log(bp->id, out);
            return r < 0 && !log;
        }
        if (r == 0)
            return 0;
    }
    if (scanning)
        return 1;
    bp->hits++;
    switch (bp->hit_op) {
    case HIT_EQ:
        return bp->hits == bp->hit_n;
    case HIT_GE:
        return bp->hits >= bp->hit_n;
    case HIT_MOD:
        return bp->hit_n > 0 && bp->hits % bp->hit_n == 0;
    default:
        return 1;
    }
}

static int
line_marked(int file, int line)
{
    return line >= MAX_LINE || (line > 0 && (g_lines[file][line >> 3] & (1u << (line & 7))));
}

/* The breakpoints that stop here; their ids go to ids, the kind to *cause. */
static int
breakpoints_here(dthread *th, PyFrameObject *frame, PyCodeObject *code, code_info *ci, int *ids,
                 const char **cause)
{
    int n = 0;
    if (ci->gen != g_bp_gen)
        refresh(ci, code);
    /* a function breakpoint: the first line of an activation of its code */
    if (ci->func_bp && th->depth && th->stack[th->depth - 1].frame == frame &&
        th->stack[th->depth - 1].start == g_pos && fires(&g_bps[ci->func_bp - 1], frame)) {
        ids[n++] = g_bps[ci->func_bp - 1].id;
        *cause = "function breakpoint";
    }
    if (ci->file < 0)
        return n;
    int line = PyFrame_GetLineNumber(frame);
    if (!line_marked(ci->file, line))
        return n;
    for (int i = 0; i < g_nbps && n < MAX_HITS; i++) {
        breakpoint *bp = &g_bps[i];
        if (bp->file == ci->file && bp->line == line && fires(bp, frame)) {
            ids[n++] = bp->id;
            *cause = "breakpoint";
        }
    }
    return n;
}

/* Does the frame rule (next, out) or its scan accept this line of thread th? */
static int
frame_rule_holds(int rule, dthread *th)
{
    switch (rule) {
    case RULE_STEP:
        return 1;
    case RULE_NEXT:
        return th->depth < g_run.depth ||
               (th->depth == g_run.depth && activation_start(th) == g_run.start);
    case RULE_OUT:
        return th->depth < g_run.depth;
    default:
        return 0;
    }
}

/* ---- trace events ----------------------------------------------------------- */

/* The run's rule, scan and breakpoints at this line: stop, or note a match. */
static void
look_at_line(PyFrameObject *frame, PyCodeObject *code, code_info *ci)
{
    dthread *th = thread_here();
    if (!th)
        return;
    if (g_run.rule != RULE_NONE && th->tid == g_run.tid && frame_rule_holds(g_run.rule, th)) {
        stop_here(frame, "step", NULL, 0, NULL);
        return;
    }
    if (g_run.scan >= SCAN_THREAD && g_run.scan <= SCAN_OUT && th->tid == g_run.tid) {
        static const int rules[] = {[SCAN_THREAD] = RULE_STEP, [SCAN_NEXT] = RULE_NEXT,
                                    [SCAN_OUT] = RULE_OUT};
        if (frame_rule_holds(rules[g_run.scan], th))
            note_match(th->tid, "step", NULL, 0);
    }
    if (g_run.breakpoints || g_run.scan == SCAN_BREAK) {
        int ids[MAX_HITS];
        const char *cause = "breakpoint";
        int n = breakpoints_here(th, frame, code, ci, ids, &cause);
        if (n && g_run.scan == SCAN_BREAK)
            note_match(th->tid, cause, ids, n);
        else if (n && g_run.scan == SCAN_NONE)
            stop_here(frame, cause, ids, n, NULL);
    }
}

/* The program raised exc (its g_raise_k-th raise in this line). Just my
 * code (EXC_USER) passes over raises in library frames here, in C: a web
 * request raises and catches dozens inside its framework. */
static void
look_at_raise(PyFrameObject *frame, PyObject *exc)
{
    if (g_run.exceptions == EXC_NONE)
        return;
    if (g_run.exceptions == EXC_USER) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        code_info *ci = info_of(code);
        int library = !ci || library_code(code, ci);
        Py_DECREF(code);
        if (library)
            return;
    }
    if (g_run.scan == SCAN_BREAK)
        note_match(t_dbg ? t_dbg->tid : 0, "exception", NULL, 0);
    else if (g_run.scan == SCAN_NONE)
        stop_here(frame, "exception", NULL, 0, exc);
}

/* A process paused at a stop already looked at its position; a scan
 * started from it must look again, since the position is in its interval. */
static void
rescan_here(PyFrameObject *frame, PyObject *exc)
{
    if (exc) {
        look_at_raise(frame, exc);
        return;
    }
    PyCodeObject *code = PyFrame_GetCode(frame);
    code_info *ci = info_of(code);
    if (ci)
        look_at_line(frame, code, ci);
    Py_DECREF(code);
}

static void
on_line(PyFrameObject *frame, PyCodeObject *code, code_info *ci)
{
    uint64_t s = g_step++;
    g_pos = s;
    g_raise_k = 0;
    if (g_armed) {
        /* the raise the target names did not come: replay is not what it was */
        g_armed = 0;
        stop_here(frame, "missed", NULL, 0, NULL);
        return;
    }
    if ((s & TICK_MASK) == 0) {
        g_at_tick = 1;
        int pause = rt_ckpt_tick(g_run.ckpt_ns);
        g_at_tick = 0;
        if (pause) {            /* a scan too: the controller makes it the current stop */
            stop_here(frame, "pause", NULL, 0, NULL);
            return;
        }
    }
    if (s == g_run.stop_at) {
        if (g_run.stop_k == 0) {
            stop_here(frame, g_run.scan != SCAN_NONE ? "scan" : "target", NULL, 0, NULL);
            return;
        }
        g_armed = 1;
    }
    if (g_checks)
        look_at_line(frame, code, ci);
}

static void
on_call(PyFrameObject *frame)
{
    dthread *th = thread_here();
    if (th)
        push(th, frame);
}

/* A raise is new to the program when no counted frame lies below this one in
 * its traceback: raised here, or by C or Retrace code called from here. A
 * raise propagating from a counted callee, or raised again, is not. */
static int
new_raise(PyFrameObject *frame, PyObject *tb)
{
    if (!PyTraceBack_Check(tb))
        return 1;
    PyTracebackObject *t = (PyTracebackObject *)tb;
    if (t->tb_frame != frame)
        return 1;
    for (t = t->tb_next; t; t = t->tb_next) {
        PyCodeObject *code = PyFrame_GetCode(t->tb_frame);
        code_info *ci = info_of(code);
        Py_DECREF(code);
        if (ci && !ci->skip)
            return 0;
    }
    return 1;
}

static void
on_exception(PyFrameObject *frame, PyObject *arg)
{
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) != 3)
        return;
    PyObject *exc = PyTuple_GET_ITEM(arg, 1);
    if (!new_raise(frame, PyTuple_GET_ITEM(arg, 2)))
        return;
    dthread *th = thread_here();
    uint64_t tid = th ? th->tid : 0;
    g_raise_k++;
    g_ring[g_ring_next % RING].exc = exc;
    g_ring[g_ring_next % RING].step = g_pos;
    g_ring[g_ring_next % RING].k = g_raise_k;
    g_ring[g_ring_next % RING].tid = tid;
    g_ring_next++;
    g_last_raise.set = 1;
    g_last_raise.step = g_pos;
    g_last_raise.k = g_raise_k;
    g_last_raise.tid = tid;
    if (!g_diverged && g_divergence_type && PyObject_TypeCheck(exc, (PyTypeObject *)g_divergence_type)) {
        g_diverged = 1;
        stop_here(frame, "divergence", NULL, 0, exc);
        return;
    }
    if (g_armed && g_raise_k == g_run.stop_k) {
        g_armed = 0;
        stop_here(frame, g_run.scan != SCAN_NONE ? "scan" : "target", NULL, 0, exc);
        return;
    }
    look_at_raise(frame, exc);
}

static int
trace(PyObject *Py_UNUSED(obj), PyFrameObject *frame, int what, PyObject *arg)
{
    if (!g_active)
        return 0;
    if (what == PyTrace_RETURN) {
        if (t_dbg && t_dbg->depth)
            pop(t_dbg, frame);
        return 0;
    }
    if (what != PyTrace_LINE && what != PyTrace_CALL && what != PyTrace_EXCEPTION)
        return 0;
    PyCodeObject *code = PyFrame_GetCode(frame);
    code_info *ci = info_of(code);
    if (ci && !ci->skip && !rt_thread_suspended()) {
        if (what == PyTrace_LINE)
            on_line(frame, code, ci);
        else if (what == PyTrace_CALL)
            on_call(frame);
        else
            on_exception(frame, arg);
    }
    Py_DECREF(code);
    return 0;
}

/* ---- commands from the controller ------------------------------------------ */

static int
bad(char *err, size_t errlen, const char *what, const char *line)
{
    snprintf(err, errlen, "%s: %.200s", what, line);
    return -1;
}

/* Copy text into the pool, undoing the controller's escapes (\\ and \n). */
static int
pool_text(const char *text)
{
    size_t start = g_pool_len;
    for (const char *p = text; *p; p++) {
        char c = *p;
        if (c == '\\' && (p[1] == 'n' || p[1] == '\\'))
            c = *++p == 'n' ? '\n' : '\\';
        if (g_pool_len + 2 > POOL_SIZE)
            return -1;
        g_pool[g_pool_len++] = c;
    }
    g_pool[g_pool_len++] = '\0';
    return (int)start;
}

static breakpoint *
find_bp(int id)
{
    for (int i = 0; i < g_nbps; i++)
        if (g_bps[i].id == id)
            return &g_bps[i];
    return NULL;
}

static void
clear_table(uint64_t gen)
{
    for (int f = 0; f < g_nfiles; f++)
        memset(g_lines[f], 0, sizeof g_lines[f]);
    g_nfiles = g_nbps = g_nfuncs = 0;
    g_pool_len = 0;
    memset(g_npaths, 0, sizeof g_npaths);
    g_bp_gen = gen;
}

static int
configure_run(const char *args, char *err, size_t errlen)
{
    run_spec r = {0};
    long long stop_at;
    unsigned long long stop_k, tid, depth, start, ckpt_ns;
    if (sscanf(args, "%lld %llu %d %d %llu %llu %llu %d %d %d %llu", &stop_at, &stop_k, &r.rule,
               &r.scan, &tid, &depth, &start, &r.breakpoints, &r.exceptions, &r.logs,
               &ckpt_ns) != 11)
        return bad(err, errlen, "bad run command", args);
    r.stop_at = stop_at < 0 ? NONE : (uint64_t)stop_at;
    r.stop_k = stop_k;
    r.tid = tid;
    r.depth = depth;
    r.start = start;
    r.ckpt_ns = ckpt_ns;
    if (r.stop_at != NONE && !g_ended && g_step > 0 &&
        (r.stop_at < g_pos ||
         (r.stop_at == g_pos && r.stop_k <= g_raise_k && !(g_at_tick && r.stop_k == 0))))
        return bad(err, errlen, "the target is not ahead of this process", args);
    g_run = r;
    g_armed = r.stop_at == g_pos && g_step > 0 && r.stop_k > g_raise_k;
    g_checks = r.rule != RULE_NONE || r.scan != SCAN_NONE || (r.breakpoints && g_nbps);
    memset(&g_match, 0, sizeof g_match);
    return 1;
}

int
rt_stepper_configure(char *line, char *err, size_t errlen)
{
    int id, idx, lineno, hit_op, n = 0;
    long hit_n, hits;
    unsigned long long gen;
    if (strncmp(line, "run ", 4) == 0)
        return configure_run(line + 4, err, errlen);
    if (strcmp(line, "again") == 0) {
        if (!g_stop_frame)
            return bad(err, errlen, "no stop to report again", line);
        rt_ckpt_send(&g_msg);
        return 0;
    }
    if (strncmp(line, "lib ", 4) == 0) {
        if (g_nlibs == MAX_LIBS || strlen(line + 4) >= PATH_MAX)
            return bad(err, errlen, "too many library directories", line);
        strcpy(g_libs[g_nlibs++], line + 4);
        return 0;
    }
    if (sscanf(line, "bps %llu", &gen) == 1) {
        clear_table(gen);
        return 0;
    }
    if (sscanf(line, "file %d %n", &idx, &n) == 1 && n) {
        if (idx < 0 || idx >= MAX_FILES || idx > g_nfiles || g_npaths[idx] >= MAX_PATHS)
            return bad(err, errlen, "too many breakpoint files", line);
        int off = pool_text(line + n);
        if (off < 0)
            return bad(err, errlen, "breakpoint table too large", line);
        g_paths[idx][g_npaths[idx]++] = off;
        if (idx == g_nfiles)
            g_nfiles++;
        return 0;
    }
    if (sscanf(line, "line %d %d %d %d %ld %ld", &id, &idx, &lineno, &hit_op, &hit_n, &hits) == 6) {
        if (g_nbps >= MAX_BPS || idx < 0 || idx >= g_nfiles || lineno <= 0)
            return bad(err, errlen, "bad line breakpoint", line);
        g_bps[g_nbps++] = (breakpoint){id, idx, lineno, -1, -1, -1, hit_op, hit_n, hits};
        if (lineno < MAX_LINE)
            g_lines[idx][lineno >> 3] |= (uint8_t)(1u << (lineno & 7));
        return 0;
    }
    if (sscanf(line, "func %d %n", &id, &n) == 1 && n) {
        int off = pool_text(line + n);
        if (g_nbps >= MAX_BPS || off < 0)
            return bad(err, errlen, "bad function breakpoint", line);
        g_bps[g_nbps++] = (breakpoint){id, -1, 0, off, -1, -1, HIT_ALWAYS, 0, 0};
        g_nfuncs++;
        return 0;
    }
    int is_cond = strncmp(line, "cond ", 5) == 0;
    if ((is_cond || strncmp(line, "log ", 4) == 0) &&
        sscanf(line + (is_cond ? 5 : 4), "%d %n", &id, &n) == 1 && n) {
        breakpoint *bp = find_bp(id);
        int off = pool_text(line + (is_cond ? 5 : 4) + n);
        if (!bp || off < 0)
            return bad(err, errlen, "bad breakpoint text", line);
        *(is_cond ? &bp->cond : &bp->log) = off;
        return 0;
    }
    return bad(err, errlen, "unknown command", line);
}

/* ---- Python functions -------------------------------------------------------- */

/* debug_start(own_dir): count from the next line on; the first line event
 * stops (the entry). Code under own_dir is never counted. */
static PyObject *
debug_start(PyObject *Py_UNUSED(m), PyObject *arg)
{
    if (rt_utf8_into(arg, g_own_dir, sizeof g_own_dir) < 0)
        return PyErr_Format(PyExc_ValueError, "bad directory");
    if (g_extra < 0 && (g_extra = REQUEST_CODE_EXTRA(code_info_free)) < 0)
        return PyErr_Format(PyExc_RuntimeError, "no code extra slot left");
    if (!g_divergence_type) {
        PyObject *errors = PyImport_ImportModule("retrace.errors");
        if (!errors)
            return NULL;
        g_divergence_type = PyObject_GetAttrString(errors, "ReplayDivergence");
        Py_DECREF(errors);
        if (!g_divergence_type)
            return NULL;
    }
    if (rt_buf_reserve(&g_msg, 65536) < 0)
        return PyErr_NoMemory();
    if (!g_settrace && replace_settrace() < 0)
        return NULL;
    g_run = (run_spec){.stop_at = 0};
    g_active = 1;
    dthread *th = thread_here();
    if (!th)
        return PyErr_Format(PyExc_RuntimeError, "the replay has not numbered this thread");
    install_here(th);
    Py_RETURN_NONE;
}

/* debug_finish() -> {"total": line events, "last": (step, k, tid) of the
 * last raise or None, "scan": the last match of a scan that ran into the end
 * ({"match_step", "match_k", "match_tid", "match_cause", "match_bps"}) or None} */
static PyObject *
debug_finish(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    g_active = 0;
    g_ended = 1;
    PyEval_SetTrace(NULL, NULL);
    PyObject *last = g_last_raise.set
        ? Py_BuildValue("(KKK)", (unsigned long long)g_last_raise.step,
                        (unsigned long long)g_last_raise.k, (unsigned long long)g_last_raise.tid)
        : Py_NewRef(Py_None);
    PyObject *scan = Py_NewRef(Py_None);
    if (last && g_run.scan != SCAN_NONE && g_match.found) {
        PyObject *ids = PyList_New(g_match.nids);
        for (int i = 0; ids && i < g_match.nids; i++)
            PyList_SET_ITEM(ids, i, PyLong_FromLong(g_match.ids[i]));
        Py_SETREF(scan, ids ? Py_BuildValue("{sKsKsKsssN}", "match_step",
                                            (unsigned long long)g_match.step, "match_k",
                                            (unsigned long long)g_match.k, "match_tid",
                                            (unsigned long long)g_match.tid, "match_cause",
                                            g_match.cause, "match_bps", ids) : NULL);
    }
    PyObject *hits = PyList_New(0);
    for (int i = 0; hits && i < g_nbps; i++) {
        PyObject *id = PyLong_FromLong(g_bps[i].id), *n = PyLong_FromLong(g_bps[i].hits);
        if (g_bps[i].hit_op != HIT_ALWAYS && (!id || !n || PyList_Append(hits, id) < 0 ||
                                               PyList_Append(hits, n) < 0))
            Py_CLEAR(hits);
        Py_XDECREF(id);
        Py_XDECREF(n);
    }
    PyObject *res = last && scan && hits
        ? Py_BuildValue("{sKsOsOsO}", "total", (unsigned long long)g_step, "last", last, "scan",
                        scan, "hits", hits)
        : NULL;
    Py_XDECREF(last);
    Py_XDECREF(scan);
    Py_XDECREF(hits);
    return res;
}

/* debug_raise_position(exc) -> (step, k, tid) where the program raised exc
 * (still alive, so no other object took its address since), or None. */
static PyObject *
debug_raise_position(PyObject *Py_UNUSED(m), PyObject *exc)
{
    unsigned n = g_ring_next < RING ? g_ring_next : RING;
    for (unsigned i = 1; i <= n; i++) {
        unsigned at = (g_ring_next - i) % RING;
        if (g_ring[at].exc == exc)
            return Py_BuildValue("(KKK)", (unsigned long long)g_ring[at].step,
                                 (unsigned long long)g_ring[at].k,
                                 (unsigned long long)g_ring[at].tid);
    }
    Py_RETURN_NONE;
}

/* debug_state() -> where the process is paused, for an inspector (in a fork):
 * {"frame", "exception", "tid", "threads": [(tid, ident, [(frame, start)])]} */
static PyObject *
debug_state(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    PyObject *threads = PyList_New(0);
    if (!threads)
        return NULL;
    for (dthread *th = g_threads; th; th = th->next) {
        PyObject *stack = PyList_New(0);
        PyObject *item = stack ? Py_BuildValue("(KkO)", (unsigned long long)th->tid, th->ident,
                                               stack) : NULL;
        for (size_t i = 0; item && i < th->depth; i++) {
            PyObject *pair = Py_BuildValue("(OK)", (PyObject *)th->stack[i].frame,
                                           (unsigned long long)th->stack[i].start);
            if (!pair || PyList_Append(stack, pair) < 0)
                Py_CLEAR(item);
            Py_XDECREF(pair);
        }
        Py_XDECREF(stack);
        if (!item || PyList_Append(threads, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(threads);
            return NULL;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("{sOsOsKsN}", "frame", g_stop_frame ? (PyObject *)g_stop_frame : Py_None,
                         "exception", g_stop_exc ? g_stop_exc : Py_None, "tid",
                         (unsigned long long)(g_stop_thread ? g_stop_thread->tid : 0), "threads",
                         threads);
}

/* debug_counted(code) -> whether the code's lines are counted */
static PyObject *
debug_counted(PyObject *Py_UNUSED(m), PyObject *code)
{
    if (!PyCode_Check(code))
        return PyErr_Format(PyExc_TypeError, "a code object is required");
    return PyBool_FromLong(!skipped_file(((PyCodeObject *)code)->co_filename));
}

static PyMethodDef stepper_methods[] = {
    {"debug_start", debug_start, METH_O, "debug_start(own_dir): count lines; stop at the first"},
    {"debug_finish", debug_finish, METH_NOARGS,
     "the program ended: -> (line events, last raise position or None)"},
    {"debug_raise_position", debug_raise_position, METH_O,
     "debug_raise_position(exc) -> (step, k, tid) where exc was raised, or None"},
    {"debug_state", debug_state, METH_NOARGS, "where the process is paused (for inspectors)"},
    {"debug_counted", debug_counted, METH_O, "debug_counted(code) -> whether its lines count"},
    {NULL, NULL, 0, NULL},
};

int
rt_stepper_init(PyObject *module)
{
    return PyModule_AddFunctions(module, stepper_methods);
}
