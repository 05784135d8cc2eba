/* The connection to the server: non-blocking TCP with TCP_NODELAY and keep-alive, LF framing
 * with a limit, buffered output, request tags and a table of requests waiting for their
 * replies, each with a deadline. Events (`* ...` frames) go to a handler; every `* MSG` the
 * handler acknowledges is acked once per read batch (acks are cumulative). The link knows
 * nothing of chat. */
#ifndef PARLEY_CLIENT_LINK_H
#define PARLEY_CLIENT_LINK_H

#include "common/proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct link;
struct ssl_st;
struct ssl_ctx_st;

/* What the owner decides of the key a TLS server presented. */
enum link_verdict {
    LINK_TRUSTED,    /* go on: the connection is up */
    LINK_DISTRUSTED, /* close it; nothing was sent (the owner has said why) */
    LINK_UNDECIDED,  /* wait: the owner calls link_decide() later (it asks the user) */
};

/* How a request ended. */
enum link_status {
    LINK_OK,   /* `<tag> OK [fields]`: `rest` holds the fields */
    LINK_ERR,  /* `<tag> ERR <code> <text>`: `code` and the text in `rest` */
    LINK_GONE, /* the connection ended first; no reply will come */
};

/* A reply as handed to a request's callback; slices are valid during the call only. */
struct link_reply {
    enum link_status status;
    int code;
    struct proto_slice rest;
};

/* Receives the reply of one request; called exactly once per request. */
typedef void (*link_reply_fn)(void *ctx, const struct link_reply *r, void *arg);

/* What the owner of a link is told. */
struct link_handlers {
    void (*connected)(void *ctx);
    /* An event `* <verb> <rest>`, already checked against the framing rules. */
    void (*event)(void *ctx, struct proto_slice verb, struct proto_slice rest);
    /* The connection failed or ended without link_close(); `err` is an errno value or 0 for an
     * orderly close by the server; ETIMEDOUT when a connect attempt or a reply took longer
     * than the reply timeout (the server is not answering) or keep-alive found the server
     * gone. Requests still waiting get LINK_GONE afterwards. */
    void (*closed)(void *ctx, int err);
    /* TLS only: the handshake is done and nothing was sent yet; decides on the server's key. */
    enum link_verdict (*verify)(void *ctx, struct ssl_st *ssl);
};

/* The default reply timeout, in seconds. */
#define LINK_DEFAULT_REPLY_SECS 30

/* Returns a new unconnected link, or NULL when out of memory. A request whose reply has not
 * come `reply_secs` (> 0) seconds after it was sent, and after the server last sent anything,
 * ends the connection (ETIMEDOUT); so does a connect attempt to the last address that takes
 * that long. Keep-alive probes an idle connection after `reply_secs`. */
struct link *link_new(struct event_base *base, const struct link_handlers *h, void *ctx,
                      unsigned reply_secs);

/* Resolves `host` and `port` (this blocks for a name lookup) and starts connecting; the
 * connected or closed handler follows. Returns 0, or an EAI_* code (getaddrinfo) on failure. */
int link_connect(struct link *l, const char *host, const char *port);

/* Makes every later connection speak TLS with `ctx` (its verification settings), naming
 * `host` to the server (SNI) unless it is an address. The handlers' verify runs after each
 * handshake; a failed handshake closes with EPROTO (link_tls_error says why). */
void link_use_tls(struct link *l, struct ssl_ctx_st *ctx, const char *host);

/* Ends an LINK_UNDECIDED verdict: `trusted` brings the connection up, else closes it (no
 * closed handler). */
void link_decide(struct link *l, bool trusted);

/* Returns why the last TLS handshake failed (OpenSSL's words), or NULL. */
const char *link_tls_error(const struct link *l);

/* Returns true while the connection is established and not closed. */
bool link_is_up(const struct link *l);

/* Fills in the local address of the established connection. Returns 0, or -1. */
int link_local_addr(const struct link *l, struct sockaddr_storage *ss, socklen_t *len);

/* Sends the request `fmt...` (without tag or LF; the caller has validated its fields) with a
 * fresh tag. `fn` (may be NULL) gets the reply, or LINK_GONE at once when the link is down. */
void link_request(struct link *l, link_reply_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like link_request(), for a request whose reply may wait `grace` more seconds than the reply
 * timeout allows (`P2P`, answered when the peer has answered). */
void link_request_patient(struct link *l, unsigned grace, link_reply_fn fn, void *arg,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Notes that the direct message `id` was shown; `* ACK` goes out at the end of the batch. */
void link_ack(struct link *l, uint64_t id);

/* Closes the connection now (no closed handler); waiting requests get LINK_GONE. */
void link_close(struct link *l);

/* Closes and frees the link. Must not be called from inside one of its callbacks. */
void link_free(struct link *l);

#endif
