/* buf.c - growable byte buffers (rt_buf: the writers are inline, in
 * retrace.h) and bounds-checked read cursors (rt_cursor): little-endian
 * fixed-width integers, LEB128 varints and zigzag signed varints.
 *
 * Nothing here touches Python objects or the Python allocator, so the writer
 * thread can use these functions without holding the GIL. */
#include "retrace.h"

#include <stdlib.h>
#include <string.h>

int
rt_buf_grow(rt_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX - b->len)
        return -1;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

void
rt_buf_free(rt_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- cursors: on failure the cursor is left where it was ---------------- */

int
rt_cur_u8(rt_cursor *c, uint8_t *v)
{
    if (c->p >= c->end)
        return -1;
    *v = *c->p++;
    return 0;
}

int
rt_cur_u32(rt_cursor *c, uint32_t *v)
{
    if (c->end - c->p < 4)
        return -1;
    *v = rt_get_u32(c->p);
    c->p += 4;
    return 0;
}

int
rt_cur_u64(rt_cursor *c, uint64_t *v)
{
    if (c->end - c->p < 8)
        return -1;
    *v = rt_get_u64(c->p);
    c->p += 8;
    return 0;
}

int
rt_cur_varint(rt_cursor *c, uint64_t *v)
{
    const uint8_t *p = c->p;
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= c->end)
            return -1;
        uint8_t byte = *p++;
        /* The tenth byte holds bit 63 only; anything more overflows. */
        if (shift == 63 && byte > 1)
            return -1;
        r |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            c->p = p;
            *v = r;
            return 0;
        }
    }
    return -1;
}

int
rt_cur_svarint(rt_cursor *c, int64_t *v)
{
    uint64_t u;
    if (rt_cur_varint(c, &u) < 0)
        return -1;
    /* u >> 1 always fits in int64_t, so no conversion is out of range. */
    int64_t half = (int64_t)(u >> 1);
    *v = (u & 1) ? -half - 1 : half;
    return 0;
}

int
rt_cur_bytes(rt_cursor *c, size_t n, const uint8_t **out)
{
    if (n > (size_t)(c->end - c->p))
        return -1;
    *out = c->p;
    c->p += n;
    return 0;
}

int
rt_cur_str(rt_cursor *c, const uint8_t **s, size_t *n)
{
    const uint8_t *start = c->p;
    uint64_t len;
    if (rt_cur_varint(c, &len) < 0)
        return -1;
    if (len > (uint64_t)(c->end - c->p)) {
        c->p = start;
        return -1;
    }
    *s = c->p;
    *n = (size_t)len;
    c->p += len;
    return 0;
}

uint32_t
rt_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t
rt_get_u64(const uint8_t *p)
{
    return (uint64_t)rt_get_u32(p) | (uint64_t)rt_get_u32(p + 4) << 32;
}
