/* Accounts: the credentials file, password checks and the lock-out rule. Nothing here touches
 * a socket or the event loop; argon2id checks are slow and must be run on a worker thread. */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto.h"

/* How a stored password is kept. */
enum auth_kind {
    AUTH_PLAIN,    /* the classic format: the password itself */
    AUTH_ARGON2ID, /* a libsodium "$argon2id$..." string */
};

/* One account of the credentials file. */
struct auth_entry {
    char name[PROTO_MAX_NAME + 1];
    enum auth_kind kind;
    char *secret; /* the password or the hash string; owned */
};

/* The accounts of one credentials file, in file order. */
struct auth_table {
    struct auth_entry *entries;
    size_t count;
    size_t cap;
};

/* Cost of argon2id hashing (libsodium opslimit/memlimit). */
struct auth_cost {
    unsigned long long ops;
    size_t mem;
};

/* Initialises libsodium; call once before anything else here. Returns 0 or -1. */
int auth_init(void);

/* Parses one line of a credentials file (without its LF; a trailing CR is tolerated):
 * `name password` with exactly one space. Blank lines and lines starting with '#' yield 0 and
 * leave `*out` untouched (`*skipped` set to true). Returns 0 on success, -1 on a malformed line
 * with a reason in `err`. */
int auth_parse_line(const char *line, size_t len, struct auth_entry *out, bool *skipped, char *err,
                    size_t errlen);

/* Loads a credentials file. Malformed lines are reported in `err` (first one) and skipped;
 * a duplicate name keeps the first entry. Returns 0, or -1 when the file cannot be read. */
int auth_load(const char *path, struct auth_table *out, char *err, size_t errlen);

/* Finds an account by name, or NULL. */
const struct auth_entry *auth_find(const struct auth_table *t, const char *name);

/* Frees the table's contents (the table struct itself is the caller's). */
void auth_table_free(struct auth_table *t);

/* Checks a password against an entry. Plain entries compare in constant time whatever the
 * lengths; argon2id entries cost one hash (slow: call from a worker thread). */
bool auth_check(const struct auth_entry *e, const char *password);

/* Returns true when checking this entry is slow (a hash) and belongs on a worker thread. */
bool auth_check_is_slow(const struct auth_entry *e);

/* Hashes `password` into `out` (an "$argon2id$..." string, NUL-terminated; `outlen` must be at
 * least 128) at the given cost. Returns 0 or -1. */
int auth_hash(const char *password, const struct auth_cost *cost, char *out, size_t outlen);

/* Appends the line `name hash` to the credentials file in a single write and syncs it.
 * Returns 0 or -1. */
int auth_append(const char *path, const char *name, const char *hash);

/* Rewrites a credentials file so every plain line becomes an argon2id line, atomically
 * (temporary file, fsync, rename): a crash leaves either the old or the new file. Comments,
 * blank lines and hashed lines are kept. Returns the number of lines hashed, or -1. */
int auth_rewrite_hashed(const char *path, const struct auth_cost *cost, char *err, size_t errlen);

/* The lock-out state of one user name. */
struct lockout {
    int failures;
    int64_t locked_until; /* unix seconds; 0 when not locked */
};

/* What a wrong password leads to. */
enum lockout_result {
    LOCKOUT_RETRY,     /* ask again */
    LOCKOUT_NOW_LOCKED /* that was the last allowed failure: locked from now */
};

/* Returns true while the user is locked at `now_ms` (unix milliseconds). An expired lock is
 * cleared (failures reset). */
bool lockout_is_locked(struct lockout *l, int64_t now_ms);

/* Counts a wrong password at `now_ms` (unix milliseconds). After `max_failures` consecutive
 * ones the user is locked for at least `duration` seconds: until now + duration, rounded up to
 * the next whole second. */
enum lockout_result lockout_fail(struct lockout *l, int64_t now_ms, int max_failures,
                                 int64_t duration);

/* Clears the failure count after a successful login. */
void lockout_success(struct lockout *l);

#endif
