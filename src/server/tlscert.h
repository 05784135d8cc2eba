/* The server's own TLS key and certificate: made once in the data directory when the operator
 * gives none, and their fingerprint (common/tlsfp.h) for `parleyd --tls-fingerprint`. */
#ifndef PARLEY_TLSCERT_H
#define PARLEY_TLSCERT_H

#include <stddef.h>

#include "common/tlsfp.h"

#define TLSCERT_KEY_FILE "tls-key.pem"
#define TLSCERT_CERT_FILE "tls-cert.pem"
#define TLSCERT_DAYS 3650 /* a generated certificate's validity */

/* Makes sure `dir` (created if missing) holds TLSCERT_KEY_FILE and TLSCERT_CERT_FILE: an
 * ECDSA P-256 key and a self-signed certificate for "parleyd" (names localhost, 127.0.0.1 and
 * ::1), both mode 0600, written whole or not at all. Existing files are kept. The two paths
 * are written to `cert` and `key` (`len` bytes each). Returns 0, or -1 with `err`. */
int tlscert_ensure(const char *dir, char *cert, char *key, size_t len, char *err, size_t errlen);

/* Writes the fingerprint of the key in the PEM certificate `cert_file` into `out`. Returns 0,
 * or -1 with `err`. */
int tlscert_fingerprint(const char *cert_file, char out[TLSFP_LEN + 1], char *err, size_t errlen);

#endif
