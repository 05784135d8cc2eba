/* Trusting a TLS server; see trust.h. */
#include "client/trust.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "client/known.h"
#include "client/options.h"

/* Loads the CA store named by --ca into `ctx` and turns verification on. */
static int load_ca(SSL_CTX *ctx, const char *ca)
{
    int ok = strcmp(ca, "system") == 0 ? SSL_CTX_set_default_verify_paths(ctx)
                                       : SSL_CTX_load_verify_locations(ctx, ca, NULL);
    if (ok != 1) {
        fprintf(stderr, "parley: cannot load the CA certificates %s: %s\n", ca,
                ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

int trust_init(struct trust *t, const struct options *o, const char *host, const char *port)
{
    memset(t, 0, sizeof(*t));
    t->ca = o->ca;
    t->accept_new = o->accept_new;
    if (o->pin && !tlsfp_parse(o->pin, t->pin)) {
        fprintf(stderr,
                "parley: --pin must be sha256: and 64 hex digits (parleyd "
                "--tls-fingerprint prints it), not '%s'\n",
                o->pin);
        return -1;
    }
    known_name(host, port, t->name, sizeof(t->name));
    if (known_default_path(t->path, sizeof(t->path)) < 0)
        t->path[0] = '\0';
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx || SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1)
        goto fail;
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
    if (t->ca && load_ca(t->ctx, t->ca) < 0)
        goto fail;
    return 0;
fail:
    trust_free(t);
    if (!t->ca)
        fputs("parley: cannot set up TLS\n", stderr);
    return -1;
}

static void say_changed(const struct trust *t, const char *expected, const char *where)
{
    fprintf(stderr,
            "@@@ WARNING: THE SERVER'S KEY IS NOT THE ONE EXPECTED @@@\n"
            "parley: %s presented the key\n  %s\nbut %s names\n  %s\n"
            "Someone may be intercepting the connection (a man in the middle). Nothing was "
            "sent: not even your user name.\n"
            "If the server's operator really changed its key, compare the new fingerprint "
            "(parleyd --tls-fingerprint) and remove the old line from %s.\n",
            t->name, t->seen, where, expected, t->path[0] ? t->path : "known_servers");
}

static void say_unknown(const struct trust *t)
{
    fprintf(stderr,
            "parley: %s is not a known server. Its key's fingerprint is\n  %s\n"
            "Compare it with the one its operator gives (parleyd --tls-fingerprint).\n",
            t->name, t->seen);
}

/* An unknown key: added with --accept-new, asked about at a terminal, refused in a pipe. */
static enum link_verdict first_use(struct trust *t, bool can_ask)
{
    say_unknown(t);
    if (t->accept_new) {
        trust_accept(t);
        return LINK_TRUSTED;
    }
    if (can_ask)
        return LINK_UNDECIDED;
    fprintf(stderr,
            "parley: refusing an unknown server key without a terminal to ask; check "
            "the fingerprint and pass --pin %s, or --accept-new\n",
            t->seen);
    return LINK_DISTRUSTED;
}

enum link_verdict trust_check(struct trust *t, struct ssl_st *ssl, bool can_ask)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    int rc = tlsfp_of_cert(cert, t->seen);
    X509_free(cert);
    if (rc < 0) {
        fputs("parley: the server presented no usable certificate\n", stderr);
        return LINK_DISTRUSTED;
    }
    if (t->ca && SSL_get_verify_result(ssl) != X509_V_OK)
        return LINK_DISTRUSTED; /* OpenSSL checked the chain and the name in the handshake */
    if (t->ca && !t->pin[0])
        return LINK_TRUSTED;
    if (t->pin[0]) { /* with --ca too: the key must be the pinned one as well */
        if (strcmp(t->pin, t->seen) == 0)
            return LINK_TRUSTED;
        say_changed(t, t->pin, "--pin");
        return LINK_DISTRUSTED;
    }
    if (t->accepted[0] && strcmp(t->accepted, t->seen) == 0)
        return LINK_TRUSTED; /* accepted a moment ago, even if it could not be saved */
    char on_file[TLSFP_LEN + 1], where[4200];
    int line = 0;
    switch (t->path[0] ? known_lookup(t->path, t->name, t->seen, on_file, &line) : KNOWN_UNKNOWN) {
    case KNOWN_MATCH:
        return LINK_TRUSTED;
    case KNOWN_MISMATCH:
        snprintf(where, sizeof(where), "line %d of %s", line, t->path);
        say_changed(t, on_file, where);
        return LINK_DISTRUSTED;
    case KNOWN_ERROR:
        fprintf(stderr, "parley: cannot read %s: %s\n", t->path, strerror(errno));
        return LINK_DISTRUSTED;
    case KNOWN_UNKNOWN:
        break;
    }
    return first_use(t, can_ask);
}

void trust_accept(struct trust *t)
{
    memcpy(t->accepted, t->seen, sizeof(t->accepted));
    if (!t->path[0] || known_add(t->path, t->name, t->seen) < 0)
        fprintf(stderr, "parley: could not remember the key in %s: %s\n",
                t->path[0] ? t->path : "known_servers (set HOME or XDG_CONFIG_HOME)",
                strerror(errno));
    else
        fprintf(stderr, "parley: %s added to %s\n", t->name, t->path);
}

void trust_free(struct trust *t)
{
    SSL_CTX_free(t->ctx);
    t->ctx = NULL;
}
