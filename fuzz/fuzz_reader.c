/* fuzz_reader.c - libFuzzer target for the code that reads untrusted traces:
 * the stream reader (csrc/stream.c) and the value decoder (csrc/codec.c).
 *
 * Each input is used three ways:
 *   1. as a whole trace file: header checked and decoded, every record read,
 *      C and E values decoded, X records described;
 *   2. as the raw payload of one chunk, framed here with correct checksums
 *      (stored, then zlib-compressed), so that mutations reach the record
 *      parser and the decoder instead of stopping at a checksum;
 *   3. as a sequence of encoded values, decoded one after another.
 * Every path must end in a value or a clean error: never a crash, a hang, a
 * sanitizer report or a leak. Built and run by `make fuzz` (docs/security.md).
 */
#include "../csrc/retrace.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

PyMODINIT_FUNC PyInit__engine(void);

static PyObject *engine;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Every Python allocation through malloc, where the sanitizers see it. */
    setenv("PYTHONMALLOC", "malloc", 1);
    Py_Initialize();
    engine = PyInit__engine();   /* needs retrace.errors: PYTHONPATH=src */
    if (!engine) {
        PyErr_Print();
        abort();
    }
    return 0;
}

/* Decode values back to back until the bytes end or one is malformed. */
static void
decode_values(const uint8_t *p, size_t n)
{
    rt_cursor c = {p, p + n};
    while (c.p < c.end) {
        PyObject *v = rt_decode(&c);
        if (!v) {
            PyErr_Clear();
            return;
        }
        Py_DECREF(v);
    }
}

static void
read_record(const uint8_t *rec, size_t len)
{
    rt_cursor c = {rec + 1, rec + len};
    uint64_t tid, fid;
    uint8_t outcome;
    const uint8_t *name;
    size_t n;
    char why[256];
    if (len == 0)
        return;
    switch (rec[0]) {
    case 'C':
        if (rt_cur_varint(&c, &tid) == 0 && rt_cur_varint(&c, &fid) == 0
            && rt_cur_u8(&c, &outcome) == 0)
            decode_values(c.p, (size_t)(c.end - c.p));
        break;
    case 'D':
        if (rt_cur_varint(&c, &fid) == 0)
            (void)rt_cur_str(&c, &name, &n);
        break;
    case RT_REC_END:
        decode_values(c.p, (size_t)(c.end - c.p));
        break;
    case RT_REC_CUT:
        rt_describe_cut(rec, len, why, sizeof why);
        break;
    }
}

static void
read_trace(const uint8_t *data, size_t size)
{
    char err[512];
    rt_reader *r = rt_reader_open_bytes(data, size, err, sizeof err);
    if (!r)
        return;
    size_t hlen;
    const uint8_t *h = rt_reader_header(r, &hlen);
    decode_values(h, hlen);
    const uint8_t *rec;
    size_t len;
    while (rt_reader_next(r, &rec, &len) == 1)
        read_record(rec, len);
    (void)rt_reader_error(r);
    (void)rt_reader_truncated(r);
    rt_reader_close(r);
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A trace file whose only chunk holds `payload` (compressed if zlib): an
 * empty header, a chunk header with the right lengths, count and checksums. */
static void
read_framed(const uint8_t *payload, size_t raw_len, int zlib)
{
    uint32_t count = 0;
    rt_cursor c = {payload, payload + raw_len};
    const uint8_t *s;
    size_t n;
    while (c.p < c.end && rt_cur_str(&c, &s, &n) == 0)
        count++;
    if (c.p < c.end)
        count++;      /* a record that overruns the payload: the reader must say so */

    uLongf stored_len = compressBound(raw_len);
    uint8_t *file = malloc(20 + 36 + stored_len);
    if (!file)
        return;
    uint8_t *body = file + 20 + 36;
    if (zlib) {
        if (compress2(body, &stored_len, payload, raw_len, 1) != Z_OK) {
            free(file);
            return;
        }
    }
    else {
        memcpy(body, payload, raw_len);
        stored_len = raw_len;
    }
    memcpy(file, RT_FILE_MAGIC, 8);
    put32(file + 8, RT_FORMAT_VERSION);
    put32(file + 12, 0);
    put32(file + 16, (uint32_t)crc32(0, NULL, 0));
    uint8_t *h = file + 20;
    put32(h, RT_CHUNK_MAGIC);
    put32(h + 4, zlib ? RT_CHUNK_ZLIB : 0);
    put32(h + 8, (uint32_t)stored_len);
    put32(h + 12, (uint32_t)raw_len);
    put32(h + 16, count);
    memset(h + 20, 0, 8);
    put32(h + 28, (uint32_t)crc32(0, body, (uInt)stored_len));
    put32(h + 32, (uint32_t)crc32(0, h, 32));
    read_trace(file, 20 + 36 + stored_len);
    free(file);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_trace(data, size);
    read_framed(data, size, 0);
    read_framed(data, size, 1);
    decode_values(data, size);
    return 0;
}
