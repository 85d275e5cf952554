/* retrace.h - declarations shared by the C components of retrace._engine.
 *
 *   buf.c       growable byte buffers and bounds-checked cursors (varints)
 *   codec.c     the tagged binary value encoding (docs/trace-format.md)
 *   stream.c    chunked trace file: background writer thread and mmap reader
 *   boundary.c  boundary wrappers, record/replay of calls, divergence checks
 *   handles.c   external objects (handles, stand-ins) and callbacks into the program
 *   demux.c     replay thread demultiplexer: one thread runs at a time
 *   stepper.c   the debugger's position counter and stop rules (a C trace function)
 *   checkpoint.c  a replay process under the debugger: protocol, paused copies (forks)
 *   engine.c    the Python module: exported functions and module state
 */
#ifndef RETRACE_H
#define RETRACE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- buf.c ------------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} rt_buf;

/* All rt_buf_* return 0 on success, -1 when memory is exhausted (no Python
 * exception is set: these run on the writer thread too). The writers are
 * inline: every recorded event makes a dozen of them, and a call costs more
 * than the write when there is room (callgrind: bench/percall.py). */
int rt_buf_grow(rt_buf *b, size_t extra);           /* room for `extra` more bytes */
void rt_buf_free(rt_buf *b);

static inline int
rt_buf_reserve(rt_buf *b, size_t extra)
{
    return extra <= b->cap - b->len ? 0 : rt_buf_grow(b, extra);
}

static inline int
rt_buf_put(rt_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;   /* p may be NULL for empty data; memcpy must not see it */
    if (rt_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int
rt_buf_put_u8(rt_buf *b, uint8_t v)
{
    if (rt_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = v;
    return 0;
}

/* little endian */
static inline int
rt_buf_put_uint(rt_buf *b, uint64_t v, int nbytes)
{
    if (rt_buf_reserve(b, (size_t)nbytes) < 0)
        return -1;
    for (int i = 0; i < nbytes; i++)
        b->data[b->len++] = (uint8_t)(v >> (8 * i));
    return 0;
}

static inline int
rt_buf_put_u32(rt_buf *b, uint32_t v)
{
    return rt_buf_put_uint(b, v, 4);
}

static inline int
rt_buf_put_u64(rt_buf *b, uint64_t v)
{
    return rt_buf_put_uint(b, v, 8);
}

/* LEB128 */
static inline int
rt_buf_put_varint(rt_buf *b, uint64_t v)
{
    if (rt_buf_reserve(b, 10) < 0)
        return -1;
    uint8_t *p = b->data + b->len;
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    b->len = (size_t)(p - b->data);
    return 0;
}

/* zigzag + LEB128: 0,-1,1,-2 -> 0,1,2,3 keeps small negative numbers short.
 * Written without shifting a negative value, which C leaves undefined. */
static inline int
rt_buf_put_svarint(rt_buf *b, int64_t v)
{
    uint64_t u = (uint64_t)v << 1;
    return rt_buf_put_varint(b, v < 0 ? ~u : u);
}

/* varint length + bytes */
static inline int
rt_buf_put_str(rt_buf *b, const char *s, size_t n)
{
    return rt_buf_put_varint(b, n) < 0 ? -1 : rt_buf_put(b, s, n);
}

/* len = 0, keeps the memory */
static inline void
rt_buf_clear(rt_buf *b)
{
    b->len = 0;
}

/* A read cursor over bytes that may be corrupt. Every getter returns 0 on
 * success and -1 when the data ends early or is malformed; it never reads
 * past `end`. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rt_cursor;

int rt_cur_u8(rt_cursor *c, uint8_t *v);
int rt_cur_u32(rt_cursor *c, uint32_t *v);
int rt_cur_u64(rt_cursor *c, uint64_t *v);
int rt_cur_varint(rt_cursor *c, uint64_t *v);
int rt_cur_svarint(rt_cursor *c, int64_t *v);
int rt_cur_bytes(rt_cursor *c, size_t n, const uint8_t **out);
int rt_cur_str(rt_cursor *c, const uint8_t **s, size_t *n); /* varint len + bytes */

uint32_t rt_get_u32(const uint8_t *p);
uint64_t rt_get_u64(const uint8_t *p);

/* ---- codec.c ---------------------------------------------------------- */

/* Nesting deeper than this is encoded as an opaque value (and rejected
 * when decoding), so a hostile trace cannot exhaust the C stack. */
#define RT_CODEC_MAX_DEPTH 200

/* Called once from module init: imports the datetime C API. */
int rt_codec_init(void);

/* Append the encoding of `v` to `out`. Values the codec has no tag for are
 * encoded as OPAQUE (type name + repr), so recording never fails because of
 * an unusual value. Returns -1 with a Python exception set only when memory
 * runs out or repr() itself raises. */
int rt_encode(rt_buf *out, PyObject *v);

/* The objects of one external call that values may refer to ('R'): its
 * arguments and what its callbacks returned, in order. `list` owns them;
 * the table finds an object's first index. (handles.c) */
typedef struct {
    PyObject *list;
    PyObject **keys;
    Py_ssize_t *index;
    size_t cap;
} rt_refs;
int rt_refs_add(rt_refs *r, PyObject *o);              /* -1: out of memory (set) */
Py_ssize_t rt_refs_find(const rt_refs *r, PyObject *o); /* -1: not there */
void rt_refs_free(rt_refs *r);

/* rt_encode where an object in `refs` (may be NULL) is written as a
 * reference to its index ('R'). */
int rt_encode_refs(rt_buf *out, PyObject *v, const rt_refs *refs);
/* CRC-32 of v's encoding (opaque values by type, no handles given), using
 * tmp as scratch. */
int rt_digest(PyObject *v, rt_buf *tmp, uint32_t *crc);

/* Decode one value at the cursor. Returns a new reference, or NULL with
 * retrace.TraceCorrupt (rt_TraceCorrupt) set for malformed data. Decoding
 * never imports a module and never runs code named by the trace: types are
 * looked up among modules already in sys.modules (plus a fixed stdlib list). */
PyObject *rt_decode(rt_cursor *in);
/* rt_decode resolving references ('R') to items of the list `refs` (may be NULL). */
PyObject *rt_decode_refs(rt_cursor *in, PyObject *refs);

/* ---- stream.c --------------------------------------------------------- */

#define RT_FILE_MAGIC "RETRACE\x01"
#define RT_FORMAT_VERSION 2
#define RT_CHUNK_MAGIC 0x4b435452u   /* "RTCK" little endian */
#define RT_CHUNK_ZLIB 1u              /* chunk flag: payload is zlib-compressed */
#define RT_FLUSH_INTERVAL_MS 100

/* Record kinds the stream layer itself knows (the others: boundary.c). */
#define RT_REC_END 'E'                /* the end of the run */
#define RT_REC_CUT 'X'                /* the recording stops here: varint reason, varint limit */

/* Why a recording was cut (the reason in an RT_REC_CUT record). */
enum {
    RT_CUT_SIZE = 1,       /* the file reached RETRACE_MAX_SIZE */
    RT_CUT_MEMORY = 2,     /* the writer fell behind: the backlog reached RETRACE_MAX_MEMORY */
    RT_CUT_FLIGHT = 3,     /* the flight recorder's memory (RETRACE_FLIGHT) is full */
    RT_CUT_INTERNAL = 4,   /* a bug inside Retrace: the recording was stopped */
};

#define RT_DEFAULT_MAX_MEMORY (64u << 20)

typedef struct {
    uint64_t max_size;     /* bytes the file may reach (0: no limit) */
    uint64_t max_memory;   /* records waiting for the writer (0: RT_DEFAULT_MAX_MEMORY) */
    int flight;            /* keep the chunks in memory, up to max_size; the file is
                            * written only by rt_writer_keep or a fatal signal */
} rt_writer_limits;

typedef struct rt_writer rt_writer;

/* Create the trace file (mode 0600, O_EXCL is not used: an existing file is
 * replaced; in flight mode the file is created later, if ever), write the
 * file header, start the background writer thread. limits may be NULL. On
 * failure returns NULL and writes a message into err. */
rt_writer *rt_writer_open(const char *path, const uint8_t *header, size_t header_len,
                          const rt_writer_limits *limits, char *err, size_t errlen);

/* Append one record (copied). Thread-safe, never blocks on I/O. Records never
 * straddle chunks. A record that would take the trace past max_size or the
 * backlog past max_memory cuts the recording instead: an RT_REC_CUT record is
 * appended, one line goes to stderr, and from then on only an RT_REC_END
 * record is accepted. Returns -1 when the record was not taken (cut, or a
 * sticky I/O error). */
int rt_writer_append(rt_writer *w, const uint8_t *rec, size_t len);

/* Cut the recording here (RT_CUT_INTERNAL): the caller reports why. */
void rt_writer_cut(rt_writer *w, int reason);

/* The recording was cut (or failed): appends are refused. Lock-free. */
int rt_writer_stopped(rt_writer *w);

/* Flight mode: write the file now (header and the chunks kept in memory) and
 * go on writing to it. 0, or -1 with a message in err. */
int rt_writer_keep(rt_writer *w, char *err, size_t errlen);

/* Describe an RT_REC_CUT record for people ("cut by RETRACE_MAX_SIZE (...)"). */
void rt_describe_cut(const uint8_t *rec, size_t len, char *out, size_t outlen);

/* Write everything appended so far and wait until it reached the file. */
int rt_writer_flush(rt_writer *w);

/* Flush, stop the thread, close the file, free. Returns 0, or -1 if any
 * I/O error happened during the recording (message in err). A flight
 * recording that was never kept is discarded: no file is created. */
int rt_writer_close(rt_writer *w, char *err, size_t errlen);

/* The first I/O error, or NULL. */
const char *rt_writer_error(rt_writer *w);

/* While recording: on SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM,
 * SIGHUP or SIGQUIT (those still at SIG_DFL), write the records not yet
 * written, then die from the signal as before. One writer at a time;
 * rt_writer_close uninstalls them. */
void rt_writer_install_fatal_handlers(rt_writer *w);
void rt_writer_uninstall_fatal_handlers(rt_writer *w);

typedef struct rt_reader rt_reader;

/* Open and validate the file header. NULL + message on failure. */
rt_reader *rt_reader_open(const char *path, char *err, size_t errlen);
/* The same over bytes in memory, which must outlive the reader (fuzzing). */
rt_reader *rt_reader_open_bytes(const uint8_t *data, size_t size, char *err, size_t errlen);
const uint8_t *rt_reader_header(rt_reader *r, size_t *len);

/* Next record: 1 and (*rec, *len) valid until the next call; 0 at the end of
 * the readable data; -1 on corruption (message with the file offset in
 * rt_reader_error). A chunk cut short by the end of the file (a recording
 * killed mid-write) ends the data: 0 is returned and rt_reader_truncated()
 * reports the offset. */
int rt_reader_next(rt_reader *r, const uint8_t **rec, size_t *len);
const char *rt_reader_error(rt_reader *r);
/* Offset of the incomplete chunk at the end of the file, or -1. */
int64_t rt_reader_truncated(rt_reader *r);
uint64_t rt_reader_file_size(rt_reader *r);
uint64_t rt_reader_chunk_count(rt_reader *r);
void rt_reader_close(rt_reader *r);

/* Exceptions of class cls keep the dict fn(exc) returns too (their state
 * holds it; decoding puts it into __dict__). */
int rt_codec_exception_extras(PyObject *cls, PyObject *fn);

/* Adds the Opaque type (decoded unencodable values) to the module. */
int rt_codec_add_types(PyObject *module);

/* ---- boundary.c ------------------------------------------------------- */

/* Adds Boundary, BoundaryMethod and the record/replay functions. */
int rt_boundary_init(PyObject *module);

/* The thread's boundary goes off (+1) or back on (-1) around Retrace's work. */
void rt_boundary_suspend(int delta);

/* v as the recording's redaction patterns mask it (a new reference). */
PyObject *rt_boundary_redact(PyObject *v);
/* Stop the replay here, from the calling thread (always returns NULL). */
PyObject *rt_boundary_diverge(const char *reason, PyObject *expected, PyObject *actual);

/* A Callback was called: recorded inside an external call, else a plain call. */
PyObject *rt_boundary_callback(uint64_t cbid, PyObject *func, PyObject *const *args,
                               size_t nargsf, PyObject *kwnames);

/* ---- handles.c -------------------------------------------------------- */

/* Adds Callback, handle_type, handle_of and set_member to the module. */
int rt_handles_init(PyObject *module);
/* A recording or replay starts: handles and callbacks are numbered anew. */
void rt_handles_reset(void);
/* Whether v is an instance of a registered type of external objects. */
int rt_handle_is_external(PyObject *v);
/* v's handle; a new one (and *is_new set) on first sight. -1: out of memory. */
int rt_handle_get(PyObject *v, uint64_t *handle, int *is_new);
/* Replay: a stand-in of class cls for new handle `handle`. New reference. */
PyObject *rt_handle_new_standin(PyObject *cls, uint64_t handle);
/* Replay: the object of `handle` (a fresh stand-in if it died). New reference. */
PyObject *rt_handle_find(uint64_t handle);
/* The function of callback number cbid (borrowed), or NULL. */
PyObject *rt_callback_func(uint64_t cbid);
/* A statement call returned `result`: what its record holds, (result, the
 * statement text, the parameters' CRC-32, the members' values). */
PyObject *rt_statement_record(PyObject *result, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames, PyObject *members, rt_buf *tmp);
/* Replay of a statement call from its record: checks the statement and its
 * parameters (a divergence if they differ), stores the members; *result is
 * the recorded result (new reference). 0, or -1 with an error set. */
int rt_statement_replay(PyObject *name, PyObject *recorded, PyObject *const *args,
                        size_t nargsf, PyObject *kwnames, PyObject *members, rt_buf *tmp,
                        PyObject **result);
/* Whether members is a tuple of object member descriptors. */
int rt_statement_members_check(PyObject *members);

/* ---- demux.c ---------------------------------------------------------- */

#define RT_TURN_TIMEOUT_S 30

/* Replay begins: thread 0 is live and holds the baton. */
void rt_demux_start(void);
/* Thread `tid` is about to start (called by its parent): it is live. */
int rt_demux_add(uint64_t tid);
/* Thread `tid` made its last event; if it holds the baton, `next` gets it. */
void rt_demux_remove(uint64_t tid, uint64_t next);
/* An event was consumed (the replay makes progress). */
void rt_demux_progress(void);
/* The replay diverged: every thread waiting for its turn wakes up, and no
 * thread waits again (each raises the divergence instead). */
void rt_demux_abort(void);
/* The next record belongs to `owner`. Returns 1 when `me` holds the baton and
 * owns the record (go on); otherwise hands the baton on if `me` held it, waits
 * without the GIL until it comes back and returns 0 (look at the next record
 * again); -1 with a message when that can never happen or takes too long. */
int rt_demux_turn(uint64_t me, uint64_t owner, char *err, size_t errlen);

/* ---- boundary.c, for the debugger ------------------------------------- */

uint64_t rt_event_index(void);       /* boundary events consumed so far */
int rt_thread_suspended(void);       /* the boundary is switched off for this thread */
int64_t rt_thread_number(void);      /* this thread's trace number, or -1 */

/* ---- stepper.c -------------------------------------------------------- */

/* Adds the debug_* functions of the replay process to the module. */
int rt_stepper_init(PyObject *module);
/* boundary.c: the calling thread got its trace number (trace it from now on),
 * or made its last event. */
void rt_stepper_thread_numbered(void);
void rt_stepper_thread_left(void);
/* One command line of the controller ("run ...", "bps ...", "line ...").
 * 1: resume running, 0: done, -1: bad command (message in err). */
int rt_stepper_configure(char *line, char *err, size_t errlen);
/* The position as JSON members (step, k, event, ended, forkable). */
void rt_stepper_describe(rt_buf *json);
/* The current line event (after the end: the number of line events). */
uint64_t rt_stepper_step(void);
/* Only this thread exists: a fork of the process can go on replaying. */
int rt_stepper_forkable(void);

/* ---- checkpoint.c ----------------------------------------------------- */

int rt_ckpt_init(PyObject *module);
/* Every 1024 line events while running: fork a checkpoint when due (every
 * ckpt_ns of running, if forkable), read a pause request (returns 1). */
int rt_ckpt_tick(uint64_t ckpt_ns);
/* Send the stop (a JSON object) and serve the controller until it asks to
 * run again (the run spec is then set). */
void rt_ckpt_pause(rt_buf *stop);
/* Test a breakpoint in a throwaway fork: its condition (may be NULL) and
 * log message (may be NULL) evaluated in frame. 1 true, 0 false, -1 error;
 * the message or error text goes to out. */
int rt_ckpt_test(PyObject *frame, const char *cond, const char *log, char *out, size_t outlen);
/* Send a JSON message to the controller. */
void rt_ckpt_send(rt_buf *json);
/* Send a logpoint's message to the controller. */
void rt_ckpt_log(int bp_id, const char *text);

/* JSON members for the protocol; strings are escaped, str objects are
 * encoded without allocating. */
void rt_json_open(rt_buf *b);
void rt_json_close(rt_buf *b);
void rt_json_int(rt_buf *b, const char *key, long long v);
void rt_json_str(rt_buf *b, const char *key, const char *s);
void rt_json_unicode(rt_buf *b, const char *key, PyObject *s);
void rt_json_key(rt_buf *b, const char *key);   /* then raw text with rt_buf_put */
/* The UTF-8 of a str into buf (NUL-terminated) without allocating; the
 * length, or -1 if it is not a str or does not fit. */
Py_ssize_t rt_utf8_into(PyObject *s, char *buf, size_t cap);

/* ---- engine.c --------------------------------------------------------- */

extern PyObject *rt_TraceCorrupt;   /* retrace.TraceCorrupt, set by engine init */

#endif
