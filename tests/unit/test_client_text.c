/* Unit tests of src/client/text.c: making received text safe to print, and secret checks.
 * The module is included whole, so this test links only the common objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "client/text.c"

/* Sanitises a literal (embedded NULs included) and compares with the expected text. */
#define CLEAN(in, want)                                                                            \
    do {                                                                                           \
        char out_[256];                                                                            \
        size_t n_ = text_sanitize((in), sizeof(in) - 1, out_, sizeof(out_));                       \
        assert_string_equal(out_, (want));                                                         \
        assert_int_equal(n_, strlen(want));                                                        \
    } while (0)

static void printable_text_is_kept(void **state)
{
    (void)state;
    CLEAN("", "");
    CLEAN("hello, world! ~{}[]", "hello, world! ~{}[]");
    CLEAN("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80",
          "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
}

static void controls_and_escapes_are_replaced(void **state)
{
    (void)state;
    CLEAN("\x1b[2J\x1b]0;title\x07", "?[2J?]0;title?");
    CLEAN("a\tb\rc\nd\0e\x7f", "a?b?c?d?e?");
    CLEAN("c1 \xc2\x85 \xc2\x9b", "c1 ?? ??"); /* U+0085, U+009B (CSI) */
}

static void broken_utf8_is_replaced(void **state)
{
    (void)state;
    CLEAN("\xc0\x80", "??");           /* overlong NUL */
    CLEAN("\xe0\x80\xaf", "???");      /* overlong */
    CLEAN("\xed\xa0\x80", "???");      /* surrogate */
    CLEAN("\xf4\x90\x80\x80", "????"); /* above U+10FFFF */
    CLEAN("ab\xe2\x9c", "ab??");       /* cut short */
    CLEAN("\x80x", "?x");              /* lone continuation */
    CLEAN("\xe2x\x93", "?x?");
}

/* Issue 9, point 8: bidirectional and invisible format characters reached the terminal and
 * reordered what it showed (`yoda` + U+202E + `...` displayed backwards). */
static void format_characters_are_replaced(void **state)
{
    (void)state;
    CLEAN("hi \xe2\x80\xae"
          "etavirp",
          "hi ?etavirp");                                              /* U+202E RLO */
    CLEAN("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad", "????"); /* U+202A-D */
    CLEAN("\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9", "????"); /* U+2066-9 */
    CLEAN("a\xe2\x80\x8b"
          "b\xe2\x80\x8c"
          "c\xe2\x80\x8d"
          "d\xe2\x80\x8e"
          "e\xe2\x80\x8f"
          "f",
          "a?b?c?d?e?f"); /* U+200B-F */
    CLEAN("\xd8\x9c\xe2\x80\xa8\xe2\x80\xa9\xe2\x81\xa0\xef\xbb\xbf", "?????");
    CLEAN("tag\xf3\xa0\x80\x81\xf3\xa0\x81\xbf", "tag??"); /* U+E0001, U+E007F */
    /* Their neighbours are ordinary characters and stay. */
    CLEAN("\xe2\x80\x8a\xe2\x80\x90\xe2\x80\xa7\xe2\x80\xaf\xe2\x80\xb0\xe2\x81\xa5",
          "\xe2\x80\x8a\xe2\x80\x90\xe2\x80\xa7\xe2\x80\xaf\xe2\x80\xb0\xe2\x81\xa5");
    CLEAN("\xd8\x9b\xef\xbb\xbe\xf3\xa0\x82\x80", "\xd8\x9b\xef\xbb\xbe\xf3\xa0\x82\x80");
    /* A replaced format character takes one byte of the output, so the copy still fits. */
    char out[4];
    assert_int_equal(text_sanitize("a\xe2\x80\xae"
                                   "b",
                                   5, out, sizeof(out)),
                     3);
    assert_string_equal(out, "a?b");
}

static void output_is_bounded_and_whole_characters(void **state)
{
    (void)state;
    char out[5];
    /* "ab" + a 3-byte character does not fit in 4 bytes + NUL; the character is not split. */
    size_t n = text_sanitize("ab\xe2\x9c\x93", 5, out, sizeof(out));
    assert_int_equal(n, 2);
    assert_string_equal(out, "ab");
    char one[1];
    assert_int_equal(text_sanitize("abc", 3, one, sizeof(one)), 0);
    assert_string_equal(one, "");
    /* The copy never grows: a buffer as long as the input (plus NUL) always holds it all. */
    const char junk[] = "\x1b\xff\xc3\xa9\x80zz";
    char same[sizeof(junk)];
    assert_int_equal(text_sanitize(junk, sizeof(junk) - 1, same, sizeof(same)), 7);
    assert_string_equal(same, "??\xc3\xa9?zz");
}

static void secrets(void **state)
{
    (void)state;
    assert_true(text_is_secret("0123456789abcdefABCDEF0123456789", 32));
    assert_false(text_is_secret("0123456789abcdefABCDEF012345678", 31));
    assert_false(text_is_secret("0123456789abcdefABCDEF01234567890", 33));
    assert_false(text_is_secret("0123456789abcdefABCDEF012345678g", 32));
    assert_true(text_secret_eq("abcd", "abcd", 4));
    assert_false(text_secret_eq("abcd", "abce", 4));
    assert_false(text_secret_eq("xbcd", "abcd", 4));
    assert_true(text_secret_eq("", "x", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(printable_text_is_kept),
        cmocka_unit_test(controls_and_escapes_are_replaced),
        cmocka_unit_test(broken_utf8_is_replaced),
        cmocka_unit_test(format_characters_are_replaced),
        cmocka_unit_test(output_is_bounded_and_whole_characters),
        cmocka_unit_test(secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
