/* The Noise XXpsk3 handshake and transport records on libsodium; see p2p_channel.h. */
#include "client/p2p_channel.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

/* The tokens of a handshake message (noise_spec §7, §9). */
enum pch_token {
    TOK_END,
    TOK_E,
    TOK_EE,
    TOK_S,
    TOK_ES,
    TOK_SE,
    TOK_PSK,
};

/* XXpsk3: `-> e`, `<- e, ee, s, es`, `-> s, se, psk`, indexed by enum pch_state. */
static const enum pch_token pch_pattern[3][5] = {
    [PCH_MSG1] = {TOK_E, TOK_END},
    [PCH_MSG2] = {TOK_E, TOK_EE, TOK_S, TOK_ES, TOK_END},
    [PCH_MSG3] = {TOK_S, TOK_SE, TOK_PSK, TOK_END},
};

/* ---- SymmetricState (§5.2) ---- */

static void hmac(const uint8_t key[PCH_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
                 size_t blen, uint8_t out[PCH_HASH_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, PCH_HASH_LEN);
    crypto_auth_hmacsha256_update(&st, a, alen);
    if (blen)
        crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void pch_hkdf(const uint8_t ck[PCH_HASH_LEN], const uint8_t *ikm, size_t ikm_len,
              uint8_t o1[PCH_HASH_LEN], uint8_t o2[PCH_HASH_LEN], uint8_t *o3)
{
    uint8_t temp[PCH_HASH_LEN], one = 1, two = 2, three = 3;
    hmac(ck, ikm, ikm_len, NULL, 0, temp);
    hmac(temp, &one, 1, NULL, 0, o1);
    hmac(temp, o1, PCH_HASH_LEN, &two, 1, o2);
    if (o3)
        hmac(temp, o2, PCH_HASH_LEN, &three, 1, o3);
    sodium_memzero(temp, sizeof(temp));
}

static void mix_hash(struct pch *ch, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, ch->h, PCH_HASH_LEN);
    crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, ch->h);
}

static void set_key(struct pch_cipher *c, const uint8_t k[PCH_KEY_LEN])
{
    memcpy(c->k, k, PCH_KEY_LEN);
    c->n = 0;
    c->has_key = true;
}

static void mix_key(struct pch *ch, const uint8_t *ikm, size_t len)
{
    uint8_t k[PCH_HASH_LEN];
    pch_hkdf(ch->ck, ikm, len, ch->ck, k, NULL);
    set_key(&ch->cs, k);
    sodium_memzero(k, sizeof(k));
}

static void mix_key_and_hash(struct pch *ch, const uint8_t *ikm, size_t len)
{
    uint8_t h[PCH_HASH_LEN], k[PCH_HASH_LEN];
    pch_hkdf(ch->ck, ikm, len, ch->ck, h, k);
    mix_hash(ch, h, sizeof(h));
    set_key(&ch->cs, k);
    sodium_memzero(k, sizeof(k));
}

/* ---- CipherState (§5.1): ChaChaPoly with the nonce 32 zero bits then 64-bit LE n ---- */

static void nonce_of(uint64_t n, uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES])
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

static enum pch_result encrypt(struct pch_cipher *c, const uint8_t *ad, size_t adlen,
                               const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    if (c->n == UINT64_MAX)
        return PCH_ERR_SIZE;
    nonce_of(c->n, nonce);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, len, ad, adlen, NULL, nonce, c->k);
    c->n++;
    return PCH_OK;
}

static enum pch_result decrypt(struct pch_cipher *c, const uint8_t *ad, size_t adlen,
                               const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    if (c->n == UINT64_MAX || len < PCH_TAG_LEN)
        return PCH_ERR_SIZE;
    nonce_of(c->n, nonce);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, len, ad, adlen, nonce,
                                                  c->k) != 0)
        return PCH_ERR_AUTH;
    c->n++;
    return PCH_OK;
}

/* EncryptAndHash: `out` gets `len` bytes, plus the tag once there is a key. */
static enum pch_result encrypt_and_hash(struct pch *ch, const uint8_t *pt, size_t len, uint8_t *out,
                                        size_t *n)
{
    *n = len + (ch->cs.has_key ? PCH_TAG_LEN : 0);
    if (!ch->cs.has_key)
        memmove(out, pt, len);
    else if (encrypt(&ch->cs, ch->h, PCH_HASH_LEN, pt, len, out) != PCH_OK)
        return PCH_ERR_SIZE;
    mix_hash(ch, out, *n);
    return PCH_OK;
}

static enum pch_result decrypt_and_hash(struct pch *ch, const uint8_t *ct, size_t len, uint8_t *out,
                                        size_t *n)
{
    if (!ch->cs.has_key) {
        memmove(out, ct, len);
        *n = len;
    } else {
        enum pch_result r = decrypt(&ch->cs, ch->h, PCH_HASH_LEN, ct, len, out);
        if (r != PCH_OK)
            return r;
        *n = len - PCH_TAG_LEN;
    }
    mix_hash(ch, ct, len);
    return PCH_OK;
}

/* ---- HandshakeState (§5.3) ---- */

void pch_public_key(uint8_t pub[PCH_KEY_LEN], const uint8_t priv[PCH_KEY_LEN])
{
    crypto_scalarmult_curve25519_base(pub, priv);
}

void pch_init(struct pch *ch, enum pch_role role, const uint8_t s_priv[PCH_KEY_LEN],
              const uint8_t psk[PCH_KEY_LEN], const uint8_t *prologue, size_t prologue_len,
              const uint8_t *e_priv)
{
    memset(ch, 0, sizeof(*ch));
    ch->role = role;
    ch->state = PCH_MSG1;
    /* The name is longer than HASHLEN, so h = HASH(name). */
    crypto_hash_sha256(ch->h, (const uint8_t *)PCH_PROTOCOL_NAME, strlen(PCH_PROTOCOL_NAME));
    memcpy(ch->ck, ch->h, PCH_HASH_LEN);
    mix_hash(ch, prologue, prologue_len);
    memcpy(ch->s_priv, s_priv, PCH_KEY_LEN);
    pch_public_key(ch->s_pub, s_priv);
    memcpy(ch->psk, psk, PCH_KEY_LEN);
    if (e_priv) {
        memcpy(ch->e_priv, e_priv, PCH_KEY_LEN);
        ch->fixed_e = true;
    }
}

bool pch_my_turn(const struct pch *ch)
{
    if (ch->state != PCH_MSG1 && ch->state != PCH_MSG2 && ch->state != PCH_MSG3)
        return false;
    return (ch->state == PCH_MSG2) == (ch->role == PCH_RESPONDER);
}

static enum pch_result dh_mix(struct pch *ch, const uint8_t priv[PCH_KEY_LEN],
                              const uint8_t pub[PCH_KEY_LEN])
{
    uint8_t shared[PCH_KEY_LEN];
    if (crypto_scalarmult_curve25519(shared, priv, pub) != 0)
        return PCH_ERR_DH;
    mix_key(ch, shared, sizeof(shared));
    sodium_memzero(shared, sizeof(shared));
    return PCH_OK;
}

/* The DH of tokens ee, es, se, from this side's view. */
static enum pch_result dh_token(struct pch *ch, enum pch_token t)
{
    bool init = ch->role == PCH_INITIATOR;
    switch (t) {
    case TOK_EE:
        return dh_mix(ch, ch->e_priv, ch->re);
    case TOK_ES:
        return init ? dh_mix(ch, ch->e_priv, ch->rs) : dh_mix(ch, ch->s_priv, ch->re);
    case TOK_SE:
        return init ? dh_mix(ch, ch->s_priv, ch->re) : dh_mix(ch, ch->e_priv, ch->rs);
    default:
        assert(!"not a DH token");
        return PCH_ERR_STATE;
    }
}

/* Split (§5.2): the transport keys, then nothing of the handshake but h is kept. */
static void split(struct pch *ch)
{
    uint8_t k1[PCH_HASH_LEN], k2[PCH_HASH_LEN];
    pch_hkdf(ch->ck, NULL, 0, k1, k2, NULL);
    bool init = ch->role == PCH_INITIATOR;
    set_key(&ch->tx, init ? k1 : k2);
    set_key(&ch->rx, init ? k2 : k1);
    sodium_memzero(k1, sizeof(k1));
    sodium_memzero(k2, sizeof(k2));
    sodium_memzero(ch->ck, sizeof(ch->ck));
    sodium_memzero(&ch->cs, sizeof(ch->cs));
    sodium_memzero(ch->e_priv, sizeof(ch->e_priv));
    sodium_memzero(ch->psk, sizeof(ch->psk));
    sodium_memzero(ch->s_priv, sizeof(ch->s_priv));
    ch->state = PCH_OPEN;
}

/* The one place the handshake moves: to the next message, or open after the third. */
static enum pch_result advance(struct pch *ch, enum pch_result r)
{
    if (r != PCH_OK) {
        pch_wipe(ch);
        ch->state = PCH_FAILED;
        return r;
    }
    if (ch->state == PCH_MSG3)
        split(ch);
    else
        ch->state = ch->state == PCH_MSG1 ? PCH_MSG2 : PCH_MSG3;
    return PCH_OK;
}

static void write_e(struct pch *ch, uint8_t *out)
{
    if (!ch->fixed_e)
        randombytes_buf(ch->e_priv, PCH_KEY_LEN);
    pch_public_key(ch->e_pub, ch->e_priv);
    memcpy(out, ch->e_pub, PCH_KEY_LEN);
    mix_hash(ch, ch->e_pub, PCH_KEY_LEN);
    mix_key(ch, ch->e_pub, PCH_KEY_LEN); /* a PSK handshake (§9.2) */
}

static enum pch_result write_tokens(struct pch *ch, const uint8_t *payload, size_t len,
                                    uint8_t *out, size_t cap, size_t *n)
{
    size_t at = 0, k;
    for (const enum pch_token *t = pch_pattern[ch->state]; *t != TOK_END; t++) {
        bool key = *t == TOK_E || *t == TOK_S;
        if (key && cap - at < PCH_KEY_LEN + PCH_TAG_LEN)
            return PCH_ERR_SIZE;
        enum pch_result r = PCH_OK;
        if (*t == TOK_E) {
            write_e(ch, out + at);
            at += PCH_KEY_LEN;
        } else if (*t == TOK_S) {
            r = encrypt_and_hash(ch, ch->s_pub, PCH_KEY_LEN, out + at, &k);
            at += k;
        } else if (*t == TOK_PSK) {
            mix_key_and_hash(ch, ch->psk, PCH_KEY_LEN);
        } else {
            r = dh_token(ch, *t);
        }
        if (r != PCH_OK)
            return r;
    }
    if (cap - at < len + PCH_TAG_LEN)
        return PCH_ERR_SIZE;
    enum pch_result r = encrypt_and_hash(ch, payload, len, out + at, &k);
    *n = at + k;
    return r;
}

enum pch_result pch_write_handshake(struct pch *ch, const uint8_t *payload, size_t len,
                                    uint8_t *out, size_t cap, size_t *n)
{
    *n = 0;
    if (!pch_my_turn(ch))
        return PCH_ERR_STATE;
    return advance(ch, write_tokens(ch, payload, len, out, cap, n));
}

/* Reads a key (`e` or `s`) of the peer at `msg + *at` into `key`. */
static enum pch_result read_key(struct pch *ch, enum pch_token t, const uint8_t *msg, size_t len,
                                size_t *at, uint8_t key[PCH_KEY_LEN])
{
    size_t need = PCH_KEY_LEN + (t == TOK_S && ch->cs.has_key ? PCH_TAG_LEN : 0), k;
    if (len - *at < need)
        return PCH_ERR_SIZE;
    enum pch_result r = PCH_OK;
    if (t == TOK_E) {
        memcpy(key, msg + *at, PCH_KEY_LEN);
        mix_hash(ch, key, PCH_KEY_LEN);
        mix_key(ch, key, PCH_KEY_LEN);
    } else {
        r = decrypt_and_hash(ch, msg + *at, need, key, &k);
    }
    *at += need;
    return r;
}

static enum pch_result read_tokens(struct pch *ch, const uint8_t *msg, size_t len, uint8_t *out,
                                   size_t cap, size_t *n)
{
    size_t at = 0;
    for (const enum pch_token *t = pch_pattern[ch->state]; *t != TOK_END; t++) {
        enum pch_result r = PCH_OK;
        if (*t == TOK_E || *t == TOK_S)
            r = read_key(ch, *t, msg, len, &at, *t == TOK_E ? ch->re : ch->rs);
        else if (*t == TOK_PSK)
            mix_key_and_hash(ch, ch->psk, PCH_KEY_LEN);
        else
            r = dh_token(ch, *t);
        if (r != PCH_OK)
            return r;
    }
    size_t body = len - at, tag = ch->cs.has_key ? PCH_TAG_LEN : 0;
    if (body < tag || body - tag > cap)
        return PCH_ERR_SIZE;
    return decrypt_and_hash(ch, msg + at, body, out, n);
}

enum pch_result pch_read_handshake(struct pch *ch, const uint8_t *msg, size_t len, uint8_t *out,
                                   size_t cap, size_t *n)
{
    *n = 0;
    if (ch->state >= PCH_OPEN || pch_my_turn(ch))
        return PCH_ERR_STATE;
    return advance(ch, read_tokens(ch, msg, len, out, cap, n));
}

const uint8_t *pch_remote_static(const struct pch *ch)
{
    return ch->rs;
}

const uint8_t *pch_handshake_hash(const struct pch *ch)
{
    return ch->h;
}

/* ---- transport ---- */

static enum pch_result fail(struct pch *ch, enum pch_result r)
{
    pch_wipe(ch);
    ch->state = PCH_FAILED;
    return r;
}

enum pch_result pch_seal(struct pch *ch, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                         size_t *n)
{
    *n = 0;
    if (ch->state != PCH_OPEN)
        return PCH_ERR_STATE;
    if (len > PCH_NOISE_MAX - PCH_TAG_LEN || cap < len + PCH_TAG_LEN)
        return PCH_ERR_SIZE;
    enum pch_result r = encrypt(&ch->tx, NULL, 0, pt, len, out);
    if (r != PCH_OK)
        return fail(ch, r);
    *n = len + PCH_TAG_LEN;
    return PCH_OK;
}

enum pch_result pch_open(struct pch *ch, const uint8_t *ct, size_t len, uint8_t *out, size_t cap,
                         size_t *n)
{
    *n = 0;
    if (ch->state != PCH_OPEN)
        return PCH_ERR_STATE;
    if (len < PCH_TAG_LEN || len > PCH_NOISE_MAX || cap < len - PCH_TAG_LEN)
        return fail(ch, PCH_ERR_SIZE);
    enum pch_result r = decrypt(&ch->rx, NULL, 0, ct, len, out);
    if (r != PCH_OK)
        return fail(ch, r);
    *n = len - PCH_TAG_LEN;
    return PCH_OK;
}

int pch_record_len(const uint8_t *buf, size_t have, size_t max, size_t *body)
{
    if (have < PCH_HDR_LEN)
        return 0;
    *body = ((size_t)buf[0] << 8) | buf[1];
    return *body == 0 || *body > max ? -1 : 1;
}

void pch_record_header(uint8_t hdr[PCH_HDR_LEN], size_t len)
{
    assert(len <= PCH_NOISE_MAX);
    hdr[0] = (uint8_t)(len >> 8);
    hdr[1] = (uint8_t)len;
}

void pch_wipe(struct pch *ch)
{
    enum pch_role role = ch->role;
    enum pch_state state = ch->state;
    sodium_memzero(ch, sizeof(*ch));
    ch->role = role;
    ch->state = state;
}
