/* Unit tests of src/client/identity.c: the key file made once (0600) and read back, refused
 * when others can read it; pins made on first contact, kept, refused when changed, forgotten;
 * safety numbers the same on both sides and different for another key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/identity.h"

static char base[256];

static int make_base(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/parley-ident-XXXXXX");
    return sodium_init() < 0 || !mkdtemp(base) ? -1 : 0;
}

static int remove_base(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void the_key_is_made_once_and_kept_private(void **state)
{
    (void)state;
    struct ident a, b;
    char err[512], path[600];
    struct stat st;
    assert_int_equal(ident_load(&a, base, "hans", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/hans/identity", base);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ident_load(&b, base, "hans", err, sizeof(err)), 0);
    assert_memory_equal(a.pub, b.pub, PCH_KEY_LEN);
    assert_int_equal(ident_load(&b, base, "yoda", err, sizeof(err)), 0);
    assert_memory_not_equal(a.pub, b.pub, PCH_KEY_LEN);
    /* A name that is not a safe file name gets a hex directory: nothing outside `base`. */
    assert_int_equal(ident_load(&b, base, "..", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/x-2e2e/identity", base);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(ident_load(&b, base, "a/b", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/x-612f62/identity", base);
    assert_int_equal(stat(path, &st), 0);
    /* A name that looks like a hex directory is hex too: it never shares a.b's key. */
    struct ident dotted, lookalike;
    assert_int_equal(ident_load(&dotted, base, "a.b", err, sizeof(err)), 0);
    assert_int_equal(ident_load(&lookalike, base, "x-612e62", err, sizeof(err)), 0);
    assert_string_not_equal(dotted.dir, lookalike.dir);
    assert_memory_not_equal(dotted.pub, lookalike.pub, PCH_KEY_LEN);
    snprintf(path, sizeof(path), "%s/hans/identity", base);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(ident_load(&b, base, "hans", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "readable by others"));
    assert_int_equal(chmod(path, 0600), 0);
    FILE *f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(ident_load(&b, base, "hans", err, sizeof(err)), -1);
    unlink(path);
}

static void pins_are_made_kept_refused_and_forgotten(void **state)
{
    (void)state;
    struct ident me;
    char err[512];
    uint8_t k1[PCH_KEY_LEN], k2[PCH_KEY_LEN], got[PCH_KEY_LEN];
    randombytes_buf(k1, sizeof(k1));
    randombytes_buf(k2, sizeof(k2));
    assert_int_equal(ident_load(&me, base, "luke", err, sizeof(err)), 0);
    assert_int_equal(ident_peer_key(&me, "vader", got), 0);
    assert_int_equal(ident_check_peer(&me, "vader", k1), IDENT_PIN_NEW);
    assert_int_equal(ident_check_peer(&me, "yoda", k2), IDENT_PIN_NEW);
    assert_int_equal(ident_check_peer(&me, "vader", k1), IDENT_PIN_SAME);
    assert_int_equal(ident_check_peer(&me, "vader", k2), IDENT_PIN_CHANGED);
    assert_int_equal(ident_peer_key(&me, "vader", got), 1);
    assert_memory_equal(got, k1, PCH_KEY_LEN);
    assert_int_equal(ident_forget(&me, "vader"), 1);
    assert_int_equal(ident_forget(&me, "vader"), 0);
    assert_int_equal(ident_check_peer(&me, "yoda", k2), IDENT_PIN_SAME);
    assert_int_equal(ident_check_peer(&me, "vader", k2), IDENT_PIN_NEW);
    char path[600];
    snprintf(path, sizeof(path), "%s/luke/known_peers", base);
    FILE *f = fopen(path, "a");
    fputs("garbage\n", f);
    fclose(f);
    assert_int_equal(ident_check_peer(&me, "r2d2", k2), IDENT_PIN_ERROR); /* past the bad line */
}

static void safety_numbers_agree_and_change_with_the_key(void **state)
{
    (void)state;
    uint8_t ka[PCH_KEY_LEN], kb[PCH_KEY_LEN], kc[PCH_KEY_LEN];
    char ab[IDENT_SAFETY_LEN + 1], ba[IDENT_SAFETY_LEN + 1], ac[IDENT_SAFETY_LEN + 1];
    char own[IDENT_OWN_LEN + 1];
    randombytes_buf(ka, sizeof(ka));
    randombytes_buf(kb, sizeof(kb));
    randombytes_buf(kc, sizeof(kc));
    ident_safety_number("hans", ka, "yoda", kb, ab);
    ident_safety_number("yoda", kb, "hans", ka, ba);
    ident_safety_number("hans", ka, "yoda", kc, ac);
    assert_string_equal(ab, ba);
    assert_string_not_equal(ab, ac);
    assert_int_equal(strlen(ab), 71);
    for (size_t i = 0; i < strlen(ab); i++)
        assert_true(i % 6 == 5 ? ab[i] == ' ' : (ab[i] >= '0' && ab[i] <= '9'));
    ident_own_number("hans", ka, own);
    assert_int_equal(strlen(own), 35);
    assert_true(strstr(ab, own) != NULL);
}

/* known_peers stops growing at IDENT_MAX_PEERS: a new peer is refused (not appended past what
 * can be read back), the pinned ones still work, and `forget` makes room. */
static void pins_stop_at_the_cap_and_forget_makes_room(void **state)
{
    (void)state;
    struct ident me;
    char err[512], path[IDENT_PATH_MAX + 16];
    uint8_t k[PCH_KEY_LEN];
    memset(k, 7, sizeof(k));
    assert_int_equal(ident_load(&me, base, "leia", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/known_peers", me.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < IDENT_MAX_PEERS; i++)
        fprintf(f, "p%d 0707070707070707070707070707070707070707070707070707070707070707\n", i);
    fclose(f);
    assert_int_equal(ident_check_peer(&me, "p9999", k), IDENT_PIN_SAME);
    assert_int_equal(ident_check_peer(&me, "newcomer", k), IDENT_PIN_FULL);
    assert_int_equal(ident_forget(&me, "p0"), 1);
    assert_int_equal(ident_check_peer(&me, "newcomer", k), IDENT_PIN_NEW);
    assert_int_equal(ident_check_peer(&me, "newcomer", k), IDENT_PIN_SAME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_key_is_made_once_and_kept_private),
        cmocka_unit_test(pins_are_made_kept_refused_and_forgotten),
        cmocka_unit_test(pins_stop_at_the_cap_and_forget_makes_room),
        cmocka_unit_test(safety_numbers_agree_and_change_with_the_key),
    };
    return cmocka_run_group_tests(tests, make_base, remove_base);
}
