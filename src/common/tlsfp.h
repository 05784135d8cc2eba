/* The fingerprint that names a TLS server's key: "sha256:" and the SHA-256 of the DER
 * SubjectPublicKeyInfo in lower-case hex (as irssi's -tls_pinned_pubkey). It stays the same
 * when a certificate is renewed with the same key. */
#ifndef PARLEY_TLSFP_H
#define PARLEY_TLSFP_H

#include <stdbool.h>
#include <stddef.h>

#define TLSFP_PREFIX "sha256:"
#define TLSFP_LEN (sizeof(TLSFP_PREFIX) - 1 + 64) /* without the NUL */

struct x509_st;

/* Writes the fingerprint of the public key in `cert` into `out`. Returns 0, or -1. */
int tlsfp_of_cert(struct x509_st *cert, char out[TLSFP_LEN + 1]);

/* Returns true when `text` is a well-formed fingerprint ("sha256:" and 64 hex digits, either
 * case); `norm` then holds it in lower case. */
bool tlsfp_parse(const char *text, char norm[TLSFP_LEN + 1]);

#endif
