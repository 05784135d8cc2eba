/* The TLS transport; see net_tls.h and net_io.h.
 *
 * Follows Redis's tls.c on our own buffers: the error queue is emptied after every failure,
 * so each call starts with it empty (not cleared before each call: that costs, Redis PR
 * 13903); "want read" and "want write" become EAGAIN with net_io.want set, so net.c waits for
 * the right event; decrypted bytes left inside OpenSSL are reported by `pending` so that net.c
 * wakes the connection itself (the socket will not). The write buffer may move between retries
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) and grow (partial writes). An end of stream without a
 * close_notify (OpenSSL 3's "unexpected eof") is an ordinary close: Parley frames its own
 * lines, so a truncated one is never taken. */
#include "server/net_tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/net_io.h"

#define NET_TLS_READ_AHEAD 65536
#define NET_TLS13_SUITES                                                                           \
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

struct net_tls {
    SSL_CTX *ctx;
};

/* Says what `ssl` waits for after a call returned `rc`. Returns true when that is only the
 * socket (try again), false on a failure, which also marks the connection as unable to shut
 * down cleanly. */
static bool tls_wants(struct net_io *io, SSL *ssl, int rc, int *why)
{
    *why = SSL_get_error(ssl, rc);
    switch (*why) {
    case SSL_ERROR_WANT_READ:
        io->want = NET_WANT_READ;
        return true;
    case SSL_ERROR_WANT_WRITE:
        io->want = NET_WANT_WRITE;
        return true;
    default:
        SSL_set_quiet_shutdown(ssl, 1); /* no close_notify after a fatal error */
        ERR_clear_error();              /* the queue stays empty between calls */
        return false;
    }
}

static int tls_start(struct net_io *io, void *ctx)
{
    struct net_tls *t = ctx;
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl || !SSL_set_fd(ssl, io->fd)) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    io->tls = ssl;
    return 0;
}

static enum net_io_step tls_handshake(struct net_io *io)
{
    SSL *ssl = io->tls;
    int why;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return NET_IO_DONE;
    return tls_wants(io, ssl, rc, &why) ? NET_IO_AGAIN : NET_IO_FAIL;
}

static ssize_t tls_read(struct net_io *io, void *buf, size_t n)
{
    SSL *ssl = io->tls;
    int why;
    int rc = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (rc > 0)
        return rc;
    unsigned long reason = ERR_GET_REASON(ERR_peek_last_error());
    if (tls_wants(io, ssl, rc, &why)) {
        errno = EAGAIN;
        return -1;
    }
    if (why == SSL_ERROR_ZERO_RETURN || why == SSL_ERROR_SSL || why == SSL_ERROR_SYSCALL) {
        /* a close_notify, an end of stream without one, or a broken record: the stream is
         * over; a reset shows as a socket error */
        if (why == SSL_ERROR_SYSCALL && errno != 0)
            return -1;
        if (why == SSL_ERROR_SSL && reason != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            errno = EPROTO;
            return -1;
        }
        return 0;
    }
    errno = EIO;
    return -1;
}

static ssize_t tls_write(struct net_io *io, const void *buf, size_t n)
{
    SSL *ssl = io->tls;
    int why;
    int rc = SSL_write(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (rc > 0)
        return rc;
    errno = tls_wants(io, ssl, rc, &why) ? EAGAIN : EPIPE;
    return -1;
}

static bool tls_pending(const struct net_io *io)
{
    return SSL_has_pending(io->tls) == 1;
}

/* Sends a close_notify once, without waiting for the peer's (the socket closes next). */
static void tls_release(struct net_io *io)
{
    SSL *ssl = io->tls;
    if (!ssl)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    SSL_free(ssl);
    io->tls = NULL;
    ERR_clear_error();
}

const struct net_transport net_io_tls = {
    "tls", tls_start, tls_handshake, tls_read, tls_write, tls_pending, tls_release,
};

/* Writes OpenSSL's latest error after `what` into `err`. */
static void tls_error(char *err, size_t errlen, const char *what, const char *file)
{
    char reason[160];
    ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
    snprintf(err, errlen, "%s %s: %s", what, file, reason);
    ERR_clear_error();
}

/* The context's options: TLS 1.2 and 1.3, no renegotiation, no compression, our buffers. */
static int tls_configure(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read up to NET_TLS_READ_AHEAD bytes from the socket at once, not one record's header and
     * body in two system calls; what is buffered is seen by SSL_has_pending. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, NET_TLS_READ_AHEAD);
    /* AES-128-GCM first: with AES-NI the cheapest suite; ChaCha20 for machines without it. */
    if (SSL_CTX_set_ciphersuites(ctx, NET_TLS13_SUITES) != 1)
        return -1;
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 ? 0 : -1;
}

struct net_tls *net_tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    struct net_tls *t = calloc(1, sizeof(*t));
    if (!t)
        goto fail;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx || tls_configure(t->ctx) < 0) {
        tls_error(err, errlen, "cannot set up TLS for", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
        tls_error(err, errlen, "cannot load the TLS certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(t->ctx) != 1) {
        tls_error(err, errlen, "cannot load the TLS key", key_file);
        goto fail;
    }
    return t;
fail:
    net_tls_free(t);
    return NULL;
}

void net_tls_free(struct net_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}
