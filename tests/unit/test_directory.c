/* Unit tests of src/server/directory.c: users by name and id, accounts, the online list,
 * blocks and de-duplication marks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/directory.h"

/* Sessions are opaque here: any distinct non-NULL pointers will do. */
static char session_storage[8];
#define SESSION(i) ((struct session *)(void *)&session_storage[(i)])

static void test_empty(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    assert_int_equal(d.count, 0);
    assert_int_equal(d.online_count, 0);
    assert_null(d.online_head);
    assert_null(directory_find(&d, "alice", 5));
    assert_null(directory_find(&d, "", 0));
    assert_null(directory_by_id(&d, 0));
    directory_free(&d);
}

static void test_add_find(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *alice = directory_add(&d, "alice");
    assert_non_null(alice);
    assert_string_equal(alice->name, "alice");
    assert_int_equal(alice->id, 0);
    assert_false(alice->has_account);
    assert_null(alice->online);
    assert_null(alice->secret);
    assert_int_equal(alice->n_blocked, 0);
    struct user *bob = directory_add(&d, "bob");
    assert_non_null(bob);
    assert_int_equal(bob->id, 1);
    assert_int_equal(d.count, 2);

    /* Adding again returns the same user. */
    assert_ptr_equal(directory_add(&d, "alice"), alice);
    assert_int_equal(d.count, 2);

    /* The name is copied. */
    char name[] = "carol";
    struct user *carol = directory_add(&d, name);
    assert_non_null(carol);
    name[0] = 'X';
    assert_string_equal(carol->name, "carol");
    assert_ptr_equal(directory_find(&d, "carol", 5), carol);
    assert_null(directory_find(&d, "Xarol", 5));

    /* Find by a slice of a frame. */
    const char *frame = "MSG alice hi bobby";
    assert_ptr_equal(directory_find(&d, frame + 4, 5), alice);
    assert_ptr_equal(directory_find(&d, frame + 13, 3), bob);
    assert_null(directory_find(&d, frame + 13, 4)); /* "bobb" */
    assert_null(directory_find(&d, frame + 4, 4));  /* "alic" */
    assert_null(directory_find(&d, frame + 4, 6));  /* "alice " */
    assert_null(directory_find(&d, "Alice", 5));

    /* By id. */
    assert_ptr_equal(directory_by_id(&d, 0), alice);
    assert_ptr_equal(directory_by_id(&d, 1), bob);
    assert_ptr_equal(directory_by_id(&d, 2), carol);
    assert_null(directory_by_id(&d, 3));
    assert_null(directory_by_id(&d, UINT32_MAX));
    directory_free(&d);
}

static void test_name_length(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    const char *max = "abcdefghijklmnopqrstuvwxyz012345"; /* 32 */
    const char *over = "abcdefghijklmnopqrstuvwxyz0123456";
    struct user *u = directory_add(&d, max);
    assert_non_null(u);
    assert_string_equal(u->name, max);
    assert_ptr_equal(directory_find(&d, max, 32), u);
    assert_null(directory_add(&d, over));
    assert_null(directory_find(&d, over, 33));
    assert_int_equal(d.count, 1);
    directory_free(&d);
}

static void test_many_users(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct directory d;
    directory_init(&d);
    struct user **users = malloc(N * sizeof *users);
    assert_non_null(users);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "u%d", i);
        users[i] = directory_add(&d, name);
        assert_non_null(users[i]);
        assert_int_equal(users[i]->id, (uint32_t)i);
    }
    assert_int_equal(d.count, N);
    /* Pointers stay valid and both indexes agree after growth. */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "u%d", i);
        assert_string_equal(users[i]->name, name);
        assert_ptr_equal(directory_find(&d, name, strlen(name)), users[i]);
        assert_ptr_equal(directory_by_id(&d, (uint32_t)i), users[i]);
    }
    assert_null(directory_by_id(&d, N));
    free(users);
    directory_free(&d);
}

static void test_set_account(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *u = directory_add(&d, "hans");
    assert_non_null(u);
    char secret[] = "falcon";
    assert_int_equal(directory_set_account(u, AUTH_PLAIN, secret), 0);
    assert_true(u->has_account);
    assert_int_equal(u->kind, AUTH_PLAIN);
    assert_non_null(u->secret);
    assert_ptr_not_equal(u->secret, secret);
    memcpy(secret, "XXXXXX", 6);
    assert_string_equal(u->secret, "falcon");

    /* Replacing the secret (the old one is freed: the sanitizer build checks leaks). */
    const char *hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA";
    assert_int_equal(directory_set_account(u, AUTH_ARGON2ID, hash), 0);
    assert_true(u->has_account);
    assert_int_equal(u->kind, AUTH_ARGON2ID);
    assert_string_equal(u->secret, hash);
    assert_ptr_not_equal(u->secret, hash);

    /* Other users are not touched. */
    struct user *v = directory_add(&d, "vader");
    assert_false(v->has_account);
    assert_null(v->secret);
    assert_ptr_equal(directory_find(&d, "hans", 4), u);
    directory_free(&d);
}

/* Checks the online list holds exactly the users of `want` (in any order) and is well linked. */
static void check_online(const struct directory *d, struct user **want, size_t n)
{
    assert_int_equal(d->online_count, n);
    if (n == 0) {
        assert_null(d->online_head);
        return;
    }
    assert_non_null(d->online_head);
    assert_null(d->online_head->online_prev);
    size_t seen = 0;
    const struct user *prev = NULL;
    for (const struct user *u = d->online_head; u; u = u->online_next) {
        assert_true(seen < n);
        assert_ptr_equal(u->online_prev, prev);
        assert_non_null(u->online);
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found = found || want[i] == u;
        if (!found)
            fail_msg("%s is in the online list but should not be", u->name);
        prev = u;
        seen++;
    }
    assert_int_equal(seen, n);
}

/* Removes element `i` from the array of `*n` users. */
static void drop(struct user **arr, size_t *n, const struct user *u)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == u) {
            memmove(arr + i, arr + i + 1, (*n - i - 1) * sizeof *arr);
            (*n)--;
            return;
        }
    fail_msg("not in the array");
}

static void test_online_list(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *u[6];
    const char *names[6] = {"a", "b", "c", "d", "e", "f"};
    for (int i = 0; i < 6; i++)
        assert_non_null(u[i] = directory_add(&d, names[i]));
    struct user *on[6];
    size_t n = 0;
    check_online(&d, on, n);
    for (int i = 0; i < 5; i++) {
        directory_set_online(&d, u[i], SESSION(i));
        assert_ptr_equal(u[i]->online, SESSION(i));
        on[n++] = u[i];
        check_online(&d, on, n);
    }
    assert_null(u[5]->online);

    /* Online twice, or with another session: still one entry. */
    directory_set_online(&d, u[2], SESSION(2));
    check_online(&d, on, n);
    directory_set_online(&d, u[2], SESSION(7));
    assert_ptr_equal(u[2]->online, SESSION(7));
    check_online(&d, on, n);

    /* Offline when already offline: nothing changes. */
    directory_set_online(&d, u[5], NULL);
    assert_null(u[5]->online);
    check_online(&d, on, n);

    /* Remove the head, the tail, then one in the middle. */
    struct user *head = d.online_head;
    directory_set_online(&d, head, NULL);
    assert_null(head->online);
    assert_null(head->online_next);
    assert_null(head->online_prev);
    drop(on, &n, head);
    check_online(&d, on, n);

    struct user *tail = d.online_head;
    while (tail->online_next)
        tail = tail->online_next;
    directory_set_online(&d, tail, NULL);
    drop(on, &n, tail);
    check_online(&d, on, n);

    assert_int_equal(n, 3);
    struct user *mid = d.online_head->online_next;
    assert_non_null(mid->online_next);
    directory_set_online(&d, mid, NULL);
    assert_null(mid->online_next);
    assert_null(mid->online_prev);
    drop(on, &n, mid);
    check_online(&d, on, n);

    /* A user who left comes back. */
    directory_set_online(&d, mid, SESSION(3));
    on[n++] = mid;
    check_online(&d, on, n);

    /* Everyone leaves. */
    while (n > 0) {
        struct user *x = on[n - 1];
        directory_set_online(&d, x, NULL);
        drop(on, &n, x);
        check_online(&d, on, n);
    }
    directory_set_online(&d, u[0], SESSION(0));
    on[n++] = u[0];
    check_online(&d, on, n);
    directory_free(&d);
}

/* Checks a's block list is strictly increasing and has `n` entries. */
static void check_sorted(const struct user *a, uint32_t n)
{
    assert_int_equal(a->n_blocked, n);
    for (uint32_t i = 1; i < a->n_blocked; i++)
        if (a->blocked[i - 1] >= a->blocked[i])
            fail_msg("block list not sorted at %u: %u then %u", i, a->blocked[i - 1],
                     a->blocked[i]);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 33) % n;
}

static void shuffle(uint32_t *a, uint32_t n)
{
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rnd(i + 1);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void test_block_unblock(void **state)
{
    (void)state;
    enum { N = 300 };
    struct directory d;
    directory_init(&d);
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "u%d", i);
        assert_non_null(directory_add(&d, name));
    }
    struct user *a = directory_by_id(&d, 17);
    struct user *other = directory_by_id(&d, 18);

    /* Nothing blocked yet. */
    assert_int_equal(directory_unblock(a, directory_by_id(&d, 0)), 0);
    assert_false(directory_blocks(a, directory_by_id(&d, 0)));

    /* Block every even id but a's own, in random order. */
    uint32_t ids[N];
    uint32_t m = 0;
    for (uint32_t i = 0; i < N; i += 2)
        if (i != a->id)
            ids[m++] = i;
    shuffle(ids, m);
    for (uint32_t i = 0; i < m; i++) {
        assert_int_equal(directory_block(a, directory_by_id(&d, ids[i])), 1);
        check_sorted(a, i + 1);
    }
    for (uint32_t i = 0; i < N; i++) {
        bool want = i % 2 == 0;
        if (directory_blocks(a, directory_by_id(&d, i)) != want)
            fail_msg("blocks(u17, u%u): got %d", i, !want);
        /* Blocks are one-way. */
        if (i != a->id)
            assert_false(directory_blocks(directory_by_id(&d, i), a));
    }
    assert_int_equal(other->n_blocked, 0);

    /* Idempotent. */
    assert_int_equal(directory_block(a, directory_by_id(&d, 0)), 0);
    assert_int_equal(directory_block(a, directory_by_id(&d, 298)), 0);
    assert_int_equal(directory_block(a, directory_by_id(&d, 100)), 0);
    check_sorted(a, m);

    /* Unblocking one never blocked. */
    assert_int_equal(directory_unblock(a, directory_by_id(&d, 1)), 0);
    assert_int_equal(directory_unblock(a, directory_by_id(&d, 299)), 0);
    assert_int_equal(directory_unblock(a, a), 0);
    check_sorted(a, m);

    /* Unblock half, at random, keeping order. */
    shuffle(ids, m);
    uint32_t half = m / 2;
    for (uint32_t i = 0; i < half; i++) {
        assert_int_equal(directory_unblock(a, directory_by_id(&d, ids[i])), 1);
        assert_int_equal(directory_unblock(a, directory_by_id(&d, ids[i])), 0);
        check_sorted(a, m - i - 1);
    }
    for (uint32_t i = 0; i < m; i++)
        assert_int_equal(directory_blocks(a, directory_by_id(&d, ids[i])), i >= half);

    /* Block again what was lifted, then lift everything. */
    for (uint32_t i = 0; i < half; i++)
        assert_int_equal(directory_block(a, directory_by_id(&d, ids[i])), 1);
    check_sorted(a, m);
    shuffle(ids, m);
    for (uint32_t i = 0; i < m; i++)
        assert_int_equal(directory_unblock(a, directory_by_id(&d, ids[i])), 1);
    check_sorted(a, 0);
    for (uint32_t i = 0; i < N; i++)
        assert_false(directory_blocks(a, directory_by_id(&d, i)));
    /* Lowest and highest ids at the ends of the list. */
    assert_int_equal(directory_block(a, directory_by_id(&d, N - 1)), 1);
    assert_int_equal(directory_block(a, directory_by_id(&d, 0)), 1);
    assert_int_equal(directory_block(a, directory_by_id(&d, 150)), 1);
    check_sorted(a, 3);
    assert_int_equal(a->blocked[0], 0);
    assert_int_equal(a->blocked[1], 150);
    assert_int_equal(a->blocked[2], N - 1);
    assert_int_equal(directory_unblock(a, directory_by_id(&d, N - 1)), 1);
    assert_int_equal(directory_unblock(a, directory_by_id(&d, 0)), 1);
    check_sorted(a, 1);
    assert_int_equal(a->blocked[0], 150);
    directory_free(&d);
}

static void test_related(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *a = directory_add(&d, "a");
    struct user *b = directory_add(&d, "b");
    struct user *c = directory_add(&d, "c");
    assert_false(directory_related(a, b));
    assert_false(directory_related(b, a));

    assert_int_equal(directory_block(a, b), 1);
    assert_true(directory_blocks(a, b));
    assert_false(directory_blocks(b, a));
    assert_true(directory_related(a, b));
    assert_true(directory_related(b, a));
    assert_false(directory_related(a, c));
    assert_false(directory_related(c, b));

    /* Both ways. */
    assert_int_equal(directory_block(b, a), 1);
    assert_true(directory_related(a, b));
    assert_int_equal(directory_unblock(a, b), 1);
    assert_true(directory_related(a, b));
    assert_true(directory_related(b, a));
    assert_int_equal(directory_unblock(b, a), 1);
    assert_false(directory_related(a, b));
    assert_false(directory_related(b, a));

    /* c blocks a: seen from both sides, not between a and b. */
    assert_int_equal(directory_block(c, a), 1);
    assert_true(directory_related(a, c));
    assert_true(directory_related(c, a));
    assert_false(directory_related(a, b));
    directory_free(&d);
}

static void test_mark(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *a = directory_add(&d, "a");
    struct user *b = directory_add(&d, "b");
    directory_mark_reset(&d);
    assert_false(directory_mark(&d, a));
    assert_true(directory_mark(&d, a));
    assert_true(directory_mark(&d, a));
    assert_false(directory_mark(&d, b));
    assert_true(directory_mark(&d, b));

    /* A new round: nobody is marked. */
    directory_mark_reset(&d);
    assert_false(directory_mark(&d, b));
    assert_false(directory_mark(&d, a));
    assert_true(directory_mark(&d, a));

    /* A user added during a round is not marked. */
    struct user *c = directory_add(&d, "c");
    assert_false(directory_mark(&d, c));
    assert_true(directory_mark(&d, c));

    /* Many rounds. */
    for (int i = 0; i < 1000; i++) {
        directory_mark_reset(&d);
        assert_false(directory_mark(&d, a));
        assert_true(directory_mark(&d, a));
        if (i % 3 == 0) {
            assert_false(directory_mark(&d, b));
            assert_true(directory_mark(&d, b));
        }
    }

    directory_free(&d);
}

/* After 2^32 rounds the counter wraps; marks from long-ago rounds must not count. */
static void test_mark_wrap(void **state)
{
    (void)state;
    struct directory d;
    directory_init(&d);
    struct user *a = directory_add(&d, "a");
    struct user *b = directory_add(&d, "b");
    directory_mark_reset(&d);
    assert_false(directory_mark(&d, b)); /* b carries the number of the first round */
    /* Pretend almost 2^32 rounds went by. */
    d.mark_epoch = UINT32_MAX - 1;
    directory_mark_reset(&d);
    assert_false(directory_mark(&d, a));
    assert_true(directory_mark(&d, a));
    directory_mark_reset(&d); /* wraps around */
    assert_false(directory_mark(&d, a));
    assert_false(directory_mark(&d, b));
    assert_true(directory_mark(&d, a));
    assert_true(directory_mark(&d, b));
    directory_mark_reset(&d);
    assert_false(directory_mark(&d, a));
    assert_false(directory_mark(&d, b));
    directory_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_add_find),
        cmocka_unit_test(test_name_length),   cmocka_unit_test(test_many_users),
        cmocka_unit_test(test_set_account),   cmocka_unit_test(test_online_list),
        cmocka_unit_test(test_block_unblock), cmocka_unit_test(test_related),
        cmocka_unit_test(test_mark),          cmocka_unit_test(test_mark_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
