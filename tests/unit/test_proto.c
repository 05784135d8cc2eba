/* Unit tests of src/common/proto.c: frame validation (UTF-8 and forbidden bytes), field
 * splitting, tags, names, passwords, numbers, slices and error texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/proto.h"

/* A slice over a string literal (embedded NULs included, the terminating one not). */
#define LIT(s) ((struct proto_slice){(s), sizeof(s) - 1})

static struct proto_slice slice(const char *p, size_t len)
{
    struct proto_slice s = {p, len};
    return s;
}

/* proto_text_ok and proto_validate must agree; returns the verdict. */
static bool text_ok(const void *p, size_t len)
{
    bool ok = proto_text_ok(p, len);
    int rc = proto_validate(p, len);
    assert_int_equal(rc, ok ? PROTO_OK : PROTO_E_BAD_REQUEST);
    return ok;
}

#define ACCEPT(s) assert_true(text_ok((s), sizeof(s) - 1))
#define REJECT(s) assert_false(text_ok((s), sizeof(s) - 1))

/* Reference: the well-formed UTF-8 byte sequences of Unicode Table 3-7, minus the characters
 * the protocol forbids (C0, DEL, C1). Returns the length of the character at s, or 0. */
static size_t ref_char(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
#define IN(x, lo, hi) ((x) >= (lo) && (x) <= (hi))
    if (c <= 0x7f)
        return (c >= 0x20 && c != 0x7f) ? 1 : 0;
    if (IN(c, 0xc2, 0xdf)) {
        if (left < 2 || !IN(s[1], 0x80, 0xbf))
            return 0;
        if (c == 0xc2 && s[1] <= 0x9f) /* U+0080..U+009F */
            return 0;
        return 2;
    }
    if (IN(c, 0xe0, 0xef)) {
        unsigned lo = 0x80, hi = 0xbf;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
        if (left < 3 || !IN(s[1], lo, hi) || !IN(s[2], 0x80, 0xbf))
            return 0;
        return 3;
    }
    if (IN(c, 0xf0, 0xf4)) {
        unsigned lo = 0x80, hi = 0xbf;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
        if (left < 4 || !IN(s[1], lo, hi) || !IN(s[2], 0x80, 0xbf) || !IN(s[3], 0x80, 0xbf))
            return 0;
        return 4;
    }
    return 0;
#undef IN
}

static bool ref_text_ok(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = ref_char(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static void test_text_ascii(void **state)
{
    (void)state;
    ACCEPT("");
    ACCEPT("hello world");
    ACCEPT("1 MSG bob hi there  two spaces ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./");
    /* Every printable ASCII byte, alone and all together. */
    char all[0x7f - 0x20];
    for (unsigned c = 0x20; c < 0x7f; c++) {
        char one = (char)c;
        assert_true(text_ok(&one, 1));
        all[c - 0x20] = (char)c;
    }
    assert_true(text_ok(all, sizeof all));
}

static void test_text_utf8_valid(void **state)
{
    (void)state;
    ACCEPT("\xc2\xa0");                  /* U+00A0, first after C1 */
    ACCEPT("caf\xc3\xa9");               /* é */
    ACCEPT("\xdf\xbf");                  /* U+07FF */
    ACCEPT("\xe0\xa0\x80");              /* U+0800, smallest 3-byte */
    ACCEPT("5 \xe2\x82\xac");            /* € */
    ACCEPT("\xed\x9f\xbf");              /* U+D7FF, just below surrogates */
    ACCEPT("\xee\x80\x80");              /* U+E000, just above surrogates */
    ACCEPT("\xef\xbf\xbf");              /* U+FFFF */
    ACCEPT("\xf0\x90\x80\x80");          /* U+10000, smallest 4-byte */
    ACCEPT("hi \xf0\x9f\x98\x80 there"); /* 😀 */
    ACCEPT("\xf4\x8f\xbf\xbf");          /* U+10FFFF, the last code point */
    ACCEPT("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

static void test_text_c0_del(void **state)
{
    (void)state;
    /* Every C0 byte, and DEL, alone, at the start, in the middle and at the end. */
    unsigned bad[33];
    for (unsigned c = 0; c < 0x20; c++)
        bad[c] = c;
    bad[32] = 0x7f;
    for (size_t i = 0; i < 33; i++) {
        char b = (char)bad[i];
        char buf[8];
        assert_false(text_ok(&b, 1));
        memcpy(buf, "ab", 2);
        buf[2] = b;
        assert_false(text_ok(buf, 3)); /* at the end */
        buf[3] = 'c';
        assert_false(text_ok(buf, 4)); /* in the middle */
        buf[0] = b;
        buf[1] = 'x';
        assert_false(text_ok(buf, 2)); /* at the start */
    }
    REJECT("a\0b");
    REJECT("abc\r");
    REJECT("a\tb");
    REJECT("\x1b[31mred");
    REJECT("a\nb");
    REJECT("del\x7f");
    /* A forbidden byte right after a valid multi-byte character. */
    REJECT("\xc3\xa9\x1b");
    REJECT("\xe2\x82\xac\x7f");
}

static void test_text_c1(void **state)
{
    (void)state;
    for (unsigned c = 0x80; c <= 0x9f; c++) {
        char buf[4] = {'x', (char)0xc2, (char)c, 'y'};
        assert_false(text_ok(buf + 1, 2));
        assert_false(text_ok(buf, 4));
    }
    REJECT("\xc2\x80");
    REJECT("\xc2\x85"); /* NEL */
    REJECT("\xc2\x9b"); /* CSI */
    REJECT("\xc2\x9f");
    ACCEPT("\xc2\xa0");
    /* The C1 bytes on their own are stray continuation bytes. */
    REJECT("\x9b");
    REJECT("\x85");
}

static void test_text_overlong(void **state)
{
    (void)state;
    REJECT("\xc0\xaf"); /* '/' */
    REJECT("\xc0\x80"); /* NUL */
    REJECT("\xc1\xbf");
    REJECT("\xc0\x8a"); /* LF */
    REJECT("\xe0\x80\xaf");
    REJECT("\xe0\x9f\xbf"); /* U+07FF in 3 bytes */
    REJECT("\xf0\x80\x80\xaf");
    REJECT("\xf0\x8f\xbf\xbf"); /* U+FFFF in 4 bytes */
    REJECT("ok \xc0\xaf ok");
}

static void test_text_surrogates_and_range(void **state)
{
    (void)state;
    REJECT("\xed\xa0\x80");             /* U+D800 */
    REJECT("\xed\xad\xbf");             /* U+DB7F */
    REJECT("\xed\xb0\x80");             /* U+DC00 */
    REJECT("\xed\xbf\xbf");             /* U+DFFF */
    REJECT("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 form of 😀 */
    REJECT("\xf4\x90\x80\x80");         /* U+110000 */
    REJECT("\xf4\xbf\xbf\xbf");
    REJECT("\xf7\xbf\xbf\xbf");
    for (unsigned c = 0xf5; c <= 0xff; c++) {
        char one = (char)c;
        char four[4] = {(char)c, (char)0x80, (char)0x80, (char)0x80};
        char five[5] = {(char)c, (char)0x80, (char)0x80, (char)0x80, (char)0x80};
        assert_false(text_ok(&one, 1));
        assert_false(text_ok(four, 4));
        assert_false(text_ok(five, 5));
    }
}

static void test_text_truncated_and_stray(void **state)
{
    (void)state;
    REJECT("\xc3");
    REJECT("caf\xc3");
    REJECT("\xe2\x82");
    REJECT("5 \xe2");
    REJECT("\xf0\x9f\x98");
    REJECT("\xf0\x9f");
    REJECT("\xf0");
    /* Truncated by the next character, not by the end. */
    REJECT("\xc3 a");
    REJECT("\xe2\x82 ");
    REJECT("\xf0\x9f\x98 ");
    REJECT("\xe2\x82\xc3\xa9");
    /* Stray continuation bytes. */
    REJECT("\x80");
    REJECT("\xbf");
    REJECT("a\x80");
    REJECT("\x80"
           "a");
    REJECT("\xc3\xa9\xa9");
    REJECT("\xe2\x82\xac\x80");
    /* Length counts, not a NUL: a valid character cut by the length. */
    const char *euro = "\xe2\x82\xac";
    assert_true(text_ok(euro, 3));
    assert_false(text_ok(euro, 2));
    assert_false(text_ok(euro, 1));
    assert_true(text_ok(euro, 0));
}

/* Every string of one, two and three bytes, checked against the reference. */
static void test_text_exhaustive_short(void **state)
{
    (void)state;
    unsigned char b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        if (proto_text_ok((const char *)b, 1) != ref_text_ok(b, 1))
            fail_msg("1-byte %02x: got %d", x, !ref_text_ok(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            if (proto_text_ok((const char *)b, 2) != ref_text_ok(b, 2))
                fail_msg("2-byte %02x %02x: got %d", x, y, !ref_text_ok(b, 2));
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (unsigned char)z;
                if (proto_text_ok((const char *)b, 3) != ref_text_ok(b, 3))
                    fail_msg("3-byte %02x %02x %02x: got %d", x, y, z, !ref_text_ok(b, 3));
            }
        }
    }
}

/* Four-byte strings: every first and second byte with boundary third and fourth bytes. */
static void test_text_exhaustive_four(void **state)
{
    (void)state;
    static const unsigned char tail[] = {0x00, 0x20, 0x41, 0x7f, 0x80, 0x8f, 0x90,
                                         0x9f, 0xa0, 0xbf, 0xc0, 0xc3, 0xf0, 0xff};
    unsigned char b[4];
    for (unsigned w = 0; w < 256; w++)
        for (unsigned x = 0; x < 256; x++)
            for (size_t i = 0; i < sizeof tail; i++)
                for (size_t j = 0; j < sizeof tail; j++) {
                    b[0] = (unsigned char)w;
                    b[1] = (unsigned char)x;
                    b[2] = tail[i];
                    b[3] = tail[j];
                    if (proto_text_ok((const char *)b, 4) != ref_text_ok(b, 4))
                        fail_msg("4-byte %02x %02x %02x %02x: got %d", w, x, tail[i], tail[j],
                                 !ref_text_ok(b, 4));
                }
}

/* Long texts are checked 8 bytes at a time while they are plain ASCII: every byte value at
 * every position of a 24-byte text (and of its tails) must get the byte-wise verdict. */
static void test_text_every_byte_every_position(void **state)
{
    (void)state;
    unsigned char b[24];
    for (size_t pos = 0; pos < sizeof b; pos++)
        for (unsigned v = 0; v < 256; v++) {
            memset(b, 'a' + (int)(pos % 26), sizeof b);
            b[pos] = (unsigned char)v;
            for (size_t start = 0; start <= pos; start += 3) {
                size_t len = sizeof b - start;
                if (proto_text_ok((const char *)b + start, len) != ref_text_ok(b + start, len))
                    fail_msg("byte %02x at %zu of %zu: got %d", v, pos - start, len,
                             !ref_text_ok(b + start, len));
            }
        }
}

static void test_put_i64(void **state)
{
    (void)state;
    static const struct {
        int64_t v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {10, "10"},
        {-1, "-1"},
        {1234567890123LL, "1234567890123"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(buf, 'x', sizeof buf);
        char *end = proto_put_i64(buf, cases[i].v);
        *end = '\0';
        assert_string_equal(buf, cases[i].text);
    }
}

/* Splits `s` into fields the way a reader does; returns how many were taken. */
static size_t split(struct proto_slice *rest, struct proto_slice *fields, size_t max)
{
    size_t n = 0;
    while (n < max && proto_next_field(rest, &fields[n]))
        n++;
    return n;
}

static void test_next_field_basic(void **state)
{
    (void)state;
    const char *line = "12 MSG bob";
    struct proto_slice rest = slice(line, strlen(line));
    struct proto_slice f[8];
    assert_int_equal(split(&rest, f, 8), 3);
    assert_true(proto_slice_eq(f[0], "12"));
    assert_true(proto_slice_eq(f[1], "MSG"));
    assert_true(proto_slice_eq(f[2], "bob"));
    /* Fields are views into the frame, not copies. */
    assert_ptr_equal(f[0].ptr, line);
    assert_ptr_equal(f[1].ptr, line + 3);
    assert_ptr_equal(f[2].ptr, line + 7);
    assert_int_equal(rest.len, 0);

    /* A single field is also the last one. */
    rest = LIT("WHO");
    assert_true(proto_next_field(&rest, &f[0]));
    assert_true(proto_slice_eq(f[0], "WHO"));
    assert_int_equal(rest.len, 0);
    assert_false(proto_next_field(&rest, &f[1]));

    /* Nothing left. */
    rest = LIT("");
    assert_false(proto_next_field(&rest, &f[0]));

    /* The field stops at the slice length, not at a NUL. */
    rest = slice("abc def", 5);
    assert_true(proto_next_field(&rest, &f[0]));
    assert_true(proto_slice_eq(f[0], "abc"));
    assert_true(proto_next_field(&rest, &f[1]));
    assert_true(proto_slice_eq(f[1], "d"));
    assert_false(proto_next_field(&rest, &f[2]));
}

static void test_next_field_empty(void **state)
{
    (void)state;
    struct proto_slice f;
    struct proto_slice rest = LIT(" a");
    assert_false(proto_next_field(&rest, &f)); /* empty field at the start */

    rest = LIT(" ");
    assert_false(proto_next_field(&rest, &f));

    /* Double space: the second field would be empty. */
    rest = LIT("a  b");
    assert_true(proto_next_field(&rest, &f));
    assert_true(proto_slice_eq(f, "a"));
    assert_int_equal(rest.len, 2);
    assert_memory_equal(rest.ptr, " b", 2);
    assert_false(proto_next_field(&rest, &f));
}

static void test_next_field_rest(void **state)
{
    (void)state;
    /* The text of a MSG is what is left after the fields, spaces included. */
    const char *line = "7 MSG bob hello  world,   three spaces ";
    struct proto_slice rest = slice(line, strlen(line));
    struct proto_slice f[3];
    assert_int_equal(split(&rest, f, 3), 3);
    assert_true(proto_slice_eq(f[0], "7"));
    assert_true(proto_slice_eq(f[1], "MSG"));
    assert_true(proto_slice_eq(f[2], "bob"));
    assert_ptr_equal(rest.ptr, line + 10);
    assert_int_equal(rest.len, strlen("hello  world,   three spaces "));
    assert_memory_equal(rest.ptr, "hello  world,   three spaces ", rest.len);

    /* A trailing separator leaves an empty rest. */
    rest = LIT("a ");
    assert_true(proto_next_field(&rest, &f[0]));
    assert_true(proto_slice_eq(f[0], "a"));
    assert_int_equal(rest.len, 0);
    assert_false(proto_next_field(&rest, &f[1]));
}

static void test_is_tag(void **state)
{
    (void)state;
    assert_true(proto_is_tag(LIT("1")));
    assert_true(proto_is_tag(LIT("a")));
    assert_true(proto_is_tag(LIT("Z9")));
    assert_true(proto_is_tag(LIT("abcdefABCDEF0123")));   /* 16 */
    assert_false(proto_is_tag(LIT("abcdefABCDEF01234"))); /* 17 */
    assert_false(proto_is_tag(LIT("")));
    assert_false(proto_is_tag(LIT("*")));
    assert_false(proto_is_tag(LIT("-")));
    assert_false(proto_is_tag(LIT("a-b")));
    assert_false(proto_is_tag(LIT("a b")));
    assert_false(proto_is_tag(LIT("a_b")));
    assert_false(proto_is_tag(LIT("\xc3\xa9")));
    assert_false(proto_is_tag(LIT("ab\0")));
    /* Length counts, not a NUL. */
    assert_true(proto_is_tag(slice("abc*", 3)));
    /* Every single byte: exactly the 62 alphanumerics pass. */
    int passed = 0;
    for (unsigned c = 0; c < 256; c++) {
        char one = (char)c;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool got = proto_is_tag(slice(&one, 1));
        if (got != alnum)
            fail_msg("tag byte 0x%02x: got %d", c, got);
        passed += got;
    }
    assert_int_equal(passed, 62);
}

/* The bytes a name may hold in the middle and at the start (docs/PROTOCOL.md "Names"). */
static bool name_byte_ok(unsigned c, bool first)
{
    if (c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == ':')
        return false;
    return !(first && c == '#');
}

static bool password_byte_ok(unsigned c, bool first)
{
    (void)first;
    return c >= 0x21 && c <= 0x7e;
}

static void check_word(bool (*is)(struct proto_slice), size_t max,
                       bool (*byte_ok)(unsigned c, bool first))
{
    char buf[PROTO_MAX_PASSWORD + 2];
    memset(buf, 'x', sizeof buf);
    assert_false(is(slice(buf, 0)));
    assert_true(is(slice(buf, 1)));
    assert_true(is(slice(buf, max)));
    assert_false(is(slice(buf, max + 1)));
    /* Every byte in the middle, at the start and alone. */
    for (unsigned c = 0; c < 256; c++) {
        char w[3] = {'a', (char)c, 'b'};
        bool mid = byte_ok(c, false), first = byte_ok(c, true);
        if (is(slice(w, 3)) != mid)
            fail_msg("byte 0x%02x in a word: got %d", c, !mid);
        if (is(slice(w + 1, 2)) != first)
            fail_msg("byte 0x%02x first: got %d", c, !first);
        if (is(slice(w + 1, 1)) != first)
            fail_msg("byte 0x%02x alone: got %d", c, !first);
    }
    assert_false(is(LIT("a b")));
    assert_false(is(LIT(" ab")));
    assert_false(is(LIT("ab ")));
    assert_false(is(LIT("caf\xc3\xa9")));
    assert_false(is(LIT("ab\0")));
    assert_true(is(LIT("!~*@#$%^&")));
}

static void test_is_name(void **state)
{
    (void)state;
    assert_int_equal(PROTO_MAX_NAME, 32);
    check_word(proto_is_name, PROTO_MAX_NAME, name_byte_ok);
    assert_true(proto_is_name(LIT("hans")));
    assert_true(proto_is_name(LIT("abcdefghijklmnopqrstuvwxyz012345")));
    assert_false(proto_is_name(LIT("abcdefghijklmnopqrstuvwxyz0123456")));
    /* Issue 9: a comment in the credentials file, and names that pass for another kind of
     * line (`yoda(private): hi`, `yoda: hi`). */
    assert_false(proto_is_name(LIT("#x")));
    assert_false(proto_is_name(LIT("#")));
    assert_true(proto_is_name(LIT("x#")));
    assert_true(proto_is_name(LIT("c#dev")));
    assert_false(proto_is_name(LIT("yoda(private)")));
    assert_false(proto_is_name(LIT("yoda:")));
    assert_false(proto_is_name(LIT("a(b")));
    assert_false(proto_is_name(LIT("a)b")));
}

static void test_is_password(void **state)
{
    (void)state;
    assert_int_equal(PROTO_MAX_PASSWORD, 128);
    check_word(proto_is_password, PROTO_MAX_PASSWORD, password_byte_ok);
    assert_true(proto_is_password(LIT("falcon*solo")));
    assert_true(proto_is_password(LIT("#(pass):")));
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 12345;
    assert_true(proto_parse_u64(LIT("0"), &v));
    assert_int_equal(v, 0);
    assert_true(proto_parse_u64(LIT("42"), &v));
    assert_int_equal(v, 42);
    assert_true(proto_parse_u64(LIT("007"), &v));
    assert_int_equal(v, 7);
    assert_true(proto_parse_u64(LIT("1764081000"), &v));
    assert_int_equal(v, 1764081000ull);
    assert_true(proto_parse_u64(LIT("999999999999999999"), &v)); /* 18 digits */
    assert_int_equal(v, 999999999999999999ull);
    assert_true(proto_parse_u64(LIT("123456789012345678"), &v));
    assert_int_equal(v, 123456789012345678ull);
    assert_false(proto_parse_u64(LIT("1000000000000000000"), &v)); /* 19 digits */
    assert_false(proto_parse_u64(LIT("0000000000000000000"), &v));
    assert_false(proto_parse_u64(LIT("18446744073709551616"), &v));
    assert_false(proto_parse_u64(LIT(""), &v));
    assert_false(proto_parse_u64(LIT("+1"), &v));
    assert_false(proto_parse_u64(LIT("-1"), &v));
    assert_false(proto_parse_u64(LIT(" 1"), &v));
    assert_false(proto_parse_u64(LIT("1 "), &v));
    assert_false(proto_parse_u64(LIT("1 2"), &v));
    assert_false(proto_parse_u64(LIT("1a"), &v));
    assert_false(proto_parse_u64(LIT("0x10"), &v));
    assert_false(proto_parse_u64(LIT("1.5"), &v));
    assert_false(proto_parse_u64(LIT("1e3"), &v));
    assert_false(proto_parse_u64(LIT("1\0"), &v));
    assert_false(proto_parse_u64(LIT("\xd9\xa1"), &v)); /* ARABIC-INDIC DIGIT ONE */
    /* The slice length counts, not a NUL. */
    assert_true(proto_parse_u64(slice("12345", 2), &v));
    assert_int_equal(v, 12);
}

static void test_slice_eq(void **state)
{
    (void)state;
    assert_true(proto_slice_eq(LIT("MSG"), "MSG"));
    assert_false(proto_slice_eq(LIT("MSG"), "MS"));
    assert_false(proto_slice_eq(LIT("MS"), "MSG"));
    assert_false(proto_slice_eq(LIT("MSG"), "msg"));
    assert_false(proto_slice_eq(LIT("MSX"), "MSG"));
    assert_true(proto_slice_eq(LIT(""), ""));
    assert_false(proto_slice_eq(LIT(""), "a"));
    assert_false(proto_slice_eq(LIT("a"), ""));
    /* Not NUL-terminated: only the first len bytes count. */
    assert_true(proto_slice_eq(slice("HELLOX", 5), "HELLO"));
    assert_false(proto_slice_eq(slice("HELLOX", 6), "HELLO"));
    assert_false(proto_slice_eq(LIT("a\0b"), "a"));
}

static void test_slice_copy(void **state)
{
    (void)state;
    char buf[16];
    /* Fits with room to spare; the bytes after the NUL are untouched. */
    memset(buf, '#', sizeof buf);
    assert_true(proto_slice_copy(slice("hello world", 5), buf, 8));
    assert_string_equal(buf, "hello");
    assert_int_equal(buf[6], '#');
    assert_int_equal(buf[8], '#');

    /* Exact fit: len + NUL == cap. */
    memset(buf, '#', sizeof buf);
    assert_true(proto_slice_copy(LIT("abcdefg"), buf, 8));
    assert_string_equal(buf, "abcdefg");
    assert_int_equal(buf[8], '#');

    /* One byte too long: refused, nothing written past cap. */
    memset(buf, '#', sizeof buf);
    assert_false(proto_slice_copy(LIT("abcdefgh"), buf, 8));
    for (size_t i = 8; i < sizeof buf; i++)
        assert_int_equal(buf[i], '#');
    assert_false(proto_slice_copy(LIT("much longer than the buffer"), buf, 8));
    for (size_t i = 8; i < sizeof buf; i++)
        assert_int_equal(buf[i], '#');

    /* Empty slice. */
    memset(buf, '#', sizeof buf);
    assert_true(proto_slice_copy(LIT(""), buf, 1));
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], '#');
    assert_false(proto_slice_copy(LIT(""), buf, 0));
    assert_false(proto_slice_copy(LIT("a"), buf, 1));
    assert_int_equal(buf[1], '#');

    /* A name of PROTO_MAX_NAME bytes fits a name buffer. */
    char name[PROTO_MAX_NAME + 1];
    assert_true(proto_slice_copy(LIT("abcdefghijklmnopqrstuvwxyz012345"), name, sizeof name));
    assert_string_equal(name, "abcdefghijklmnopqrstuvwxyz012345");
    assert_false(proto_slice_copy(LIT("abcdefghijklmnopqrstuvwxyz0123456"), name, sizeof name));
}

static void test_error_text(void **state)
{
    (void)state;
    static const int codes[] = {
        PROTO_E_BAD_REQUEST,
        PROTO_E_BAD_PASSWORD,
        PROTO_E_NOT_NOW,
        PROTO_E_NO_SUCH_USER,
        PROTO_E_ALREADY_ONLINE,
        PROTO_E_OFFLINE,
        PROTO_E_TOO_LONG,
        PROTO_E_SELF,
        PROTO_E_LOCKED,
        PROTO_E_LOCKED_NOW,
        PROTO_E_RATE_LIMITED,
        PROTO_E_BLOCKED_BY_PEER,
        PROTO_E_BLOCKING_PEER,
        PROTO_E_NOT_BLOCKED,
        PROTO_E_P2P_EXISTS,
        PROTO_E_P2P_DECLINED,
        PROTO_E_P2P_UNAVAILABLE,
        PROTO_E_UNKNOWN_REQUEST,
        PROTO_E_STORE_UNAVAILABLE,
        PROTO_E_BAD_VERSION,
        PROTO_E_BUSY,
    };
    const size_t n = sizeof codes / sizeof codes[0];
    assert_int_equal(n, 21);
    const char *unknown = proto_error_text(999);
    assert_non_null(unknown);
    assert_true(strlen(unknown) > 0);
    for (size_t i = 0; i < n; i++) {
        const char *t = proto_error_text(codes[i]);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
        /* Each known code has its own text, distinct from the fallback ... */
        assert_string_not_equal(t, unknown);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(t, proto_error_text(codes[j]));
        /* ... which is itself a valid frame text. */
        assert_true(proto_text_ok(t, strlen(t)));
    }
    assert_string_equal(proto_error_text(PROTO_E_NO_SUCH_USER), "no such user");
    assert_string_equal(proto_error_text(PROTO_E_BAD_REQUEST), "bad request");
    assert_string_equal(proto_error_text(PROTO_E_TOO_LONG), "too long");
    assert_string_equal(proto_error_text(PROTO_E_RATE_LIMITED), "rate limited");

    /* Unknown codes get the same never-NULL fallback. */
    static const int unknown_codes[] = {0, -1, 1, 200, 402, 499, 500, 504, 600, 65536};
    for (size_t i = 0; i < sizeof unknown_codes / sizeof unknown_codes[0]; i++) {
        const char *t = proto_error_text(unknown_codes[i]);
        assert_non_null(t);
        assert_string_equal(t, unknown);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_ascii),
        cmocka_unit_test(test_text_every_byte_every_position),
        cmocka_unit_test(test_put_i64),
        cmocka_unit_test(test_text_utf8_valid),
        cmocka_unit_test(test_text_c0_del),
        cmocka_unit_test(test_text_c1),
        cmocka_unit_test(test_text_overlong),
        cmocka_unit_test(test_text_surrogates_and_range),
        cmocka_unit_test(test_text_truncated_and_stray),
        cmocka_unit_test(test_text_exhaustive_short),
        cmocka_unit_test(test_text_exhaustive_four),
        cmocka_unit_test(test_next_field_basic),
        cmocka_unit_test(test_next_field_empty),
        cmocka_unit_test(test_next_field_rest),
        cmocka_unit_test(test_is_tag),
        cmocka_unit_test(test_is_name),
        cmocka_unit_test(test_is_password),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_slice_eq),
        cmocka_unit_test(test_slice_copy),
        cmocka_unit_test(test_error_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
