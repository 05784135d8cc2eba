/* The encrypted channel of a P2P session, with no socket in sight: the Noise handshake
 * `Noise_XXpsk3_25519_ChaChaPoly_SHA256` (noise_spec revision 34) as a state machine, then the
 * transport records. The caller moves bytes; this module only turns them into other bytes or
 * refuses them. On the wire each handshake message and each record is a 16-bit big-endian
 * length followed by that many bytes (see pch_record_len()). docs/PROTOCOL.md §7. */
#ifndef PARLEY_CLIENT_P2P_CHANNEL_H
#define PARLEY_CLIENT_P2P_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCH_PROTOCOL_NAME "Noise_XXpsk3_25519_ChaChaPoly_SHA256"
#define PCH_KEY_LEN 32  /* X25519 keys, the PSK, cipher keys */
#define PCH_HASH_LEN 32 /* SHA-256 */
#define PCH_TAG_LEN 16  /* Poly1305 */
#define PCH_HDR_LEN 2   /* the length in front of every message */
#define PCH_NOISE_MAX 65535
/* The largest handshake message (the second: e, encrypted s, payload tag) with no payload. */
#define PCH_HANDSHAKE_MAX (PCH_KEY_LEN + PCH_KEY_LEN + PCH_TAG_LEN + PCH_TAG_LEN)

enum pch_role {
    PCH_INITIATOR,
    PCH_RESPONDER,
};

/* Where the handshake is; each side writes and reads its three messages in this order. */
enum pch_state {
    PCH_MSG1,   /* -> e */
    PCH_MSG2,   /* <- e, ee, s, es */
    PCH_MSG3,   /* -> s, se, psk */
    PCH_OPEN,   /* transport records */
    PCH_FAILED, /* refused something: never usable again */
};

enum pch_result {
    PCH_OK = 0,
    PCH_ERR_STATE, /* not this side's turn, or the channel has failed */
    PCH_ERR_SIZE,  /* too short, too long, or does not fit the output */
    PCH_ERR_AUTH,  /* decryption failed: wrong key, PSK, a changed or replayed byte */
    PCH_ERR_DH,    /* a peer key giving an all-zero shared secret */
};

struct pch_cipher {
    uint8_t k[PCH_KEY_LEN];
    uint64_t n;
    bool has_key;
};

/* One channel. Plain data: init with pch_init(), wipe with pch_wipe(). */
struct pch {
    enum pch_role role;
    enum pch_state state;
    uint8_t ck[PCH_HASH_LEN], h[PCH_HASH_LEN];
    struct pch_cipher cs;     /* during the handshake */
    struct pch_cipher tx, rx; /* after it */
    uint8_t s_priv[PCH_KEY_LEN], s_pub[PCH_KEY_LEN];
    uint8_t e_priv[PCH_KEY_LEN], e_pub[PCH_KEY_LEN];
    uint8_t re[PCH_KEY_LEN], rs[PCH_KEY_LEN];
    uint8_t psk[PCH_KEY_LEN];
    bool fixed_e; /* e_priv given (test vectors), else drawn when needed */
};

/* Starts a handshake as `role` with our static private key `s_priv`, the PSK `psk` and the
 * prologue (both sides must give the same bytes). `e_priv` fixes the ephemeral key for test
 * vectors; NULL draws a fresh one, as every real session must. */
void pch_init(struct pch *ch, enum pch_role role, const uint8_t s_priv[PCH_KEY_LEN],
              const uint8_t psk[PCH_KEY_LEN], const uint8_t *prologue, size_t prologue_len,
              const uint8_t *e_priv);

/* True when it is our turn to write the next handshake message. */
bool pch_my_turn(const struct pch *ch);

/* Writes the next handshake message (without the length header) carrying `payload` into
 * `out` (`cap` bytes); its size goes to `*n`. Any error fails the channel. */
enum pch_result pch_write_handshake(struct pch *ch, const uint8_t *payload, size_t len,
                                    uint8_t *out, size_t cap, size_t *n);

/* Reads the peer's next handshake message `msg`; its payload goes to `out` (`cap` bytes),
 * its size to `*n`. Any error (a wrong PSK shows at message 3) fails the channel. */
enum pch_result pch_read_handshake(struct pch *ch, const uint8_t *msg, size_t len, uint8_t *out,
                                   size_t cap, size_t *n);

/* The peer's static public key: meaningful once we have read it (the initiator after message
 * 2, the responder after message 3). */
const uint8_t *pch_remote_static(const struct pch *ch);

/* The handshake hash, identifying the session: meaningful once open. */
const uint8_t *pch_handshake_hash(const struct pch *ch);

/* Encrypts the transport record `pt` into `out` (`len` + PCH_TAG_LEN bytes; `cap` checked). */
enum pch_result pch_seal(struct pch *ch, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                         size_t *n);

/* Decrypts the transport record `ct` into `out`. A record that is altered, truncated,
 * replayed or out of order fails the channel. */
enum pch_result pch_open(struct pch *ch, const uint8_t *ct, size_t len, uint8_t *out, size_t cap,
                         size_t *n);

/* Reads the length header at the start of `buf` (`have` bytes): returns 1 with the body size
 * in `*body` when the header is there and the body is at most `max`, 0 when more bytes are
 * needed, -1 when the body would be over `max` (or empty). */
int pch_record_len(const uint8_t *buf, size_t have, size_t max, size_t *body);

/* Writes the length header of a `len`-byte body (at most PCH_NOISE_MAX) into `hdr`. */
void pch_record_header(uint8_t hdr[PCH_HDR_LEN], size_t len);

/* Derives the private key's public half. */
void pch_public_key(uint8_t pub[PCH_KEY_LEN], const uint8_t priv[PCH_KEY_LEN]);

/* HKDF of the Noise spec (§4.3) over HMAC-SHA256: two or three 32-byte outputs (`o3` may be
 * NULL) from chaining key `ck` and input `ikm`. */
void pch_hkdf(const uint8_t ck[PCH_HASH_LEN], const uint8_t *ikm, size_t ikm_len,
              uint8_t o1[PCH_HASH_LEN], uint8_t o2[PCH_HASH_LEN], uint8_t *o3);

/* Wipes every key of `ch`. */
void pch_wipe(struct pch *ch);

#endif
