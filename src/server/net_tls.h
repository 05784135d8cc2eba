/* The TLS transport of the net layer (OpenSSL): a server context made from a certificate and
 * its key, handed to net_listen for a port that speaks TLS only. */
#ifndef PARLEY_NET_TLS_H
#define PARLEY_NET_TLS_H

#include <stddef.h>

struct net_tls;

/* Loads `cert_file` (PEM, the chain after the leaf) and `key_file` into a context that speaks
 * TLS 1.2 and 1.3 only, refuses renegotiation and keeps no compression. Returns NULL with a
 * message in `err` when a file is unreadable or the key does not match the certificate. */
struct net_tls *net_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* Frees the context (connections still using it keep their own reference). */
void net_tls_free(struct net_tls *t);

#endif
