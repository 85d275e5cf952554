/* buf.c - growable byte buffers (rt_buf) and bounds-checked read cursors
 * (rt_cursor): little-endian fixed-width integers, LEB128 varints and
 * zigzag signed varints.
 *
 * Nothing here touches Python objects or the Python allocator, so the writer
 * thread can use these functions without holding the GIL. */
#include "retrace.h"

#include <stdlib.h>
#include <string.h>

int
rt_buf_reserve(rt_buf *b, size_t extra)
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

int
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

int
rt_buf_put_u8(rt_buf *b, uint8_t v)
{
    if (rt_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = v;
    return 0;
}

int
rt_buf_put_u32(rt_buf *b, uint32_t v)
{
    uint8_t tmp[4];
    for (int i = 0; i < 4; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    return rt_buf_put(b, tmp, sizeof tmp);
}

int
rt_buf_put_u64(rt_buf *b, uint64_t v)
{
    uint8_t tmp[8];
    for (int i = 0; i < 8; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    return rt_buf_put(b, tmp, sizeof tmp);
}

int
rt_buf_put_varint(rt_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    return rt_buf_put(b, tmp, n);
}

int
rt_buf_put_svarint(rt_buf *b, int64_t v)
{
    /* Zigzag keeps small negative numbers short: 0,-1,1,-2 -> 0,1,2,3.
     * Written without shifting a negative value, which C leaves undefined. */
    uint64_t u = (uint64_t)v << 1;
    if (v < 0)
        u = ~u;
    return rt_buf_put_varint(b, u);
}

int
rt_buf_put_str(rt_buf *b, const char *s, size_t n)
{
    if (rt_buf_put_varint(b, n) < 0)
        return -1;
    return rt_buf_put(b, s, n);
}

void
rt_buf_clear(rt_buf *b)
{
    b->len = 0;
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
