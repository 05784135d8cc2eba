/* Parley wire protocol, version 1: frame validation, field splitting and error codes.
 * See docs/PROTOCOL.md. Shared by the server, the client and the benchmark. */
#ifndef PARLEY_PROTO_H
#define PARLEY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAX_TAG 16
#define PROTO_MAX_NAME 32
#define PROTO_MAX_PASSWORD 128
#define PROTO_SECRET_HEX 32
#define PROTO_DEFAULT_MAX_LINE 4096
#define PROTO_DEFAULT_MAX_MESSAGE 1000

/* Error codes of `<tag> ERR <code> <text>` replies (docs/PROTOCOL.md §3). */
enum proto_error {
    PROTO_OK = 0,
    PROTO_E_BAD_REQUEST = 400,
    PROTO_E_BAD_PASSWORD = 401,
    PROTO_E_NOT_NOW = 403,
    PROTO_E_NO_SUCH_USER = 404,
    PROTO_E_ALREADY_ONLINE = 409,
    PROTO_E_OFFLINE = 410,
    PROTO_E_TOO_LONG = 413,
    PROTO_E_SELF = 422,
    PROTO_E_LOCKED = 423,
    PROTO_E_LOCKED_NOW = 424,
    PROTO_E_RATE_LIMITED = 429,
    PROTO_E_BLOCKED_BY_PEER = 451,
    PROTO_E_BLOCKING_PEER = 452,
    PROTO_E_NOT_BLOCKED = 453,
    PROTO_E_P2P_EXISTS = 454,
    PROTO_E_P2P_DECLINED = 455,
    PROTO_E_P2P_UNAVAILABLE = 456,
    PROTO_E_UNKNOWN_REQUEST = 501,
    PROTO_E_STORE_UNAVAILABLE = 503,
    PROTO_E_QUEUE_FULL = 507,
    PROTO_E_BUSY = 508,
    PROTO_E_BAD_VERSION = 505,
};

/* A view into a frame: not NUL-terminated, valid while the frame is. */
struct proto_slice {
    const char *ptr;
    size_t len;
};

/* Returns the short English text for an error code ("no such user"), never NULL. */
const char *proto_error_text(int code);

/* Returns PROTO_OK when `len` bytes at `s` (no LF) form a valid frame body: well-formed UTF-8
 * without C0 controls, DEL or C1 controls. Returns PROTO_E_BAD_REQUEST otherwise. */
int proto_validate(const char *s, size_t len);

/* Writes `v` in decimal at `out` (at most 20 bytes, no NUL); returns the end. */
char *proto_put_i64(char *out, int64_t v);

/* Returns true when the text contains only bytes allowed in a frame (see proto_validate). */
bool proto_text_ok(const char *s, size_t len);

/* Takes the next field from `*rest` (fields are separated by exactly one space) into `*field`
 * and advances `*rest` past it and its separator. Returns false when no field is left or the
 * field would be empty (the rest starts with a space). */
bool proto_next_field(struct proto_slice *rest, struct proto_slice *field);

/* Returns true for a request tag: 1..PROTO_MAX_TAG characters of [A-Za-z0-9]. */
bool proto_is_tag(struct proto_slice s);

/* Bytes a user name may not contain anywhere: the client marks the kind of a line with them
 * (`yoda: hi` direct, `yoda(private): hi` private), so a name holding one could pass for
 * another user or another kind of line. */
#define PROTO_NAME_FORBIDDEN "():"

/* The byte a user name may not begin with: the credentials file reads such a line as a
 * comment, so the account would vanish at the next load. */
#define PROTO_NAME_NOT_FIRST '#'

/* Returns true for a user name: 1..PROTO_MAX_NAME bytes in 0x21..0x7E, none of them in
 * PROTO_NAME_FORBIDDEN and the first not PROTO_NAME_NOT_FIRST. Every such name survives a
 * line `name password` of the credentials file unchanged. */
bool proto_is_name(struct proto_slice s);

/* Returns true for a password: 1..PROTO_MAX_PASSWORD bytes in 0x21..0x7E. */
bool proto_is_password(struct proto_slice s);

/* Parses a decimal number of 1..18 digits into `*out`. Returns false on anything else. */
bool proto_parse_u64(struct proto_slice s, uint64_t *out);

/* Returns true when the slice equals the NUL-terminated string `lit`. */
bool proto_slice_eq(struct proto_slice s, const char *lit);

/* Copies the slice into `dst` (capacity `cap`, NUL-terminated). Returns false if it does not fit.
 */
bool proto_slice_copy(struct proto_slice s, char *dst, size_t cap);

#endif
