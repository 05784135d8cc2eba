/* One managed Redis connection (hiredis 0.14 on the libevent loop, through redis_event.c). It
 * connects by itself and again after every loss, with a jittered exponential backoff; it is
 * "up" only once Redis has answered the first command on the new connection (AUTH, or PING
 * without a password); a command left unanswered for timeout_ms drops the connection (this
 * covers a Redis that accepts connections but never answers, e.g. SIGSTOPped); at most
 * max_inflight commands wait for an answer, which is what bounds hiredis's output buffer.
 * Nothing here blocks the loop, except that a host name in a TCP address is resolved by
 * hiredis with a blocking getaddrinfo at each connect (give an IP address to avoid it).
 *
 * Replies come in order, one per command: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBE
 * forms and MONITOR are refused. A blocking command (XREAD BLOCK) is fine on a link whose
 * timeout_ms is above its BLOCK time. The process must ignore SIGPIPE (parleyd does). */
#ifndef PARLEY_REDIS_LINK_H
#define PARLEY_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct redisReply;
struct redis_link;

struct redis_link_settings {
    const char *addr;     /* "HOST:PORT" ("[IPv6]:PORT") or "unix:PATH" */
    const char *password; /* NULL: no AUTH */
    long timeout_ms;      /* a command unanswered this long: the connection is dropped and made
                           * again (> 0) */
    size_t max_inflight;  /* commands sent and not answered; past it redis_link_command refuses
                           * (>= 1) */
    long backoff_min_ms, backoff_max_ms; /* reconnect delay: doubled after each failed attempt,
                                          * jittered, capped (0 < min <= max) */
    const char *name; /* for log lines ("commands", "events"); CLIENT SETNAME is not needed */
};

/* A command's answer; NULL: no answer (link lost, timeout, reset, freed). The reply belongs to
 * hiredis and is freed when the callback returns. */
typedef void (*redis_link_reply_fn)(void *arg, struct redisReply *reply);

/* The link went up (Redis answered on a new connection) or down (it was up and is lost). */
typedef void (*redis_link_state_fn)(void *arg, bool up);

/* Copies the settings, parses the address and starts connecting at once (asynchronously: no
 * callback runs before it returns). Returns 0 and the link in *out, or -1 with a message in
 * `err` on a bad address, bad settings or no memory. */
int redis_link_new(struct redis_link **out, struct event_base *base,
                   const struct redis_link_settings *s, redis_link_state_fn on_state, void *arg,
                   char *err, size_t errlen);

/* Parses "HOST:PORT", "[IPv6]:PORT" (port 1-65535) or "unix:PATH" (a path that fits a
 * sockaddr_un) into host (the path for unix) and port (0 for unix). Returns 0, or -1 with a
 * message in `err` (for configuration checks too). */
int redis_link_parse_addr(const char *addr, char *host, size_t hostlen, int *port, bool *is_unix,
                          char *err, size_t errlen);

/* True when connected and Redis has answered the first command (AUTH when a password). */
bool redis_link_up(const struct redis_link *l);

/* The commands sent through redis_link_command and not answered yet (0 while down). */
size_t redis_link_inflight(const struct redis_link *l);

/* Sends one command (binary-safe argv; argvlen NULL: strlen of each). Returns -1 and does NOT
 * call fn when the link is not up, max_inflight commands are unanswered, the command is one of
 * the refused ones or memory ran out; else 0, and fn is called exactly once later from the loop
 * (never from inside this call), with the reply or NULL. */
int redis_link_command(struct redis_link *l, redis_link_reply_fn fn, void *arg, int argc,
                       const char **argv, const size_t *argvlen);

/* Drops the connection now and connects again after the backoff. Before it returns, every
 * pending callback is called with NULL, then on_state(false) if the link was up. Nothing
 * happens while no connection exists (waiting for the next attempt). Safe from any callback. */
void redis_link_reset(struct redis_link *l);

/* Closes the connection and frees everything; every pending callback is called with NULL
 * before it returns (on_state is not called). Safe from inside any of the link's callbacks;
 * the link must not be used after it (a second free from a callback it runs is ignored). NULL
 * allowed. */
void redis_link_free(struct redis_link *l);

#endif
