/* Whether the client trusts a TLS server (issue 12), like irssi and ssh: with --ca (a file,
 * or `system` for the system store) the chain and the name or address are checked by
 * OpenSSL; with --pin the key must be that one; otherwise the key is pinned on first use in
 * the known_servers file (known.h), and a later change is refused loudly. The first use asks
 * at a terminal, and in pipe mode is refused unless --accept-new. */
#ifndef PARLEY_CLIENT_TRUST_H
#define PARLEY_CLIENT_TRUST_H

#include <stdbool.h>

#include "client/link.h"
#include "common/tlsfp.h"

struct options;

/* The client's TLS settings and what it saw of the server. */
struct trust {
    struct ssl_ctx_st *ctx;
    const char *ca;          /* --ca FILE or "system"; NULL: pinning */
    char pin[TLSFP_LEN + 1]; /* --pin, normalised; empty: none */
    bool accept_new;
    char path[4096];              /* the known_servers file */
    char name[300];               /* host:port as the file has it */
    char seen[TLSFP_LEN + 1];     /* the key the server presented */
    char accepted[TLSFP_LEN + 1]; /* the key the user accepted at the prompt in this run */
};

/* Sets up the TLS context from the options for `host` and `port`. Returns 0, or -1 with the
 * reason printed on stderr. */
int trust_init(struct trust *t, const struct options *o, const char *host, const char *port);

/* Decides on the key `ssl` presented, printing what the user must know on stderr. At a
 * terminal an unknown key is LINK_UNDECIDED: the caller asks TRUST_QUESTION and calls
 * trust_accept on yes. */
enum link_verdict trust_check(struct trust *t, struct ssl_st *ssl, bool can_ask);

/* The user trusted the unknown key: it is added to known_servers. */
void trust_accept(struct trust *t);

/* Frees the TLS context. */
void trust_free(struct trust *t);

#define TRUST_QUESTION "Trust this key and connect (yes/no)? "

#endif
