/* Parley wire protocol helpers; see proto.h and docs/PROTOCOL.md. */
#include "common/proto.h"

#include <string.h>

struct error_name {
    int code;
    const char *text;
};

static const struct error_name error_names[] = {
    {PROTO_E_BAD_REQUEST, "bad request"},
    {PROTO_E_BAD_PASSWORD, "invalid password"},
    {PROTO_E_NOT_NOW, "not allowed now"},
    {PROTO_E_NO_SUCH_USER, "no such user"},
    {PROTO_E_ALREADY_ONLINE, "user already logged in"},
    {PROTO_E_OFFLINE, "user offline"},
    {PROTO_E_TOO_LONG, "too long"},
    {PROTO_E_SELF, "cannot name yourself"},
    {PROTO_E_LOCKED, "account locked"},
    {PROTO_E_LOCKED_NOW, "account now locked"},
    {PROTO_E_RATE_LIMITED, "rate limited"},
    {PROTO_E_BLOCKED_BY_PEER, "recipient has blocked you"},
    {PROTO_E_BLOCKING_PEER, "you have blocked the recipient"},
    {PROTO_E_NOT_BLOCKED, "user was not blocked"},
    {PROTO_E_P2P_EXISTS, "private session exists"},
    {PROTO_E_P2P_DECLINED, "private session declined"},
    {PROTO_E_P2P_UNAVAILABLE, "peer has no private listener"},
    {PROTO_E_UNKNOWN_REQUEST, "unknown request"},
    {PROTO_E_STORE_UNAVAILABLE, "store unavailable"},
    {PROTO_E_QUEUE_FULL, "recipient has too many messages waiting"},
    {PROTO_E_BUSY, "busy, try again"},
    {PROTO_E_BAD_VERSION, "unsupported protocol version"},
};

const char *proto_error_text(int code)
{
    for (size_t i = 0; i < sizeof(error_names) / sizeof(error_names[0]); i++)
        if (error_names[i].code == code)
            return error_names[i].text;
    return "error";
}

/* Returns the length of the valid UTF-8 sequence at s (1..4), or 0 if invalid or forbidden. */
static size_t utf8_char(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    if (c < 0x20 || c == 0x7f)
        return 0;
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned cp;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp >= 0x80 && cp <= 0x9f)
        return 0;
    return n;
}

/* Returns true when all 8 bytes at `p` are printable ASCII (0x20..0x7e). */
static bool printable8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t below = (w - ones * 0x20) & ~w; /* a byte < 0x20 */
    uint64_t above = (w + ones * 0x01) | w;  /* a byte > 0x7e */
    return ((below | above) & high) == 0;
}

bool proto_text_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i + 8 <= len && printable8(p + i))
        i += 8;
    while (i < len) {
        if (p[i] >= 0x20 && p[i] < 0x7f) {
            i++;
            continue;
        }
        size_t n = utf8_char(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

char *proto_put_i64(char *out, int64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    char digits[20];
    size_t n = sizeof digits;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    if (v < 0)
        *out++ = '-';
    while (u >= 100) {
        const char *d = pairs + (u % 100) * 2;
        u /= 100;
        digits[--n] = d[1];
        digits[--n] = d[0];
    }
    if (u >= 10) {
        digits[--n] = pairs[u * 2 + 1];
        digits[--n] = pairs[u * 2];
    } else {
        digits[--n] = (char)('0' + u);
    }
    memcpy(out, digits + n, sizeof digits - n);
    return out + (sizeof digits - n);
}

int proto_validate(const char *s, size_t len)
{
    return proto_text_ok(s, len) ? PROTO_OK : PROTO_E_BAD_REQUEST;
}

bool proto_next_field(struct proto_slice *rest, struct proto_slice *field)
{
    if (rest->len == 0)
        return false;
    const char *sp = memchr(rest->ptr, ' ', rest->len);
    size_t n = sp ? (size_t)(sp - rest->ptr) : rest->len;
    if (n == 0)
        return false;
    field->ptr = rest->ptr;
    field->len = n;
    if (sp) {
        rest->ptr = sp + 1;
        rest->len -= n + 1;
    } else {
        rest->ptr += n;
        rest->len = 0;
    }
    return true;
}

bool proto_is_tag(struct proto_slice s)
{
    if (s.len == 0 || s.len > PROTO_MAX_TAG)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static bool printable_word(struct proto_slice s, size_t max)
{
    if (s.len == 0 || s.len > max)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] < 0x21 || (unsigned char)s.ptr[i] > 0x7e)
            return false;
    return true;
}

bool proto_is_name(struct proto_slice s)
{
    if (!printable_word(s, PROTO_MAX_NAME) || s.ptr[0] == PROTO_NAME_NOT_FIRST)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (memchr(PROTO_NAME_FORBIDDEN, s.ptr[i], sizeof PROTO_NAME_FORBIDDEN - 1))
            return false;
    return true;
}

bool proto_is_password(struct proto_slice s)
{
    return printable_word(s, PROTO_MAX_PASSWORD);
}

bool proto_parse_u64(struct proto_slice s, uint64_t *out)
{
    if (s.len == 0 || s.len > 18)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s.ptr[i] - '0');
    }
    *out = v;
    return true;
}

bool proto_slice_eq(struct proto_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

bool proto_slice_copy(struct proto_slice s, char *dst, size_t cap)
{
    if (s.len + 1 > cap)
        return false;
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = '\0';
    return true;
}
