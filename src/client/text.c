/* Text helpers; see text.h. */
#include "client/text.h"

#include "common/proto.h"

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

/* Returns the length of the printable character at `p` (1..4), or 0 when it must be replaced. */
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

size_t text_sanitize(const char *s, size_t len, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t n = printable_char(p + i, len - i);
        size_t w = n ? n : 1;
        if (o + w >= cap)
            break;
        if (n)
            memcpy(out + o, p + i, n);
        else
            out[o] = '?';
        o += w;
        i += w;
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
