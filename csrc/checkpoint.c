/* checkpoint.c - a replay process under the debugger: its connection to the
 * controller (src/retrace/debugger.py), what it reports, what it serves while
 * paused, and the copies of itself it forks.
 *
 * Protocol.  Frames of a u32 length (little endian) followed by that many
 * bytes, whose first byte is the kind: 'J' a JSON object, 'O' program
 * output (u8 fd, u64 its number among the program's writes, so a write
 * replayed again has the same number, u64 the step it was written at, the
 * bytes), 'C' the controller's commands
 * (text lines).  Every process connects to the controller's Unix socket on
 * its own and says hello (role, pid, position).  A paused process serves
 * commands: "fork" (a copy paused at the same position, the basis of
 * checkpoints), "inspect" (a copy that answers questions about the program's
 * state in Python, retrace/_debug_inspect.py, and is thrown away), "quit",
 * and the stepper's own ("bps ..." and "run ...", which resumes it).  While
 * running it forks a checkpoint every ckpt_ns of running time and reads
 * "pause" requests, both every 1024 line events.  A process whose controller
 * is gone exits.
 *
 * Forks.  fork() here is the raw system call: CPython's at-fork handlers
 * (which re-seed random and reset threading) must not run, since a copy is
 * the same program state.  Copies that go on replaying are made only while
 * the process has a single thread (fork cannot carry the others); a copy
 * that only reads (an inspector, a breakpoint condition test) may be forked
 * at any time, since it is thrown away.  Long-lived copies are
 * double-forked, so no replay process has children left to reap.
 */
#include "retrace.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_COMMAND (1u << 20)
#define TEST_TIMEOUT_MS 10000   /* a breakpoint condition that runs longer fails */
#define FORKED_COPY 2           /* command(): this is the new copy */

static int g_fd = -1;           /* the connection to the controller */
static char g_sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
static uint64_t g_ckpt_at;      /* when the last checkpoint was forked (or the run began) */
static rt_buf g_cmd;            /* the command frame being read */
static rt_buf g_out;            /* messages built here */
static uint64_t g_writes;       /* output writes of the program so far */

/* ---- JSON ---------------------------------------------------------------- */

Py_ssize_t
rt_utf8_into(PyObject *s, char *buf, size_t cap)
{
    if (!s || !PyUnicode_Check(s) || cap == 0)
        return -1;
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(s))
        return -1;
#endif
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    size_t j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (j + 5 > cap)
            return -1;
        if (c < 0x80)
            buf[j++] = (char)c;
        else if (c < 0x800) {
            buf[j++] = (char)(0xC0 | (c >> 6));
            buf[j++] = (char)(0x80 | (c & 0x3F));
        }
        else if (c >= 0xD800 && c < 0xE000)
            buf[j++] = '?';     /* a lone surrogate (undecodable file name byte) */
        else if (c < 0x10000) {
            buf[j++] = (char)(0xE0 | (c >> 12));
            buf[j++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[j++] = (char)(0x80 | (c & 0x3F));
        }
        else {
            buf[j++] = (char)(0xF0 | (c >> 18));
            buf[j++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[j++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[j++] = (char)(0x80 | (c & 0x3F));
        }
    }
    buf[j] = '\0';
    return (Py_ssize_t)j;
}

static void
put_string(rt_buf *b, const char *s, size_t n)
{
    rt_buf_put_u8(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            rt_buf_put_u8(b, '\\');
            rt_buf_put_u8(b, c);
        }
        else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rt_buf_put(b, esc, 6);
        }
        else
            rt_buf_put_u8(b, c);
    }
    rt_buf_put_u8(b, '"');
}

void
rt_json_open(rt_buf *b)
{
    rt_buf_put_u8(b, '{');
}

void
rt_json_close(rt_buf *b)
{
    rt_buf_put_u8(b, '}');
}

void
rt_json_key(rt_buf *b, const char *key)
{
    if (b->len && b->data[b->len - 1] != '{')
        rt_buf_put_u8(b, ',');
    put_string(b, key, strlen(key));
    rt_buf_put_u8(b, ':');
}

void
rt_json_int(rt_buf *b, const char *key, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", v);
    rt_json_key(b, key);
    rt_buf_put(b, num, (size_t)n);
}

void
rt_json_str(rt_buf *b, const char *key, const char *s)
{
    rt_json_key(b, key);
    put_string(b, s, strlen(s));
}

void
rt_json_unicode(rt_buf *b, const char *key, PyObject *s)
{
    char text[4096];
    Py_ssize_t n = rt_utf8_into(s, text, sizeof text);
    rt_json_key(b, key);
    put_string(b, n < 0 ? "?" : text, n < 0 ? 1 : (size_t)n);
}

/* ---- frames ---------------------------------------------------------------- */

/* The controller is gone: nobody is left to serve. */
static void
gone(void)
{
    _exit(0);
}

static void
send_bytes(const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(g_fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            gone();
        c += k;
        n -= (size_t)k;
    }
}

static void
send_frame(char kind, const void *a, size_t alen, const void *b, size_t blen)
{
    uint32_t len = (uint32_t)(1 + alen + blen);
    uint8_t head[5] = {len & 0xFF, (len >> 8) & 0xFF, (len >> 16) & 0xFF, len >> 24, (uint8_t)kind};
    send_bytes(head, sizeof head);
    if (alen)
        send_bytes(a, alen);
    if (blen)
        send_bytes(b, blen);
}

static void
send_json(rt_buf *j)
{
    send_frame('J', j->data, j->len, NULL, 0);
}

static int
read_full(void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t k = read(g_fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read one command frame into g_cmd as a NUL-terminated string; -1 when the
 * controller is gone or sent something else. */
static int
read_command(void)
{
    uint8_t head[5];
    if (read_full(head, sizeof head) < 0)
        return -1;
    uint32_t len = rt_get_u32(head);
    if (len < 1 || len > MAX_COMMAND || head[4] != 'C')
        return -1;
    rt_buf_clear(&g_cmd);
    if (read_full(g_cmd.data, len - 1) < 0)
        return -1;
    g_cmd.data[len - 1] = '\0';
    g_cmd.len = len - 1;
    return 0;
}

static void
send_event(const char *ev, const char *key, long long value, const char *message)
{
    rt_buf_clear(&g_out);
    rt_json_open(&g_out);
    rt_json_str(&g_out, "ev", ev);
    if (key)
        rt_json_int(&g_out, key, value);
    if (message)
        rt_json_str(&g_out, "message", message);
    rt_json_close(&g_out);
    send_json(&g_out);
}

/* Connect to the controller (again, in a fork) and say hello. */
static int
connect_controller(const char *role)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, g_sock, sizeof g_sock);
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    if (g_fd >= 0)
        close(g_fd);
    g_fd = fd;
    rt_buf_clear(&g_out);
    rt_json_open(&g_out);
    rt_json_str(&g_out, "ev", "hello");
    rt_json_str(&g_out, "role", role);
    rt_json_int(&g_out, "pid", getpid());
    rt_stepper_describe(&g_out);
    rt_json_close(&g_out);
    send_json(&g_out);
    return 0;
}

/* ---- forks ----------------------------------------------------------------- */

/* Fork a grandchild: 0 in it, its pid in the caller, -1 on failure. The
 * middle process exits at once, so the caller has nothing to reap later. */
static pid_t
fork_detached(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t middle = fork();
    if (middle == 0) {
        pid_t pid = fork();
        if (pid != 0) {
            ssize_t ignored = write(p[1], &pid, sizeof pid);
            (void)ignored;
            _exit(0);
        }
        close(p[0]);
        close(p[1]);
        return 0;
    }
    close(p[1]);
    pid_t pid = -1;
    if (middle > 0) {
        while (read(p[0], &pid, sizeof pid) < 0 && errno == EINTR)
            ;
        while (waitpid(middle, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(p[0]);
    return pid;
}

/* The process a copy lives in: connected on its own, or gone. */
static void
become(const char *role)
{
    if (connect_controller(role) < 0)
        _exit(1);
}

static void
run_inspector(void)
{
    PyObject *mod = PyImport_ImportModule("retrace._debug_inspect");
    PyObject *res = mod ? PyObject_CallMethod(mod, "serve", "i", g_fd) : NULL;
    if (!res)
        PyErr_Print();
    _exit(res ? 0 : 1);
}

static void serve(void);

/* One command line while paused: 1 resume, 0 done, FORKED_COPY in a new
 * copy, -1 an error (message in err). */
static int
command(char *line, char *err, size_t errlen)
{
    if (strcmp(line, "fork") == 0 || strcmp(line, "inspect") == 0) {
        int copy = line[0] == 'f';
        if (copy && !rt_stepper_forkable()) {
            snprintf(err, errlen, "other threads are alive: a fork cannot carry them");
            return -1;
        }
        pid_t pid = fork_detached();
        if (pid == 0) {
            become(copy ? "copy" : "inspector");
            if (!copy)
                run_inspector();
            return FORKED_COPY;
        }
        if (pid < 0) {
            snprintf(err, errlen, "fork failed: %s", strerror(errno));
            return -1;
        }
        send_event("forked", "pid", pid, NULL);
        return 0;
    }
    if (strcmp(line, "quit") == 0)
        _exit(0);
    if (strcmp(line, "pause") == 0)
        return 0;               /* came after the stop it asked for */
    return rt_stepper_configure(line, err, errlen);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Serve the controller while paused; return when told to run. Other threads
 * of the replay wait for their turn meanwhile: the pause is progress to
 * them, or they would report a hang after RT_TURN_TIMEOUT_S. */
static void
serve(void)
{
    char err[512];
    for (;;) {
        struct pollfd p = {.fd = g_fd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        if (r == 0) {
            rt_demux_progress();
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || read_command() < 0)
            gone();
        int resume = 0;
        for (char *line = (char *)g_cmd.data; line && *line;) {
            char *next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            int rc = command(line, err, sizeof err);
            if (rc == FORKED_COPY) {
                resume = 0;
                break;          /* the rest of the frame was for the original */
            }
            if (rc < 0)
                send_event("error", NULL, 0, err);
            resume |= rc == 1;
            line = next;
        }
        if (resume) {
            g_ckpt_at = now_ns();
            return;
        }
    }
}

void
rt_ckpt_send(rt_buf *json)
{
    if (g_fd >= 0)
        send_json(json);
}

void
rt_ckpt_pause(rt_buf *stop)
{
    if (g_fd < 0)
        return;
    send_json(stop);
    serve();
}

int
rt_ckpt_tick(uint64_t ckpt_ns)
{
    if (g_fd < 0)
        return 0;
    struct pollfd p = {.fd = g_fd, .events = POLLIN};
    if (poll(&p, 1, 0) > 0) {
        if (read_command() < 0)
            gone();
        if (strcmp((char *)g_cmd.data, "pause") == 0)
            return 1;
        send_event("error", NULL, 0, "only pause is served while running");
    }
    if (ckpt_ns && now_ns() - g_ckpt_at >= ckpt_ns && rt_stepper_forkable()) {
        g_ckpt_at = now_ns();
        if (fork_detached() == 0) {
            become("checkpoint");
            serve();
        }
    }
    return 0;
}

void
rt_ckpt_log(int bp_id, const char *text)
{
    if (g_fd < 0)
        return;
    rt_buf_clear(&g_out);
    rt_json_open(&g_out);
    rt_json_str(&g_out, "ev", "log");
    rt_json_int(&g_out, "bp", bp_id);
    rt_json_str(&g_out, "text", text);
    rt_json_close(&g_out);
    send_json(&g_out);
}

/* The child of rt_ckpt_test: evaluate, write status byte and text, exit. */
static void
test_in_child(int fd, PyObject *frame, const char *cond, const char *log)
{
    PyObject *mod = PyImport_ImportModule("retrace._debug_inspect");
    PyObject *res = mod ? PyObject_CallMethod(mod, "test_breakpoint", "Ozz", frame, cond, log)
                        : NULL;
    int status = -1;
    const char *text = "the breakpoint test failed";
    if (!res || !PyArg_ParseTuple(res, "is", &status, &text)) {
        PyErr_Print();
        status = -1;
    }
    char byte = (char)(status < 0 ? 2 : status);
    if (write(fd, &byte, 1) == 1) {
        ssize_t ignored = write(fd, text, strlen(text));
        (void)ignored;
    }
    _exit(0);
}

int
rt_ckpt_test(PyObject *frame, const char *cond, const char *log, char *out, size_t outlen)
{
    int p[2];
    snprintf(out, outlen, "the breakpoint test failed");
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        test_in_child(p[1], frame, cond, log);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    char buf[1024];
    size_t got = 0;
    int timed_out = 0;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int r = poll(&pf, 1, TEST_TIMEOUT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            timed_out = 1;
            break;
        }
        ssize_t k = read(p[0], buf + got, sizeof buf - 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
        if (got == sizeof buf - 1)
            break;
    }
    close(p[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        snprintf(out, outlen, "the condition did not finish within %d s", TEST_TIMEOUT_MS / 1000);
        return -1;
    }
    if (got == 0)
        return -1;
    buf[got] = '\0';
    snprintf(out, outlen, "%s", buf + 1);
    return buf[0] == 2 ? -1 : buf[0];
}

/* ---- Python functions -------------------------------------------------------- */

static PyObject *
debug_connect(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_ssize_t n;
    const char *path = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!path)
        return NULL;
    if ((size_t)n >= sizeof g_sock)
        return PyErr_Format(PyExc_ValueError, "socket path too long: %s", path);
    memcpy(g_sock, path, (size_t)n + 1);
    /* allocated once: what the debugger is asked never changes the heap */
    if (rt_buf_reserve(&g_out, 65536) < 0 || rt_buf_reserve(&g_cmd, MAX_COMMAND) < 0)
        return PyErr_NoMemory();
    if (connect_controller("main") < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    Py_RETURN_NONE;
}

static PyObject *
debug_reconnect(PyObject *Py_UNUSED(m), PyObject *arg)
{
    const char *role = PyUnicode_AsUTF8(arg);
    if (!role)
        return NULL;
    if (connect_controller(role) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(g_fd);
}

/* The UTF-8 of a message for the controller; NULL with an exception set if
 * it is not a str or there is no controller. */
static const char *
message_text(PyObject *arg, Py_ssize_t *n)
{
    if (g_fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "not connected to a debugger");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(arg, n);
}

static PyObject *
debug_send(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_ssize_t n;
    const char *text = message_text(arg, &n);
    if (!text)
        return NULL;
    send_frame('J', text, (size_t)n, NULL, 0);
    Py_RETURN_NONE;
}

/* debug_output(fd, data) -> len(data): the program's output goes to the
 * controller, numbered (the output boundary's func). */
static PyObject *
debug_output(PyObject *Py_UNUSED(m), PyObject *args)
{
    int fd;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iy*", &fd, &data))
        return NULL;
    if (g_fd < 0) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_RuntimeError, "not connected to a debugger");
    }
    uint8_t head[17];
    uint64_t n = g_writes++, step = rt_stepper_step();
    head[0] = (uint8_t)fd;
    for (int i = 0; i < 8; i++) {
        head[1 + i] = (uint8_t)(n >> (8 * i));
        head[9 + i] = (uint8_t)(step >> (8 * i));
    }
    send_frame('O', head, sizeof head, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(data.len);
}

/* debug_end(message): the program ended; report it (again for every run
 * asked for) and serve until the controller is done with this process. */
static PyObject *
debug_end(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_ssize_t n;
    const char *text = message_text(arg, &n);
    if (!text)
        return NULL;
    for (;;) {
        send_frame('J', text, (size_t)n, NULL, 0);
        serve();
    }
}

/* debug_fork() -> pid: a detached raw fork (no at-fork handlers) for a
 * throwaway copy; 0 in the copy. */
static PyObject *
debug_fork(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    pid_t pid = fork_detached();
    if (pid < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(pid);
}

static PyMethodDef checkpoint_methods[] = {
    {"debug_connect", debug_connect, METH_O, "debug_connect(socket): join the debugger"},
    {"debug_reconnect", debug_reconnect, METH_O,
     "debug_reconnect(role) -> fd: a fork's own connection to the debugger"},
    {"debug_send", debug_send, METH_O, "debug_send(json_text): a message to the debugger"},
    {"debug_output", debug_output, METH_VARARGS,
     "debug_output(fd, data): the program's output, to the debugger"},
    {"debug_end", debug_end, METH_O, "debug_end(json_text): report the end and serve; no return"},
    {"debug_fork", debug_fork, METH_NOARGS, "a detached raw fork: pid, or 0 in the copy"},
    {NULL, NULL, 0, NULL},
};

int
rt_ckpt_init(PyObject *module)
{
    return PyModule_AddFunctions(module, checkpoint_methods);
}
