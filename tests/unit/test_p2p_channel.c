/* Unit tests of src/client/p2p_channel.c: the published Noise_XXpsk3_25519_ChaChaPoly_SHA256
 * vector (tests/unit/vectors/noise_xxpsk3.txt, read from the repository root as `make unit`
 * runs), then every refusal: wrong PSK, another static key, replayed handshakes, a flipped
 * bit anywhere, truncated, replayed, reordered and oversized records, turns out of order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/p2p_channel.h"

#define VECTOR_FILE "tests/unit/vectors/noise_xxpsk3.txt"
#define MAX_MSGS 8
#define MAX_HEX 512

struct vec_bytes {
    uint8_t b[MAX_HEX / 2];
    size_t n;
};

struct vector {
    struct vec_bytes prologue, psk, init_s, init_e, resp_s, resp_e, hash;
    struct vec_bytes payload[MAX_MSGS], cipher[MAX_MSGS];
    int n_payload, n_cipher;
};

static void hex_into(const char *hex, struct vec_bytes *out)
{
    assert_int_equal(sodium_hex2bin(out->b, sizeof(out->b), hex, strlen(hex), NULL, &out->n, NULL),
                     0);
}

static void load_vector(struct vector *v)
{
    memset(v, 0, sizeof(*v));
    FILE *f = fopen(VECTOR_FILE, "r");
    assert_non_null(f);
    char key[64], hex[MAX_HEX + 1];
    char line[MAX_HEX + 80];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || sscanf(line, "%63s %512s", key, hex) != 2)
            continue;
        struct {
            const char *name;
            struct vec_bytes *into;
        } fields[] = {
            {"prologue", &v->prologue},   {"psk", &v->psk},
            {"init_static", &v->init_s},  {"init_ephemeral", &v->init_e},
            {"resp_static", &v->resp_s},  {"resp_ephemeral", &v->resp_e},
            {"handshake_hash", &v->hash},
        };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            if (strcmp(key, fields[i].name) == 0)
                hex_into(hex, fields[i].into);
        if (strcmp(key, "payload") == 0 && v->n_payload < MAX_MSGS)
            hex_into(hex, &v->payload[v->n_payload++]);
        if (strcmp(key, "ciphertext") == 0 && v->n_cipher < MAX_MSGS)
            hex_into(hex, &v->cipher[v->n_cipher++]);
    }
    fclose(f);
    assert_int_equal(v->n_payload, 6);
    assert_int_equal(v->n_cipher, 6);
}

/* Sends one message from `a` to `b` (handshake or transport), checking it decrypts to `pt`;
 * the wire bytes go to `wire`. */
static size_t send_one(struct pch *a, struct pch *b, const uint8_t *pt, size_t len, uint8_t *wire)
{
    uint8_t out[1024];
    size_t n, m;
    if (a->state == PCH_OPEN) {
        assert_int_equal(pch_seal(a, pt, len, wire, 1024, &n), PCH_OK);
        assert_int_equal(pch_open(b, wire, n, out, sizeof(out), &m), PCH_OK);
    } else {
        assert_int_equal(pch_write_handshake(a, pt, len, wire, 1024, &n), PCH_OK);
        assert_int_equal(pch_read_handshake(b, wire, n, out, sizeof(out), &m), PCH_OK);
    }
    assert_int_equal(m, len);
    assert_memory_equal(out, pt, len);
    return n;
}

static void the_published_vector_passes(void **state)
{
    (void)state;
    struct vector v;
    load_vector(&v);
    struct pch i, r;
    pch_init(&i, PCH_INITIATOR, v.init_s.b, v.psk.b, v.prologue.b, v.prologue.n, v.init_e.b);
    pch_init(&r, PCH_RESPONDER, v.resp_s.b, v.psk.b, v.prologue.b, v.prologue.n, v.resp_e.b);
    for (int k = 0; k < 6; k++) {
        uint8_t wire[1024];
        struct pch *from = k % 2 == 0 ? &i : &r, *to = k % 2 == 0 ? &r : &i;
        size_t n = send_one(from, to, v.payload[k].b, v.payload[k].n, wire);
        assert_int_equal(n, v.cipher[k].n);
        assert_memory_equal(wire, v.cipher[k].b, n);
        if (k == 2) {
            assert_memory_equal(pch_handshake_hash(&i), v.hash.b, PCH_HASH_LEN);
            assert_memory_equal(pch_handshake_hash(&r), v.hash.b, PCH_HASH_LEN);
        }
    }
    uint8_t pub[PCH_KEY_LEN];
    pch_public_key(pub, v.resp_s.b);
    assert_memory_equal(pch_remote_static(&i), pub, PCH_KEY_LEN);
    pch_public_key(pub, v.init_s.b);
    assert_memory_equal(pch_remote_static(&r), pub, PCH_KEY_LEN);
}

/* ---- real sessions (fresh ephemerals) ---- */

static uint8_t key_i[PCH_KEY_LEN], key_r[PCH_KEY_LEN], key_x[PCH_KEY_LEN];
static uint8_t psk_ok[PCH_KEY_LEN], psk_bad[PCH_KEY_LEN];
static const uint8_t prologue[] = "parley test";

static int setup_keys(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(key_i, sizeof(key_i));
    randombytes_buf(key_r, sizeof(key_r));
    randombytes_buf(key_x, sizeof(key_x));
    randombytes_buf(psk_ok, sizeof(psk_ok));
    memcpy(psk_bad, psk_ok, sizeof(psk_bad));
    psk_bad[31] ^= 1;
    return 0;
}

/* The three wire messages of one handshake. */
struct transcript {
    uint8_t m[3][256];
    size_t n[3];
};

static void pair(struct pch *i, struct pch *r, const uint8_t *ipsk, const uint8_t *rpsk)
{
    pch_init(i, PCH_INITIATOR, key_i, ipsk, prologue, sizeof(prologue), NULL);
    pch_init(r, PCH_RESPONDER, key_r, rpsk, prologue, sizeof(prologue), NULL);
}

/* Runs a good handshake, keeping its messages in `t` when not NULL. */
static void handshake(struct pch *i, struct pch *r, struct transcript *t)
{
    pair(i, r, psk_ok, psk_ok);
    for (int k = 0; k < 3; k++) {
        uint8_t wire[256];
        size_t n = send_one(k == 1 ? r : i, k == 1 ? i : r, NULL, 0, wire);
        if (t) {
            memcpy(t->m[k], wire, n);
            t->n[k] = n;
        }
    }
    assert_int_equal(i->state, PCH_OPEN);
    assert_int_equal(r->state, PCH_OPEN);
}

static void a_wrong_psk_is_refused_at_the_third_message(void **state)
{
    (void)state;
    struct pch i, r;
    uint8_t wire[256], out[64];
    size_t n, m;
    pair(&i, &r, psk_bad, psk_ok);
    send_one(&i, &r, NULL, 0, wire);
    send_one(&r, &i, NULL, 0, wire);
    assert_int_equal(pch_write_handshake(&i, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
    assert_int_equal(pch_read_handshake(&r, wire, n, out, sizeof(out), &m), PCH_ERR_AUTH);
    assert_int_equal(r.state, PCH_FAILED);
    assert_int_equal(pch_seal(&r, out, 1, wire, sizeof(wire), &n), PCH_ERR_STATE);
}

static void another_static_key_is_what_the_peer_sees(void **state)
{
    (void)state;
    struct pch i, x;
    uint8_t wire[256], want[PCH_KEY_LEN], other[PCH_KEY_LEN];
    pch_init(&i, PCH_INITIATOR, key_i, psk_ok, prologue, sizeof(prologue), NULL);
    pch_init(&x, PCH_RESPONDER, key_x, psk_ok, prologue, sizeof(prologue), NULL);
    send_one(&i, &x, NULL, 0, wire);
    send_one(&x, &i, NULL, 0, wire);
    /* The PSK holder with another key completes message 2: the key it proves is its own, so
     * the pin check (identity.c) sees the difference before message 3 goes out. */
    pch_public_key(want, key_r);
    pch_public_key(other, key_x);
    assert_memory_not_equal(pch_remote_static(&i), want, PCH_KEY_LEN);
    assert_memory_equal(pch_remote_static(&i), other, PCH_KEY_LEN);
}

static void a_replayed_handshake_is_refused(void **state)
{
    (void)state;
    struct pch i, r, i2, r2;
    struct transcript t;
    uint8_t wire[256], out[64];
    size_t n, m;
    handshake(&i, &r, &t);
    /* To a fresh responder: message 1 replays fine, message 3 does not fit its new e. */
    pair(&i2, &r2, psk_ok, psk_ok);
    assert_int_equal(pch_read_handshake(&r2, t.m[0], t.n[0], out, sizeof(out), &m), PCH_OK);
    assert_int_equal(pch_write_handshake(&r2, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
    assert_int_equal(pch_read_handshake(&r2, t.m[2], t.n[2], out, sizeof(out), &m), PCH_ERR_AUTH);
    /* To a fresh initiator: the recorded message 2 does not fit its new e. */
    assert_int_equal(pch_write_handshake(&i2, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
    assert_int_equal(pch_read_handshake(&i2, t.m[1], t.n[1], out, sizeof(out), &m), PCH_ERR_AUTH);
}

static void a_flipped_bit_in_any_handshake_message_is_refused(void **state)
{
    (void)state;
    struct transcript t;
    struct pch i, r;
    handshake(&i, &r, &t);
    for (int k = 0; k < 3; k++) {
        for (size_t byte = 0; byte < t.n[k]; byte++) {
            struct pch a, b;
            uint8_t wire[256], out[64];
            size_t n, m;
            pair(&a, &b, psk_ok, psk_ok);
            /* a live handshake (fresh ephemerals) with message k changed on the way */
            enum pch_result got = PCH_OK;
            for (int j = 0; j <= k; j++) {
                struct pch *from = j == 1 ? &b : &a, *to = j == 1 ? &a : &b;
                assert_int_equal(pch_write_handshake(from, NULL, 0, wire, sizeof(wire), &n),
                                 PCH_OK);
                if (j == k)
                    wire[byte] ^= 0x10;
                got = pch_read_handshake(to, wire, n, out, sizeof(out), &m);
            }
            /* Message 1 is `e` in clear plus an empty payload: a changed e shows as soon as
             * the responder's message 2 is read by the initiator. */
            if (k == 0 && got == PCH_OK) {
                assert_int_equal(pch_write_handshake(&b, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
                got = pch_read_handshake(&a, wire, n, out, sizeof(out), &m);
            }
            assert_int_not_equal(got, PCH_OK);
        }
    }
}

static void a_flipped_bit_in_any_record_is_refused(void **state)
{
    (void)state;
    struct pch i, r;
    handshake(&i, &r, NULL);
    const uint8_t msg[] = "MSG hello there";
    uint8_t wire[64], out[64];
    size_t n, m;
    assert_int_equal(pch_seal(&i, msg, sizeof(msg), wire, sizeof(wire), &n), PCH_OK);
    for (size_t byte = 0; byte < n; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            struct pch copy = r;
            wire[byte] ^= (uint8_t)(1u << bit);
            assert_int_equal(pch_open(&copy, wire, n, out, sizeof(out), &m), PCH_ERR_AUTH);
            assert_int_equal(copy.state, PCH_FAILED);
            wire[byte] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(pch_open(&r, wire, n, out, sizeof(out), &m), PCH_OK);
    assert_memory_equal(out, msg, sizeof(msg));
}

static void a_truncated_record_is_refused(void **state)
{
    (void)state;
    struct pch i, r;
    handshake(&i, &r, NULL);
    uint8_t wire[64], out[64];
    size_t n, m, body;
    assert_int_equal(pch_seal(&i, (const uint8_t *)"MSG x", 5, wire, sizeof(wire), &n), PCH_OK);
    for (size_t cut = 0; cut < n; cut++) {
        struct pch copy = r;
        assert_int_not_equal(pch_open(&copy, wire, cut, out, sizeof(out), &m), PCH_OK);
    }
    uint8_t hdr[PCH_HDR_LEN];
    pch_record_header(hdr, n);
    assert_int_equal(pch_record_len(hdr, 1, 100, &body), 0); /* header cut: wait for more */
    assert_int_equal(pch_record_len(hdr, 2, 100, &body), 1);
    assert_int_equal(body, n);
}

static void replayed_and_reordered_records_are_refused(void **state)
{
    (void)state;
    struct pch i, r;
    handshake(&i, &r, NULL);
    uint8_t a[64], b[64], out[64];
    size_t na, nb, m;
    assert_int_equal(pch_seal(&i, (const uint8_t *)"MSG 1", 5, a, sizeof(a), &na), PCH_OK);
    assert_int_equal(pch_seal(&i, (const uint8_t *)"MSG 2", 5, b, sizeof(b), &nb), PCH_OK);
    struct pch copy = r;
    assert_int_equal(pch_open(&copy, b, nb, out, sizeof(out), &m), PCH_ERR_AUTH); /* reordered */
    assert_int_equal(pch_open(&r, a, na, out, sizeof(out), &m), PCH_OK);
    assert_int_equal(pch_open(&r, a, na, out, sizeof(out), &m), PCH_ERR_AUTH); /* replayed */
    /* and a record sent the other way cannot be reflected back */
    pch_init(&r, PCH_RESPONDER, key_r, psk_ok, prologue, sizeof(prologue), NULL);
    handshake(&i, &r, NULL);
    assert_int_equal(pch_seal(&i, (const uint8_t *)"MSG 1", 5, a, sizeof(a), &na), PCH_OK);
    assert_int_equal(pch_open(&i, a, na, out, sizeof(out), &m), PCH_ERR_AUTH);
}

static void a_record_over_the_limit_is_refused(void **state)
{
    (void)state;
    uint8_t hdr[PCH_HDR_LEN];
    size_t body;
    pch_record_header(hdr, 4113);
    assert_int_equal(pch_record_len(hdr, 2, 4112, &body), -1);
    pch_record_header(hdr, 4112);
    assert_int_equal(pch_record_len(hdr, 2, 4112, &body), 1);
    pch_record_header(hdr, 0);
    assert_int_equal(pch_record_len(hdr, 2, 4112, &body), -1);
    struct pch i, r;
    handshake(&i, &r, NULL);
    static uint8_t big[PCH_NOISE_MAX + 1], out[PCH_NOISE_MAX + 1];
    size_t n;
    assert_int_equal(pch_seal(&i, big, PCH_NOISE_MAX, out, sizeof(out), &n), PCH_ERR_SIZE);
    assert_int_equal(pch_open(&r, big, PCH_NOISE_MAX + 1, out, sizeof(out), &n), PCH_ERR_SIZE);
}

static void turns_out_of_order_are_refused(void **state)
{
    (void)state;
    struct pch i, r;
    uint8_t wire[256], out[64];
    size_t n, m;
    pair(&i, &r, psk_ok, psk_ok);
    assert_int_equal(pch_write_handshake(&r, NULL, 0, wire, sizeof(wire), &n), PCH_ERR_STATE);
    assert_int_equal(pch_read_handshake(&i, wire, 32, out, sizeof(out), &m), PCH_ERR_STATE);
    assert_int_equal(pch_seal(&i, wire, 1, out, sizeof(out), &m), PCH_ERR_STATE);
    assert_int_equal(pch_write_handshake(&i, NULL, 0, wire, 10, &n), PCH_ERR_SIZE);
    assert_int_equal(i.state, PCH_FAILED);
    pair(&i, &r, psk_ok, psk_ok);
    assert_int_equal(pch_read_handshake(&r, wire, 31, out, sizeof(out), &m), PCH_ERR_SIZE);
}

static void a_low_order_key_is_refused(void **state)
{
    (void)state;
    struct pch i, r;
    uint8_t wire[256], out[64];
    size_t n, m;
    pair(&i, &r, psk_ok, psk_ok);
    assert_int_equal(pch_write_handshake(&i, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
    assert_int_equal(pch_read_handshake(&r, wire, n, out, sizeof(out), &m), PCH_OK);
    /* The responder's e replaced by 0: every DH with it is zero, refused before any MAC. */
    assert_int_equal(pch_write_handshake(&r, NULL, 0, wire, sizeof(wire), &n), PCH_OK);
    memset(wire, 0, PCH_KEY_LEN);
    assert_int_equal(pch_read_handshake(&i, wire, n, out, sizeof(out), &m), PCH_ERR_DH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_published_vector_passes),
        cmocka_unit_test(a_wrong_psk_is_refused_at_the_third_message),
        cmocka_unit_test(another_static_key_is_what_the_peer_sees),
        cmocka_unit_test(a_replayed_handshake_is_refused),
        cmocka_unit_test(a_flipped_bit_in_any_handshake_message_is_refused),
        cmocka_unit_test(a_flipped_bit_in_any_record_is_refused),
        cmocka_unit_test(a_truncated_record_is_refused),
        cmocka_unit_test(replayed_and_reordered_records_are_refused),
        cmocka_unit_test(a_record_over_the_limit_is_refused),
        cmocka_unit_test(turns_out_of_order_are_refused),
        cmocka_unit_test(a_low_order_key_is_refused),
    };
    return cmocka_run_group_tests(tests, setup_keys, NULL);
}
