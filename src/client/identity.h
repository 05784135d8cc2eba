/* A user's long-term X25519 identity key and the peers' keys pinned on first contact, kept
 * under $XDG_CONFIG_HOME/parley/<user>/ (default ~/.config/parley/<user>/, where a name with
 * anything but letters, digits, `-` and `_` is written `x-<hex>`; directories 0700, files 0600):
 * `identity` holds the private key (64 hex digits; only its public half ever leaves the machine),
 * `known_peers` one `<peer> <64 hex digits>` line per pinned peer. Also the safety numbers two
 * users compare out of band. docs/PROTOCOL.md §7. */
#ifndef PARLEY_CLIENT_IDENTITY_H
#define PARLEY_CLIENT_IDENTITY_H

#include "client/p2p_channel.h"
#include "common/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENT_PATH_MAX 4096
#define IDENT_MAX_PEERS 10000  /* lines read from known_peers; more are an error */
#define IDENT_NUMBER_DIGITS 30 /* of one user's half of a safety number */
#define IDENT_ITERATIONS 5200  /* SHA-512 rounds per half, as Signal's safety numbers */
/* A whole safety number: 60 digits in 12 groups of 5, one space between groups. */
#define IDENT_SAFETY_LEN (2 * IDENT_NUMBER_DIGITS + 2 * IDENT_NUMBER_DIGITS / 5 - 1)
/* One user's half alone: 30 digits in 6 groups. */
#define IDENT_OWN_LEN (IDENT_NUMBER_DIGITS + IDENT_NUMBER_DIGITS / 5 - 1)

struct ident {
    char dir[IDENT_PATH_MAX]; /* .../parley/<me> */
    char me[PROTO_MAX_NAME + 1];
    uint8_t priv[PCH_KEY_LEN], pub[PCH_KEY_LEN];
};

/* What the pin says of a key a peer presented. */
enum ident_pin {
    IDENT_PIN_NEW,     /* first contact: now pinned */
    IDENT_PIN_SAME,    /* the pinned key */
    IDENT_PIN_CHANGED, /* another key than the pinned one: refuse the session */
    IDENT_PIN_ERROR,   /* known_peers could not be read or written */
    IDENT_PIN_FULL,    /* a new peer, but known_peers holds IDENT_MAX_PEERS pins already */
};

/* Puts the configuration directory in `out`: $XDG_CONFIG_HOME/parley when that is an absolute
 * path, else $HOME/.config/parley. False when neither is known or it does not fit. */
bool ident_base_dir(char *out, size_t cap);

/* Loads the identity of `me` under `base` (see ident_base_dir()), making the directories and a
 * fresh key on first use. Returns 0, or -1 with the reason in `err` (`cap` bytes): no such
 * directory can be made, the key file is unreadable, malformed or readable by others. */
int ident_load(struct ident *id, const char *base, const char *me, char *err, size_t cap);

/* Checks `pub`, presented by `peer`, against the pin, pinning it on first contact. */
enum ident_pin ident_check_peer(const struct ident *id, const char *peer,
                                const uint8_t pub[PCH_KEY_LEN]);

/* Puts the pinned key of `peer` in `pub`. Returns 1, 0 when none is pinned, -1 on an error. */
int ident_peer_key(const struct ident *id, const char *peer, uint8_t pub[PCH_KEY_LEN]);

/* Removes the pin of `peer`. Returns 1, 0 when there was none, -1 on an error. */
int ident_forget(const struct ident *id, const char *peer);

/* The safety number of `a` (key `apub`) and `b` (key `bpub`): the same whichever is first. */
void ident_safety_number(const char *a, const uint8_t apub[PCH_KEY_LEN], const char *b,
                         const uint8_t bpub[PCH_KEY_LEN], char out[IDENT_SAFETY_LEN + 1]);

/* One user's half of every safety number they are part of. */
void ident_own_number(const char *name, const uint8_t pub[PCH_KEY_LEN],
                      char out[IDENT_OWN_LEN + 1]);

/* Wipes the private key. */
void ident_wipe(struct ident *id);

#endif
