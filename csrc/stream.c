/* stream.c - the chunked trace file (layout: docs/trace-format-stream.md).
 *
 * Owns the file header, the chunk framing, compression and checksums.
 *
 * Writer: application threads copy records into the active chunk buffer
 * under a short mutex; one background pthread hands the buffer over
 * (double buffering), compresses it and writes it, so recording never waits
 * for the disk. The thread never touches the Python API.
 *
 * Limits: a record that would take the file past max_size, or the backlog
 * of records waiting for the thread past max_memory, cuts the recording: a
 * cut record ends the trace, one line goes to stderr, and only the end record
 * is taken after it. The application is never blocked and memory stays
 * bounded. Flight mode keeps the chunks in memory (bounded by max_size) and
 * writes the file only when asked to (rt_writer_keep) or on a fatal signal.
 *
 * Fatal signals: while recording, a handler writes what is still pending
 * before the process dies (see "fatal signals" below).
 *
 * Reader: maps the whole file and walks it chunk by chunk, telling a
 * recording that was cut short (truncation: the readable prefix is returned)
 * from damage (corruption: an error naming the file offset).
 */
#include "retrace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FILE_HEADER_FIXED 16          /* magic, version, header_len */
#define CHUNK_HEADER_LEN 36
#define CHUNK_TARGET (1u << 20)       /* hand the active chunk over at 1 MiB */
#define MAX_RAW_LEN (1u << 30)        /* reader: a larger chunk is corrupt */
#define VARINT_MAX 10
#define CUT_RECORD_MAX (1 + 2 * VARINT_MAX)
/* Room kept below max_size for the cut record and its chunk. */
#define CUT_RESERVE (CHUNK_HEADER_LEN + VARINT_MAX + CUT_RECORD_MAX)
/* Tests only: the writer thread sleeps this long before each chunk, so that
 * it falls behind (docs/security.md). */
#define TEST_DELAY_ENV "RETRACE_TEST_WRITER_DELAY_MS"

static void
put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* write(2) all of p, retrying after EINTR and short writes. */
static int
write_all(int fd, const void *p, size_t n)
{
    const uint8_t *s = p;
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- writer ----------------------------------------------------------- */

/* io_state: whether the writer thread is writing a chunk outside the mutex.
 * Set to CHUNK_WRITING under mu (so it cannot change while a signal handler
 * holds mu), cleared without it. A failed write leaves CHUNK_BROKEN: the file
 * may end in a partial chunk, after which nothing may be written. */
enum { CHUNK_IDLE, CHUNK_WRITING, CHUNK_BROKEN };

struct rt_writer {
    int fd;
    char *path;
    pid_t owner;              /* the process in which the thread runs */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* to the thread: work to do (CLOCK_MONOTONIC) */
    pthread_cond_t flushed;   /* from the thread: flush_done advanced */

    uint64_t max_size;        /* 0: none */
    uint64_t max_memory;
    int flight;
    long test_delay_ms;

    /* Guarded by mu. */
    rt_buf active;            /* records appended since the last hand-over */
    uint32_t active_count;
    uint64_t next_index;      /* global index of the first record in active */
    uint64_t flush_req;       /* flush requests made ... */
    uint64_t flush_done;      /* ... and completed */
    uint64_t file_bytes;      /* in the file (or the flight image) so far */
    uint64_t inflight;        /* raw bytes of the chunk being written */
    int cut;                  /* RT_CUT_*: only the end record goes in now */
    int stop;
    int failed;               /* sticky; error[] is final once this is set */
    atomic_int stopped;       /* cut or failed, for lock-free checks */

    /* Flight mode: fd is -1 until the file is kept; until then the writer
     * thread appends the chunks to image, which the file will start with. */
    rt_buf head;              /* the file header */
    rt_buf image;

    /* For the fatal signal handler. */
    atomic_int io_state;      /* CHUNK_* */
    atomic_int appending;     /* rt_writer_append holds mu ... */
    _Atomic(pthread_t) appender;  /* ... on this thread */
    atomic_int deferred_signal;   /* to die from once that append is done */

    /* Owned by the writer thread (and by close after the join). */
    rt_buf spare;             /* the chunk being written */
    rt_buf zbuf;              /* its compressed form */
    char error[512];
};

/* Describe an I/O error and announce it with one line on stderr. The caller
 * then sets w->failed under mu, which publishes error[] to other threads. */
static void
describe_failure(rt_writer *w, const char *what, int errnum)
{
    char ebuf[128];
    snprintf(w->error, sizeof w->error, "%s %s failed: %s",
             what, w->path, strerror_r(errnum, ebuf, sizeof ebuf));
    char line[sizeof w->error + 100];
    int n = snprintf(line, sizeof line, "retrace: recording stopped: %s; "
                     "the trace keeps everything before this point\n", w->error);
    /* Nothing useful can be done if stderr itself fails. */
    ssize_t rc = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)rc;
}

/* Fill the chunk header for `payload` as stored. Pure computation: also
 * used by the fatal signal handler. */
static void
put_chunk_header(uint8_t h[CHUNK_HEADER_LEN], uint32_t flags, const uint8_t *payload,
                 size_t stored_len, size_t raw_len, uint32_t count, uint64_t first)
{
    put_le32(h, RT_CHUNK_MAGIC);
    put_le32(h + 4, flags);
    put_le32(h + 8, (uint32_t)stored_len);
    put_le32(h + 12, (uint32_t)raw_len);
    put_le32(h + 16, count);
    put_le64(h + 20, first);
    put_le32(h + 28, (uint32_t)crc32(0, payload, (uInt)stored_len));
    put_le32(h + 32, (uint32_t)crc32(0, h, 32));
}

/* Write to the file, or in flight mode keep in memory. */
static int
emit(rt_writer *w, const void *p, size_t n)
{
    if (w->fd >= 0)
        return write_all(w->fd, p, n);
    if (rt_buf_put(&w->image, p, n) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Compress w->spare (best effort) and write it as one chunk; *size is what
 * the chunk takes in the file. Runs on the writer thread without the mutex. */
static int
write_chunk(rt_writer *w, uint32_t count, uint64_t first, size_t *size)
{
    const uint8_t *payload = w->spare.data;
    size_t raw_len = w->spare.len;
    size_t stored_len = raw_len;
    uint32_t flags = 0;

    /* Out of memory, or data that does not shrink: store it as is. */
    uLong bound = compressBound(raw_len);
    rt_buf_clear(&w->zbuf);
    if (rt_buf_reserve(&w->zbuf, bound) == 0) {
        uLongf zlen = bound;
        if (compress2(w->zbuf.data, &zlen, payload, raw_len, 1) == Z_OK && zlen < raw_len) {
            payload = w->zbuf.data;
            stored_len = zlen;
            flags = RT_CHUNK_ZLIB;
        }
    }

    uint8_t h[CHUNK_HEADER_LEN];
    put_chunk_header(h, flags, payload, stored_len, raw_len, count, first);
    *size = CHUNK_HEADER_LEN + stored_len;
    if (emit(w, h, sizeof h) < 0 || emit(w, payload, stored_len) < 0)
        return -1;
    return 0;
}

/* Sleep about ms milliseconds. nanosleep is async-signal-safe. */
static void
nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *
writer_main(void *arg)
{
    rt_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += RT_FLUSH_INTERVAL_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!w->stop && w->flush_done == w->flush_req && w->active.len < CHUNK_TARGET
               && pthread_cond_timedwait(&w->wake, &w->mu, &deadline) != ETIMEDOUT)
            ;

        /* Everything appended before these requests is in active now. */
        uint64_t req = w->flush_req;
        int stop = w->stop;
        if (w->active_count > 0 && !w->failed) {
            rt_buf full = w->active;
            uint32_t count = w->active_count;
            uint64_t first = w->next_index;
            w->active = w->spare;
            w->spare = full;
            w->active_count = 0;
            w->next_index += count;
            w->inflight = full.len;
            atomic_store(&w->io_state, CHUNK_WRITING);
            pthread_mutex_unlock(&w->mu);

            if (w->test_delay_ms > 0)
                nap_ms(w->test_delay_ms);
            size_t size = 0;
            int rc = write_chunk(w, count, first, &size);
            if (rc < 0)
                describe_failure(w, w->fd >= 0 ? "writing" : "keeping in memory", errno);
            atomic_store(&w->io_state, rc < 0 ? CHUNK_BROKEN : CHUNK_IDLE);
            rt_buf_clear(&w->spare);
            /* A burst of large records must not pin three buffers of up
             * to max_memory for the rest of the run. */
            if (w->spare.cap > 4 * CHUNK_TARGET) {
                rt_buf_free(&w->spare);
                rt_buf_free(&w->zbuf);
            }

            pthread_mutex_lock(&w->mu);
            w->file_bytes += size;
            w->inflight = 0;
            if (rc < 0) {
                /* From now on appends are refused; drop what is pending. */
                w->failed = 1;
                atomic_store(&w->stopped, 1);
                rt_buf_free(&w->active);
                w->active_count = 0;
            }
        }
        w->flush_done = req;
        pthread_cond_broadcast(&w->flushed);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void
writer_free(rt_writer *w)
{
    rt_buf_free(&w->active);
    rt_buf_free(&w->spare);
    rt_buf_free(&w->zbuf);
    rt_buf_free(&w->head);
    rt_buf_free(&w->image);
    free(w->path);
    free(w);
}

/* fork: the child gets a copy of the open writer without its thread. Holding
 * mu across fork() means the copy is not in the middle of an append; in the
 * child the records still waiting belong to the parent, which writes them:
 * the child's copy drops them, and takes appends only until the child closes
 * it (a forked child starts a trace of its own). */
static _Atomic(rt_writer *) fork_writer;

static void
fork_prepare(void)
{
    rt_writer *w = atomic_load(&fork_writer);
    if (w)
        pthread_mutex_lock(&w->mu);
}

static void
fork_parent(void)
{
    rt_writer *w = atomic_load(&fork_writer);
    if (w)
        pthread_mutex_unlock(&w->mu);
}

static void
fork_child(void)
{
    rt_writer *w = atomic_load(&fork_writer);
    if (w) {
        rt_buf_clear(&w->active);
        w->active_count = 0;
        pthread_mutex_unlock(&w->mu);
    }
}

static void
install_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Create the trace file, private (0600): -1 with errno on failure. Only
 * async-signal-safe calls: the fatal signal handler creates a flight
 * recording's file. O_CREAT's mode does not apply to a file that already
 * exists; and only a regular file is ours to chmod, never /dev/null or a FIFO. */
static int
create_private(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && fchmod(fd, 0600) < 0))) {
        int errnum = errno;
        close(fd);
        errno = errnum;
        return -1;
    }
    return fd;
}

/* Flight mode: create the file and write what was kept in memory. Called
 * with mu held while no chunk is being written. */
static int
keep_image(rt_writer *w)
{
    int fd = create_private(w->path);
    if (fd < 0)
        return -1;
    if (write_all(fd, w->head.data, w->head.len) < 0
        || write_all(fd, w->image.data, w->image.len) < 0) {
        int errnum = errno;
        close(fd);
        errno = errnum;
        return -1;
    }
    w->fd = fd;
    return 0;
}

rt_writer *
rt_writer_open(const char *path, const uint8_t *header, size_t header_len,
               const rt_writer_limits *limits, char *err, size_t errlen)
{
    char ebuf[128];
    if (header_len > UINT32_MAX) {
        snprintf(err, errlen, "trace header of %zu bytes is too large", header_len);
        return NULL;
    }
    rt_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->fd = -1;
    rt_writer_limits none = {0};
    limits = limits ? limits : &none;
    w->max_size = limits->max_size;
    w->max_memory = limits->max_memory ? limits->max_memory : RT_DEFAULT_MAX_MEMORY;
    w->flight = limits->flight;
    const char *delay = getenv(TEST_DELAY_ENV);
    w->test_delay_ms = delay ? strtol(delay, NULL, 10) : 0;

    int rc = rt_buf_put(&w->head, RT_FILE_MAGIC, 8);
    rc |= rt_buf_put_u32(&w->head, RT_FORMAT_VERSION);
    rc |= rt_buf_put_u32(&w->head, (uint32_t)header_len);
    rc |= rt_buf_put(&w->head, header, header_len);
    rc |= rt_buf_put_u32(&w->head, (uint32_t)crc32(0, header, (uInt)header_len));
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->file_bytes = w->head.len;
    if (w->max_size && w->file_bytes + CUT_RESERVE > w->max_size) {
        snprintf(err, errlen, "the size limit of %llu bytes is smaller than the trace header "
                 "(%llu bytes)", (unsigned long long)w->max_size,
                 (unsigned long long)w->file_bytes);
        goto fail;
    }
    if (!limits->flight) {
        w->fd = create_private(path);
        if (w->fd < 0) {
            snprintf(err, errlen, "cannot create %s: %s", path,
                     strerror_r(errno, ebuf, sizeof ebuf));
            goto fail;
        }
        if (write_all(w->fd, w->head.data, w->head.len) < 0) {
            snprintf(err, errlen, "writing %s failed: %s", path,
                     strerror_r(errno, ebuf, sizeof ebuf));
            goto fail;
        }
    }

    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->flushed, NULL);

    /* fork() copies this writer but not its thread: flush and close in a
     * child check owner and leave the thread alone instead of waiting for it
     * forever, and the fork handlers keep mu usable in the child. */
    w->owner = getpid();
    static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers_once, install_fork_handlers);
    atomic_store(&fork_writer, w);

    /* The thread blocks all signals, so Python's handlers keep running on
     * the main thread and interrupting its system calls. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the trace writer thread: %s",
                 strerror_r(rc, ebuf, sizeof ebuf));
        pthread_cond_destroy(&w->flushed);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
        goto fail;
    }
    return w;

fail:
    if (w->fd >= 0)
        close(w->fd);
    writer_free(w);
    return NULL;
}

static void die_after_append(rt_writer *w, int sig);

/* Append one record to the active buffer, with mu held. -1: out of memory. */
static int
put_record(rt_writer *w, const uint8_t *rec, size_t len)
{
    size_t old = w->active.len;
    if (rt_buf_put_varint(&w->active, len) < 0 || rt_buf_put(&w->active, rec, len) < 0) {
        w->active.len = old;   /* no half-written record */
        return -1;
    }
    w->active_count++;
    if (old < CHUNK_TARGET && w->active.len >= CHUNK_TARGET)
        pthread_cond_signal(&w->wake);
    return 0;
}

/* The cut record: kind, reason, limit. Returns its length. */
static size_t
make_cut_record(uint8_t rec[CUT_RECORD_MAX], int reason, uint64_t limit)
{
    rt_buf b = {rec, 0, CUT_RECORD_MAX};
    rt_buf_put_u8(&b, RT_REC_CUT);
    rt_buf_put_varint(&b, (uint64_t)reason);
    rt_buf_put_varint(&b, limit);
    return b.len;
}

/* End the recorded events here: append the cut record, with mu held. Were
 * even its few bytes not available, the trace would end at the previous
 * record, which a reader sees as an end without a marker. The line for
 * stderr is left in note, to be written once mu is released. */
static void
cut_locked(rt_writer *w, int reason, uint64_t limit, char *note, size_t notelen)
{
    uint8_t rec[CUT_RECORD_MAX];
    size_t len = make_cut_record(rec, reason, limit);
    put_record(w, rec, len);
    w->cut = reason;
    atomic_store(&w->stopped, 1);
    if (note) {
        char why[256];
        rt_describe_cut(rec, len, why, sizeof why);
        snprintf(note, notelen, "retrace: recording stopped: %s; the trace keeps everything "
                 "before this point and the program goes on unrecorded\n", why);
    }
}

/* Whether a record of len bytes fits in the limits; if not, the recording
 * is cut (see cut_locked). */
static int
fits(rt_writer *w, size_t len, char *note, size_t notelen)
{
    uint64_t need = VARINT_MAX + (uint64_t)len;
    if (w->active.len + need > w->max_memory) {
        cut_locked(w, RT_CUT_MEMORY, w->max_memory, note, notelen);
        return 0;
    }
    /* Written chunks count as stored, those not yet written as raw: the
     * file never outgrows max_size (the end record aside). */
    if (w->max_size && w->file_bytes + 2 * CHUNK_HEADER_LEN + w->inflight + w->active.len
                           + need + CUT_RESERVE > w->max_size) {
        cut_locked(w, w->flight ? RT_CUT_FLIGHT : RT_CUT_SIZE, w->max_size, note, notelen);
        return 0;
    }
    return 1;
}

int
rt_writer_append(rt_writer *w, const uint8_t *rec, size_t len)
{
    char note[512];
    note[0] = '\0';      /* not "= {0}": zeroing 512 bytes per record shows */
    int rc = -1;
    int is_end = len > 0 && rec[0] == RT_REC_END;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->appender, pthread_self());
    atomic_store(&w->appending, 1);
    if (w->failed || (w->cut && !is_end)) {
        /* Recording stopped: the record is discarded. */
    }
    else if (w->cut || fits(w, len, note, sizeof note) || is_end) {
        /* The end record goes in after a cut too: it says how the run ended. */
        rc = put_record(w, rec, len);
        if (rc < 0 && !w->cut)
            cut_locked(w, RT_CUT_MEMORY, 0, note, sizeof note);
    }
    atomic_store(&w->appending, 0);
    pthread_mutex_unlock(&w->mu);
    if (note[0]) {
        /* Nothing useful can be done if stderr itself fails. */
        ssize_t n = write(STDERR_FILENO, note, strlen(note));
        (void)n;
    }
    int sig = atomic_load(&w->deferred_signal);
    if (sig)
        die_after_append(w, sig);
    return rc;
}

void
rt_writer_cut(rt_writer *w, int reason)
{
    pthread_mutex_lock(&w->mu);
    if (!w->cut && !w->failed)
        cut_locked(w, reason, 0, NULL, 0);
    pthread_mutex_unlock(&w->mu);
}

int
rt_writer_stopped(rt_writer *w)
{
    return atomic_load(&w->stopped);
}

void
rt_describe_cut(const uint8_t *rec, size_t len, char *out, size_t outlen)
{
    rt_cursor c = {rec + 1, rec + len};
    uint64_t reason = 0, limit = 0;
    if (len < 1 || rec[0] != RT_REC_CUT || rt_cur_varint(&c, &reason) < 0
        || rt_cur_varint(&c, &limit) < 0) {
        snprintf(out, outlen, "the recording was cut (malformed cut record)");
        return;
    }
    unsigned long long n = (unsigned long long)limit;
    switch (reason) {
    case RT_CUT_SIZE:
        snprintf(out, outlen, "the trace reached its size limit (RETRACE_MAX_SIZE, %llu bytes)", n);
        break;
    case RT_CUT_MEMORY:
        if (n)
            snprintf(out, outlen, "the trace writer fell behind: more than %llu bytes were "
                     "waiting to be written (RETRACE_MAX_MEMORY)", n);
        else
            snprintf(out, outlen, "out of memory for the records waiting to be written");
        break;
    case RT_CUT_FLIGHT:
        snprintf(out, outlen, "the flight recorder's memory (RETRACE_FLIGHT, %llu bytes) is "
                 "full: it keeps the start of the run", n);
        break;
    case RT_CUT_INTERNAL:
        snprintf(out, outlen, "an internal error in Retrace stopped the recording "
                 "(reported on stderr when recording)");
        break;
    default:
        snprintf(out, outlen, "the recording was cut (unknown reason %llu)", n ? n : reason);
    }
}

int
rt_writer_flush(rt_writer *w)
{
    if (getpid() != w->owner)
        return -1;   /* a forked child: there is no writer thread here */
    pthread_mutex_lock(&w->mu);
    uint64_t req = ++w->flush_req;
    pthread_cond_signal(&w->wake);
    /* The thread answers every request, also after a failure. */
    while (w->flush_done < req)
        pthread_cond_wait(&w->flushed, &w->mu);
    int rc = w->failed ? -1 : 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int
rt_writer_close(rt_writer *w, char *err, size_t errlen)
{
    rt_writer *expected = w;
    atomic_compare_exchange_strong(&fork_writer, &expected, NULL);
    if (getpid() == w->owner) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        /* Before mu goes: the handler may run until here. */
        rt_writer_uninstall_fatal_handlers(w);
        pthread_cond_destroy(&w->flushed);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
        if (!w->failed && w->fd >= 0 && fsync(w->fd) < 0 && errno != EINVAL) {
            /* EINVAL: a pipe or device that cannot be synced; nothing lost. */
            describe_failure(w, "syncing", errno);
            w->failed = 1;
        }
    }
    else {
        rt_writer_uninstall_fatal_handlers(w);
    }
    if (w->fd >= 0 && close(w->fd) < 0 && !w->failed) {
        describe_failure(w, "closing", errno);
        w->failed = 1;
    }

    int rc = w->failed ? -1 : 0;
    if (w->failed)
        snprintf(err, errlen, "%s", w->error);
    writer_free(w);
    return rc;
}

int
rt_writer_keep(rt_writer *w, char *err, size_t errlen)
{
    if (getpid() != w->owner) {
        snprintf(err, errlen, "a forked child cannot keep its parent's flight recording");
        return -1;
    }
    pthread_mutex_lock(&w->mu);
    /* Holding mu, the thread cannot start a chunk; wait for one in progress. */
    while (atomic_load(&w->io_state) == CHUNK_WRITING) {
        pthread_mutex_unlock(&w->mu);
        nap_ms(1);
        pthread_mutex_lock(&w->mu);
    }
    int rc = 0;
    if (!w->failed && w->fd < 0) {
        if (keep_image(w) < 0) {
            describe_failure(w, "creating", errno);
            w->failed = 1;
            atomic_store(&w->stopped, 1);
        }
        rt_buf_free(&w->image);
    }
    if (w->failed) {
        snprintf(err, errlen, "%s", w->error);
        rc = -1;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

const char *
rt_writer_error(rt_writer *w)
{
    pthread_mutex_lock(&w->mu);
    int failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    return failed ? w->error : NULL;
}

/* ---- fatal signals ---------------------------------------------------- */

/* A recorded process that dies from one of these signals first writes the
 * records still in the active buffer, so that the trace holds every record
 * appended before the signal. SIGINT is not here: Python handles it (as
 * KeyboardInterrupt, which ends the recording normally). SIGKILL cannot be
 * caught: then the trace ends at the writer thread's last write.
 *
 * Only signals whose disposition is SIG_DFL get the handler: a handler the
 * program, Python or faulthandler installed is left alone, and so is an
 * ignored signal (nohup). A program that installs its own handler later
 * replaces ours, and closing the writer does not undo that. */
static const int fatal_signals[] = {
    SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM, SIGHUP, SIGQUIT,
};
#define N_FATAL (sizeof fatal_signals / sizeof fatal_signals[0])

static _Atomic(rt_writer *) fatal_writer;
static struct sigaction fatal_old[N_FATAL];   /* what to restore */
static int fatal_ours[N_FATAL];               /* we installed a handler */

/* Stack overflow (a runaway C recursion) raises SIGSEGV with no stack left
 * to run a handler on: give the recording thread an alternate stack. It is
 * static and stays installed, so it can never be freed while in use. */
static char fatal_altstack[1 << 16];
static int fatal_altstack_used;

/* Write the active buffer as one uncompressed chunk. Runs in a signal
 * handler, so it must neither block forever nor allocate:
 *
 * - mu is taken with pthread_mutex_trylock. POSIX does not list it as
 *   async-signal-safe, but it never blocks and does not allocate, and it is
 *   the accepted practice. Other threads hold mu only for a copy or a swap,
 *   so up to 100 ms are allowed for it (the caller has made sure that the
 *   interrupted thread itself is not in an append).
 * - With mu held, the writer thread cannot start a chunk, but it may be
 *   writing one (io_state). That chunk comes first in the file, so wait for
 *   it, up to 1 s; after that, or if its write failed, write nothing: the
 *   file then ends in that chunk, complete or cut short, and the reader
 *   reports truncation. Losing the last interval is acceptable; writing into
 *   the middle of another chunk is not. */
static void
flush_on_signal(rt_writer *w)
{
    int locked = 0;
    for (int i = 0; i < 100 && !locked; i++) {
        locked = pthread_mutex_trylock(&w->mu) == 0;
        if (!locked)
            nap_ms(1);
    }
    if (!locked)
        return;
    for (int i = 0; i < 1000 && atomic_load(&w->io_state) == CHUNK_WRITING; i++)
        nap_ms(1);
    /* A flight recording is kept when the process dies from a signal. */
    if (atomic_load(&w->io_state) == CHUNK_IDLE && !w->failed && w->fd < 0
        && keep_image(w) < 0)
        atomic_store(&w->io_state, CHUNK_BROKEN);
    if (atomic_load(&w->io_state) == CHUNK_IDLE && !w->failed && w->active_count > 0) {
        uint8_t h[CHUNK_HEADER_LEN];
        put_chunk_header(h, 0, w->active.data, w->active.len, w->active.len,
                         w->active_count, w->next_index);
        if (write_all(w->fd, h, sizeof h) == 0
            && write_all(w->fd, w->active.data, w->active.len) == 0) {
            /* Written once: should the process survive, it is not repeated. */
            w->next_index += w->active_count;
            w->active_count = 0;
            w->active.len = 0;
        }
        else {
            /* A partial chunk: nothing may follow it. */
            atomic_store(&w->io_state, CHUNK_BROKEN);
        }
    }
    pthread_mutex_unlock(&w->mu);
}

/* Die the way the signal would have killed us: restore SIG_DFL and raise it
 * again. In the handler the signal is blocked, so it is delivered when the
 * handler returns (after a fault, the faulting instruction would raise it
 * again anyway). Default actions, core dumps included, are unchanged. */
static void
die_from(int sig)
{
    for (size_t i = 0; i < N_FATAL; i++)
        if (fatal_signals[i] == sig)
            sigaction(sig, &fatal_old[i], NULL);
    raise(sig);
}

/* A signal sent to the process arrived while this thread was appending. */
static void
die_after_append(rt_writer *w, int sig)
{
    flush_on_signal(w);
    die_from(sig);
}

static void
fatal_handler(int sig)
{
    int saved_errno = errno;
    rt_writer *w = atomic_load(&fatal_writer);
    /* In a forked child the writer's state is not ours to write. */
    if (w && getpid() == w->owner) {
        /* pthread_self only reads the thread pointer: safe here. */
        if (atomic_load(&w->appending) && pthread_equal(atomic_load(&w->appender),
                                                        pthread_self())) {
            /* This thread holds mu, in the middle of an append: the buffer
             * is half updated. A signal sent by kill() can wait until the
             * append is done (rt_writer_append then flushes and dies); a
             * fault cannot (returning would fault again): write nothing. */
            if (sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) {
                atomic_store(&w->deferred_signal, sig);
                errno = saved_errno;
                return;
            }
        }
        else {
            flush_on_signal(w);
        }
    }
    die_from(sig);
    errno = saved_errno;
}

void
rt_writer_install_fatal_handlers(rt_writer *w)
{
    rt_writer *none = NULL;
    if (!atomic_compare_exchange_strong(&fatal_writer, &none, w))
        return;   /* another writer has them (one recording at a time) */

    if (!fatal_altstack_used) {
        stack_t cur;
        if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
            stack_t ss = {.ss_sp = fatal_altstack, .ss_size = sizeof fatal_altstack};
            fatal_altstack_used = sigaltstack(&ss, NULL) == 0;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fatal_handler;
    sa.sa_flags = SA_ONSTACK;
    /* One handler at a time: a second fatal signal waits until we die. */
    sigfillset(&sa.sa_mask);
    for (size_t i = 0; i < N_FATAL; i++) {
        struct sigaction old;
        fatal_ours[i] = 0;
        if (sigaction(fatal_signals[i], NULL, &old) < 0
            || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        fatal_old[i] = old;
        fatal_ours[i] = sigaction(fatal_signals[i], &sa, NULL) == 0;
    }
}

void
rt_writer_uninstall_fatal_handlers(rt_writer *w)
{
    if (atomic_load(&fatal_writer) != w)
        return;
    for (size_t i = 0; i < N_FATAL; i++) {
        struct sigaction cur;
        /* Leave a handler the program installed since then in place. */
        if (fatal_ours[i] && sigaction(fatal_signals[i], NULL, &cur) == 0
            && !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == fatal_handler)
            sigaction(fatal_signals[i], &fatal_old[i], NULL);
        fatal_ours[i] = 0;
    }
    atomic_store(&fatal_writer, NULL);
}

/* ---- reader ----------------------------------------------------------- */

struct rt_reader {
    const uint8_t *map;
    size_t size;
    int mapped;               /* map is ours to munmap */
    const uint8_t *header;
    size_t header_len;
    size_t off;               /* offset of the next chunk */
    rt_cursor recs;           /* records left in the current chunk */
    rt_buf raw;               /* the current chunk, decompressed */
    uint64_t records;         /* records in the chunks loaded so far */
    uint64_t chunks;
    int64_t truncated;
    char error[256];
};

__attribute__((format(printf, 2, 3)))
static int
corrupt(rt_reader *r, const char *fmt, ...)
{
    int n = snprintf(r->error, sizeof r->error, "chunk at offset %zu is corrupt: ", r->off);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error + n, sizeof r->error - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int
check_file_header(rt_reader *r, char *err, size_t errlen)
{
    const uint8_t *m = r->map;
    if (r->size < 8 || memcmp(m, RT_FILE_MAGIC, 8) != 0) {
        snprintf(err, errlen, "not a Retrace trace (bad magic)");
        return -1;
    }
    if (r->size < FILE_HEADER_FIXED) {
        snprintf(err, errlen, "file ends inside the file header (file is %zu bytes)", r->size);
        return -1;
    }
    uint32_t version = rt_get_u32(m + 8);
    if (version != RT_FORMAT_VERSION) {
        snprintf(err, errlen, "trace format version %u is not supported by this Retrace "
                 "(supports %d)", version, RT_FORMAT_VERSION);
        return -1;
    }
    uint32_t hlen = rt_get_u32(m + 12);
    if ((uint64_t)hlen + 4 > r->size - FILE_HEADER_FIXED) {
        snprintf(err, errlen, "file ends inside the file header: the length at offset 12 "
                 "says %u bytes but the file is %zu bytes", hlen, r->size);
        return -1;
    }
    if (crc32(0, m + FILE_HEADER_FIXED, hlen) != rt_get_u32(m + FILE_HEADER_FIXED + hlen)) {
        snprintf(err, errlen, "header checksum mismatch at offset %d", FILE_HEADER_FIXED);
        return -1;
    }
    r->header = m + FILE_HEADER_FIXED;
    r->header_len = hlen;
    r->off = FILE_HEADER_FIXED + (size_t)hlen + 4;
    return 0;
}

rt_reader *
rt_reader_open(const char *path, char *err, size_t errlen)
{
    char ebuf[128];
    /* O_NONBLOCK: opening a FIFO by mistake must fail below, not hang. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror_r(errno, ebuf, sizeof ebuf));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror_r(errno, ebuf, sizeof ebuf));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0) {
        snprintf(err, errlen, "%s", S_ISREG(st.st_mode) ? "file is empty" : "not a regular file");
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int errnum = errno;
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror_r(errnum, ebuf, sizeof ebuf));
        return NULL;
    }
    rt_reader *r = rt_reader_open_bytes(map, (size_t)st.st_size, err, errlen);
    if (r)
        r->mapped = 1;
    else
        munmap(map, (size_t)st.st_size);
    return r;
}

rt_reader *
rt_reader_open_bytes(const uint8_t *data, size_t size, char *err, size_t errlen)
{
    rt_reader *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->map = data;
    r->size = size;
    r->truncated = -1;
    if (check_file_header(r, err, errlen) < 0) {
        rt_reader_close(r);
        return NULL;
    }
    return r;
}

const uint8_t *
rt_reader_header(rt_reader *r, size_t *len)
{
    *len = r->header_len;
    return r->header;
}

/* Load the chunk at r->off into r->recs: 1 when loaded, 0 at the end of the
 * readable data, -1 on corruption. Calling it again after 0 or -1 gives the
 * same answer, since nothing advances. */
static int
load_chunk(rt_reader *r)
{
    const uint8_t *h = r->map + r->off;
    size_t left = r->size - r->off;
    if (left == 0)
        return 0;
    if (left >= 4 && rt_get_u32(h) != RT_CHUNK_MAGIC)
        return corrupt(r, "bad magic");
    if (left < CHUNK_HEADER_LEN) {
        r->truncated = (int64_t)r->off;
        return 0;
    }
    /* Nothing in the header is trusted before its checksum matches. */
    if (crc32(0, h, 32) != rt_get_u32(h + 32))
        return corrupt(r, "header checksum mismatch");
    uint32_t flags = rt_get_u32(h + 4);
    uint32_t stored_len = rt_get_u32(h + 8);
    uint32_t raw_len = rt_get_u32(h + 12);
    uint32_t count = rt_get_u32(h + 16);
    uint64_t first = rt_get_u64(h + 20);
    if (flags & ~RT_CHUNK_ZLIB)
        return corrupt(r, "unknown flags 0x%x", flags);
    if (first != r->records)
        return corrupt(r, "first record index is %llu, expected %llu",
                       (unsigned long long)first, (unsigned long long)r->records);
    if (raw_len > MAX_RAW_LEN)
        return corrupt(r, "raw length %u exceeds the limit of %u", raw_len, MAX_RAW_LEN);
    if (!(flags & RT_CHUNK_ZLIB) && stored_len != raw_len)
        return corrupt(r, "stored length %u differs from raw length %u", stored_len, raw_len);
    if ((flags & RT_CHUNK_ZLIB) && raw_len == 0)
        return corrupt(r, "compressed chunk with an empty payload");
    if (stored_len > left - CHUNK_HEADER_LEN) {
        r->truncated = (int64_t)r->off;
        return 0;
    }

    const uint8_t *payload = h + CHUNK_HEADER_LEN;
    if (crc32(0, payload, stored_len) != rt_get_u32(h + 28))
        return corrupt(r, "payload checksum mismatch");
    if (flags & RT_CHUNK_ZLIB) {
        rt_buf_clear(&r->raw);
        if (rt_buf_reserve(&r->raw, raw_len) < 0) {
            snprintf(r->error, sizeof r->error, "out of memory decompressing the chunk "
                     "at offset %zu (%u bytes)", r->off, raw_len);
            return -1;
        }
        uLongf dlen = raw_len;
        uLong slen = stored_len;
        if (uncompress2(r->raw.data, &dlen, payload, &slen) != Z_OK
            || dlen != raw_len || slen != stored_len)
            return corrupt(r, "payload does not decompress to %u bytes", raw_len);
        payload = r->raw.data;
    }

    /* Check the framing and the count before handing out any record. */
    rt_cursor c = {payload, payload + raw_len};
    uint64_t n = 0;
    while (c.p < c.end) {
        const uint8_t *s;
        size_t len;
        if (rt_cur_str(&c, &s, &len) < 0)
            return corrupt(r, "record %llu overruns the chunk payload",
                           (unsigned long long)(first + n));
        n++;
    }
    if (n != count)
        return corrupt(r, "holds %llu records but its header says %u",
                       (unsigned long long)n, count);

    r->recs.p = payload;
    r->recs.end = payload + raw_len;
    r->records += count;
    r->chunks++;
    r->off += CHUNK_HEADER_LEN + (size_t)stored_len;
    return 1;
}

int
rt_reader_next(rt_reader *r, const uint8_t **rec, size_t *len)
{
    while (r->recs.p == r->recs.end) {
        int st = load_chunk(r);
        if (st <= 0)
            return st;
    }
    /* Cannot fail: load_chunk checked the framing of the whole chunk. */
    (void)rt_cur_str(&r->recs, rec, len);
    return 1;
}

const char *
rt_reader_error(rt_reader *r)
{
    return r->error;
}

int64_t
rt_reader_truncated(rt_reader *r)
{
    return r->truncated;
}

uint64_t
rt_reader_file_size(rt_reader *r)
{
    return r->size;
}

uint64_t
rt_reader_chunk_count(rt_reader *r)
{
    return r->chunks;
}

void
rt_reader_close(rt_reader *r)
{
    if (r->mapped)
        munmap((void *)r->map, r->size);
    rt_buf_free(&r->raw);
    free(r);
}
