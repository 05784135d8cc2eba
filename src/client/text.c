/* Text helpers; see text.h. */
#include "client/text.h"

#include "common/proto.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* Returns the length a UTF-8 sequence announces by its lead byte, or 0 for a bad lead byte. */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* Returns the length of the well-formed printable character at `p` (1..4), or 0 when the byte
 * at `p` must be replaced on its own (a control, broken UTF-8). */
static size_t printable_char(const unsigned char *p, size_t left)
{
    if (p[0] >= 0x20 && p[0] < 0x7f)
        return 1;
    size_t n = utf8_len(p[0]);
    if (n == 0 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* One well-formed sequence: the shared validator rejects overlongs, surrogates and C1. */
    return proto_text_ok((const char *)p, n) ? n : 0;
}

/* Decodes the well-formed multi-byte sequence of `n` bytes at `p`. */
static uint32_t code_point(const unsigned char *p, size_t n)
{
    static const unsigned char lead_bits[5] = {0, 0, 0x1f, 0x0f, 0x07};
    assert(n >= 2 && n <= 4);
    uint32_t cp = p[0] & lead_bits[n];
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (p[i] & 0x3f);
    return cp;
}

/* Returns true for an invisible format character or separator that can reorder, hide or split
 * what the terminal shows (bidirectional embeddings, overrides and isolates, zero-width
 * characters, tags). */
static bool is_format_char(uint32_t cp)
{
    static const struct {
        uint32_t lo, hi;
    } ranges[] = {
        {0x061c, 0x061c},   /* ARABIC LETTER MARK */
        {0x200b, 0x200f},   /* zero-width space, (non-)joiner, LRM, RLM */
        {0x2028, 0x2029},   /* line and paragraph separators */
        {0x202a, 0x202e},   /* LRE, RLE, PDF, LRO, RLO */
        {0x2060, 0x2064},   /* word joiner, invisible operators */
        {0x2066, 0x206f},   /* LRI, RLI, FSI, PDI and the deprecated format controls */
        {0xfeff, 0xfeff},   /* zero-width no-break space (BOM) */
        {0xfff9, 0xfffb},   /* interlinear annotation */
        {0xe0001, 0xe007f}, /* tags */
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        if (cp >= ranges[i].lo && cp <= ranges[i].hi)
            return true;
    return false;
}

/* Returns the bytes the character at `p` takes in the input and sets `*keep` to whether it is
 * copied as it is (else it becomes one '?'). */
static size_t next_char(const unsigned char *p, size_t left, bool *keep)
{
    size_t n = printable_char(p, left);
    *keep = n > 0 && (n == 1 || !is_format_char(code_point(p, n)));
    return n ? n : 1;
}

size_t text_sanitize(const char *s, size_t len, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        bool keep;
        size_t n = next_char(p + i, len - i, &keep);
        size_t w = keep ? n : 1;
        if (o + w >= cap)
            break;
        if (keep)
            memcpy(out + o, p + i, n);
        else
            out[o] = '?';
        o += w;
        i += n;
    }
    out[o] = '\0';
    return o;
}

bool text_secret_eq(const char *a, const char *b, size_t n)
{
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

bool text_is_secret(const char *s, size_t len)
{
    if (len != PROTO_SECRET_HEX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}
