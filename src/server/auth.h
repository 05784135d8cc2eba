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
    AUTH_PLAIN = 0,    /* the classic format: the password itself */
    AUTH_ARGON2ID = 1, /* a libsodium "$argon2id$..." string */
    AUTH_UNUSABLE = 2, /* a line that could not be used: the name stays taken, no password fits */
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
    size_t bad_lines; /* lines that could not be used (malformed, or a hash over the cost cap) */
};

/* Cost of argon2id hashing (libsodium opslimit/memlimit). */
struct auth_cost {
    unsigned long long ops;
    size_t mem; /* bytes */
};

/* Initialises libsodium; call once before anything else here. Returns 0 or -1. */
int auth_init(void);

/* Parses one line of a credentials file (without its LF; a trailing CR is tolerated):
 * `name password` with exactly one space. Blank lines and lines starting with '#' yield 0 and
 * leave `*out` untouched (`*skipped` set to true). Returns 0 on success, -1 on a malformed line
 * with a reason in `err`. */
int auth_parse_line(const char *line, size_t len, struct auth_entry *out, bool *skipped, char *err,
                    size_t errlen);

/* Reads the cost of a "$argon2id$v=19$m=<KiB>,t=<ops>,p=<lanes>$..." string into `*out`
 * (memory in bytes; the version field is optional, as for libsodium). Returns 0, or -1 when
 * the string is not argon2id or its parameters cannot be read. */
int auth_hash_cost(const char *hash, struct auth_cost *out);

/* Loads a credentials file. A line that cannot be used is counted in `bad_lines`, reported in
 * `err` (the first one, by line number) and skipped: malformed, or an argon2id hash costing
 * more than `cap` (NULL: no cap) in operations or memory. When such a line begins with a
 * valid name, that name is kept as an AUTH_UNUSABLE entry, so the account cannot be
 * registered anew while its line is broken; a usable line of the same name replaces it.
 * Otherwise a duplicate name keeps the first entry. Returns 0, or -1 when the file cannot
 * be read. */
int auth_load(const char *path, const struct auth_cost *cap, struct auth_table *out, char *err,
              size_t errlen);

/* Whether a credentials reload may replace the accounts in use. */
enum auth_reload_verdict {
    AUTH_RELOAD_OK = 0,
    AUTH_RELOAD_BAD_LINES = 1,  /* the new file has a line that cannot be used */
    AUTH_RELOAD_LOSES_MANY = 2, /* it would remove more than the allowed share of accounts */
};

/* Judges a reload: `next` is the freshly loaded file, `running` the accounts in use and
 * `lost` how many of them `next` does not hold. Refused when `next` has a bad line, or when
 * `lost` is more than `max_loss_pct` percent (0..100) of `running`: an empty, truncated or
 * garbled file never replaces a working set wholesale. */
enum auth_reload_verdict auth_reload_verdict(const struct auth_table *next, size_t running,
                                             size_t lost, unsigned max_loss_pct);

/* Finds an account by name, or NULL. */
const struct auth_entry *auth_find(const struct auth_table *t, const char *name);

/* Frees the table's contents (the table struct itself is the caller's). */
void auth_table_free(struct auth_table *t);

/* Checks a password against an entry. Plain entries compare in constant time whatever the
 * lengths; argon2id entries cost one hash (slow: call from a worker thread); unusable entries
 * never match. */
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
    int64_t locked_until; /* unix seconds, rounded up; 0 when not locked */
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
