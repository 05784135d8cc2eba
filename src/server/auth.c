/* Accounts: the credentials file, password checks (plain in constant time, argon2id through
 * libsodium), appending, rewriting the file hashed, and the lock-out rule. */
#include "server/auth.h"

#include "common/fileio.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define AUTH_MAX_LINE 4096
#define AUTH_MAX_FILE (64u * 1024u * 1024u)
#define AUTH_ARGON2ID_PREFIX "$argon2id$"

/* One line of a file buffer: `len` bytes at `ptr` without the LF; `has_lf` when one followed. */
struct line {
    const char *ptr;
    size_t len;
    bool has_lf;
};

/* A growable byte buffer. */
struct outbuf {
    char *data;
    size_t len;
    size_t cap;
};

/* An open-addressing set of entry indices, keyed by name (used while loading). */
struct name_set {
    size_t *slots; /* index + 1; 0 is empty */
    size_t cap;    /* a power of two */
    size_t used;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int auth_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

/* Checks the two fields of a non-blank line; returns NULL or the reason it is malformed. */
static const char *check_fields(const char *line, size_t len, size_t *name_len)
{
    const char *sp = memchr(line, ' ', len);
    if (!sp)
        return "missing space between name and password";
    size_t nlen = (size_t)(sp - line);
    struct proto_slice name = {line, nlen};
    struct proto_slice pass = {sp + 1, len - nlen - 1};
    if (nlen == 0)
        return "empty name";
    if (pass.len == 0)
        return "empty password";
    if (memchr(pass.ptr, ' ', pass.len))
        return "more than one space";
    if (!proto_is_name(name))
        return "invalid name (1..32 printable characters, none of ():, not starting with #)";
    if (!proto_is_password(pass))
        return "invalid password (1..128 printable characters)";
    *name_len = nlen;
    return NULL;
}

int auth_parse_line(const char *line, size_t len, struct auth_entry *out, bool *skipped, char *err,
                    size_t errlen)
{
    if (skipped)
        *skipped = false;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0 || line[0] == '#') {
        if (skipped)
            *skipped = true;
        return 0;
    }
    size_t nlen = 0;
    const char *why = check_fields(line, len, &nlen);
    if (why) {
        set_err(err, errlen, "%s", why);
        return -1;
    }
    size_t plen = len - nlen - 1;
    char *secret = malloc(plen + 1);
    if (!secret) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(secret, line + nlen + 1, plen);
    secret[plen] = '\0';
    memcpy(out->name, line, nlen);
    out->name[nlen] = '\0';
    out->secret = secret;
    bool hashed = plen >= sizeof AUTH_ARGON2ID_PREFIX - 1 &&
                  memcmp(secret, AUTH_ARGON2ID_PREFIX, sizeof AUTH_ARGON2ID_PREFIX - 1) == 0;
    out->kind = hashed ? AUTH_ARGON2ID : AUTH_PLAIN;
    return 0;
}

/* Reads a whole file (at most AUTH_MAX_FILE bytes) into a fresh buffer. Returns 0 or -1 (errno). */
static int read_all(const char *path, char **buf, size_t *len, mode_t *mode)
{
    char *data = NULL;
    size_t n = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto fail;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            if (cap >= AUTH_MAX_FILE) {
                errno = EFBIG;
                goto fail;
            }
            char *nd = malloc(ncap);
            if (!nd)
                goto fail;
            if (data) {
                memcpy(nd, data, n);
                sodium_memzero(data, cap);
            }
            free(data);
            data = nd;
            cap = ncap;
        }
        ssize_t r = read(fd, data + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *buf = data;
    *len = n;
    if (mode)
        *mode = st.st_mode & 07777;
    return 0;
fail:;
    int saved = errno;
    if (data)
        sodium_memzero(data, cap);
    free(data);
    close(fd);
    errno = saved;
    return -1;
}

/* Takes the next line of `buf` starting at `*pos`. Returns false at the end. */
static bool next_line(const char *buf, size_t len, size_t *pos, struct line *out)
{
    if (*pos >= len)
        return false;
    const char *start = buf + *pos;
    const char *lf = memchr(start, '\n', len - *pos);
    out->ptr = start;
    out->has_lf = lf != NULL;
    out->len = lf ? (size_t)(lf - start) : len - *pos;
    *pos += out->len + (lf ? 1 : 0);
    return true;
}

static size_t name_hash(const char *name)
{
    size_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Returns the slot for `name`: either the one holding it or the empty one where it belongs. */
static size_t *set_slot(const struct name_set *s, const struct auth_table *t, const char *name)
{
    size_t i = name_hash(name) & (s->cap - 1);
    while (s->slots[i] && strcmp(t->entries[s->slots[i] - 1].name, name) != 0)
        i = (i + 1) & (s->cap - 1);
    return &s->slots[i];
}

/* Doubles the set's capacity (or creates it). Returns 0 or -1. */
static int set_grow(struct name_set *s, const struct auth_table *t)
{
    size_t ncap = s->cap ? s->cap * 2 : 64;
    struct name_set n = {calloc(ncap, sizeof(size_t)), ncap, s->used};
    if (!n.slots)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            *set_slot(&n, t, t->entries[s->slots[i] - 1].name) = s->slots[i];
    free(s->slots);
    *s = n;
    return 0;
}

/* Appends an entry to the table (taking its secret). Returns 0 or -1. */
static int table_push(struct auth_table *t, const struct auth_entry *e)
{
    if (t->count == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        struct auth_entry *n = realloc(t->entries, ncap * sizeof *n);
        if (!n)
            return -1;
        t->entries = n;
        t->cap = ncap;
    }
    t->entries[t->count++] = *e;
    return 0;
}

static void free_secret(char *secret)
{
    if (secret) {
        sodium_memzero(secret, strlen(secret));
        free(secret);
    }
}

/* Adds a parsed entry unless its name is already present. A usable entry takes the place of
 * an unusable one of the same name; otherwise the newcomer is dropped, and *dup is set when
 * both were usable (a true duplicate). Returns 0 or -1 (out of memory; the entry is freed). */
static int table_add_unique(struct auth_table *t, struct name_set *s, struct auth_entry *e,
                            bool *dup)
{
    *dup = false;
    if ((s->used + 1) * 2 > s->cap && set_grow(s, t) != 0)
        goto fail;
    size_t *slot = set_slot(s, t, e->name);
    if (*slot) {
        struct auth_entry *old = &t->entries[*slot - 1];
        if (old->kind == AUTH_UNUSABLE && e->kind != AUTH_UNUSABLE) {
            free_secret(old->secret);
            old->kind = e->kind;
            old->secret = e->secret;
            return 0;
        }
        *dup = old->kind != AUTH_UNUSABLE && e->kind != AUTH_UNUSABLE;
        free_secret(e->secret);
        return 0;
    }
    if (table_push(t, e) != 0)
        goto fail;
    *slot = t->count;
    s->used++;
    return 0;
fail:
    free_secret(e->secret);
    return -1;
}

/* Reads a decimal number of 1..10 digits at `*p` and advances past it. */
static bool take_decimal(const char **p, unsigned long long *out)
{
    unsigned long long v = 0;
    size_t n = 0;
    while (n <= 10 && (*p)[n] >= '0' && (*p)[n] <= '9') {
        v = v * 10 + (unsigned long long)((*p)[n] - '0');
        n++;
    }
    if (n == 0 || n > 10)
        return false;
    *p += n;
    *out = v;
    return true;
}

/* Advances `*p` past `lit` when the text there starts with it. */
static bool take_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

int auth_hash_cost(const char *hash, struct auth_cost *out)
{
    const char *p = hash;
    unsigned long long version, m, t, lanes;
    if (!hash || !take_lit(&p, AUTH_ARGON2ID_PREFIX))
        return -1;
    if (take_lit(&p, "v=") && !(take_decimal(&p, &version) && take_lit(&p, "$")))
        return -1;
    if (!take_lit(&p, "m=") || !take_decimal(&p, &m) || !take_lit(&p, ",t=") ||
        !take_decimal(&p, &t) || !take_lit(&p, ",p=") || !take_decimal(&p, &lanes) || *p != '$')
        return -1;
    if (m > SIZE_MAX / 1024)
        return -1;
    out->ops = t;
    out->mem = (size_t)m * 1024;
    return 0;
}

/* Returns true, with the reason in `why`, when an argon2id entry must not be used: its
 * parameters cannot be read, or checking it would cost more than `cap` (NULL: no cap). */
static bool cost_refused(const struct auth_entry *e, const struct auth_cost *cap, char *why,
                         size_t whylen)
{
    struct auth_cost c;
    if (e->kind != AUTH_ARGON2ID)
        return false;
    if (auth_hash_cost(e->secret, &c) != 0) {
        set_err(why, whylen, "unreadable argon2id parameters");
        return true;
    }
    if (!cap || (c.ops <= cap->ops && c.mem <= cap->mem))
        return false;
    set_err(why, whylen,
            "argon2id cost t=%llu m=%zu KiB is over the cap (--max-hash-ops %llu, "
            "--max-hash-mem %zu)",
            c.ops, c.mem / 1024, cap->ops, cap->mem);
    return true;
}

/* Parses one line into `*e`; returns 0 (`*skipped` for blanks and comments) or -1 with the
 * reason in `why`. */
static int parse_checked(const struct line *ln, const struct auth_cost *cap, struct auth_entry *e,
                         bool *skipped, char *why, size_t whylen)
{
    if (ln->len > AUTH_MAX_LINE) {
        set_err(why, whylen, "line too long");
        return -1;
    }
    if (auth_parse_line(ln->ptr, ln->len, e, skipped, why, whylen) != 0)
        return -1;
    if (!*skipped && cost_refused(e, cap, why, whylen)) {
        free_secret(e->secret);
        e->secret = NULL;
        return -1;
    }
    return 0;
}

/* Keeps the name a refused line begins with (when it is a valid name) as an unusable entry.
 * It is copied into `name` for the report only when a space ends it: a line without one may
 * be a name and a password run together, and passwords are never logged. Returns 0 or -1
 * (out of memory). */
static int reserve_name(struct auth_table *t, struct name_set *s, const struct line *ln, char *name,
                        size_t namelen)
{
    const char *sp = memchr(ln->ptr, ' ', ln->len);
    size_t n = sp ? (size_t)(sp - ln->ptr) : ln->len;
    if (!sp && n > 0 && ln->ptr[n - 1] == '\r')
        n--;
    struct proto_slice field = {ln->ptr, n};
    name[0] = '\0';
    if (!proto_is_name(field))
        return 0;
    struct auth_entry e = {.kind = AUTH_UNUSABLE, .secret = strdup("")};
    bool dup = false;
    if (!e.secret)
        return -1;
    proto_slice_copy(field, e.name, sizeof e.name);
    if (sp)
        proto_slice_copy(field, name, namelen);
    return table_add_unique(t, s, &e, &dup);
}

/* Counts and reports a line that cannot be used and keeps its name out of registration.
 * Returns 0, or -1 when memory ran out. */
static int refuse_line(struct auth_table *t, struct name_set *s, const struct line *ln,
                       size_t lineno, const char *why, char *err, size_t errlen)
{
    char name[PROTO_MAX_NAME + 1];
    if (strcmp(why, "out of memory") == 0 || reserve_name(t, s, ln, name, sizeof name) != 0)
        return -1;
    t->bad_lines++;
    if (!err || !errlen || err[0] != '\0')
        return 0;
    if (name[0])
        set_err(err, errlen, "line %zu: %s (%s cannot log in until the line is fixed)", lineno, why,
                name);
    else
        set_err(err, errlen, "line %zu: %s", lineno, why);
    return 0;
}

/* Parses one line of the file into the table; problems go to `err` if it is still empty. */
static int load_line(struct auth_table *t, struct name_set *s, const struct line *ln, size_t lineno,
                     const struct auth_cost *cap, char *err, size_t errlen)
{
    char why[192] = "";
    struct auth_entry e;
    bool skipped = false, dup = false;
    if (parse_checked(ln, cap, &e, &skipped, why, sizeof why) != 0)
        return refuse_line(t, s, ln, lineno, why, err, errlen);
    if (skipped)
        return 0;
    if (table_add_unique(t, s, &e, &dup) != 0)
        return -1;
    if (dup && err && errlen && err[0] == '\0')
        set_err(err, errlen, "line %zu: duplicate name %s ignored", lineno, e.name);
    return 0;
}

int auth_load(const char *path, const struct auth_cost *cap, struct auth_table *out, char *err,
              size_t errlen)
{
    struct auth_table t = {0};
    struct name_set s = {0};
    char *buf = NULL;
    size_t len = 0, pos = 0, lineno = 0;
    struct line ln;
    memset(out, 0, sizeof *out);
    set_err(err, errlen, "%s", "");
    if (read_all(path, &buf, &len, NULL) != 0) {
        set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while (next_line(buf, len, &pos, &ln))
        if (load_line(&t, &s, &ln, ++lineno, cap, err, errlen) != 0)
            goto fail;
    free(s.slots);
    sodium_memzero(buf, len);
    free(buf);
    *out = t;
    return 0;
fail:
    set_err(err, errlen, "out of memory reading %s", path);
    free(s.slots);
    sodium_memzero(buf, len);
    free(buf);
    auth_table_free(&t);
    return -1;
}

enum auth_reload_verdict auth_reload_verdict(const struct auth_table *next, size_t running,
                                             size_t lost, unsigned max_loss_pct)
{
    assert(lost <= running && max_loss_pct <= 100);
    if (next->bad_lines > 0)
        return AUTH_RELOAD_BAD_LINES;
    /* lost / running > pct / 100, in integers; account counts are far below 2^57. */
    if ((uint64_t)lost * 100 > (uint64_t)running * max_loss_pct)
        return AUTH_RELOAD_LOSES_MANY;
    return AUTH_RELOAD_OK;
}

/* Linear scan: the table is the file as read; callers index it if they need speed. */
const struct auth_entry *auth_find(const struct auth_table *t, const char *name)
{
    if (!t || !name)
        return NULL;
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    return NULL;
}

void auth_table_free(struct auth_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        free_secret(t->entries[i].secret);
    free(t->entries);
    memset(t, 0, sizeof *t);
}

/* Compares through fixed-size digests so neither the content nor the lengths show in timing. */
static bool plain_equal(const char *stored, const char *given)
{
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof a, (const unsigned char *)stored, strlen(stored), NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)given, strlen(given), NULL, 0);
    bool eq = sodium_memcmp(a, b, sizeof a) == 0;
    sodium_memzero(a, sizeof a);
    sodium_memzero(b, sizeof b);
    return eq;
}

bool auth_check(const struct auth_entry *e, const char *password)
{
    if (!e || !e->secret || !password || e->kind == AUTH_UNUSABLE)
        return false;
    if (e->kind == AUTH_ARGON2ID)
        return crypto_pwhash_str_verify(e->secret, password, strlen(password)) == 0;
    return plain_equal(e->secret, password);
}

bool auth_check_is_slow(const struct auth_entry *e)
{
    return e && e->kind == AUTH_ARGON2ID;
}

int auth_hash(const char *password, const struct auth_cost *cost, char *out, size_t outlen)
{
    if (!password || !out || outlen < crypto_pwhash_STRBYTES)
        return -1;
    unsigned long long ops = cost ? cost->ops : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = cost ? cost->mem : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (crypto_pwhash_str(out, password, strlen(password), ops, mem) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* Returns 1 when the file is non-empty and its last byte is not a LF, 0 otherwise, -1 on error. */
static int needs_newline(int fd, off_t *size)
{
    struct stat st;
    char last = '\n';
    if (fstat(fd, &st) != 0)
        return -1;
    *size = st.st_size;
    if (st.st_size == 0)
        return 0;
    if (pread(fd, &last, 1, st.st_size - 1) != 1)
        return -1;
    return last != '\n';
}

/* After a short write, cuts the file back to `size` (best effort) and sets errno. */
static void undo_partial(int fd, off_t size, ssize_t written)
{
    int saved = written < 0 ? errno : EIO;
    if (written > 0 && ftruncate(fd, size) != 0)
        saved = errno;
    errno = saved;
}

int auth_append(const char *path, const char *name, const char *hash)
{
    char line[1 + PROTO_MAX_NAME + 1 + PROTO_MAX_PASSWORD + 1 + 1];
    if (!path || !name || !hash || !proto_is_name((struct proto_slice){name, strlen(name)}) ||
        !proto_is_password((struct proto_slice){hash, strlen(hash)}))
        return -1;
    /* O_RDWR (not O_WRONLY) so the last byte can be read back through the same descriptor. */
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return -1;
    off_t size = 0;
    int nl = needs_newline(fd, &size);
    if (nl < 0)
        goto fail;
    int n = snprintf(line, sizeof line, "%s%s %s\n", nl ? "\n" : "", name, hash);
    if (n < 0 || (size_t)n >= sizeof line)
        goto fail;
    /* One write: the separator LF and the line land together or not at all. */
    ssize_t w;
    do {
        w = write(fd, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
    if (w != n) {
        undo_partial(fd, size, w);
        goto fail;
    }
    if (fsync(fd) != 0)
        goto fail;
    return close(fd) == 0 ? 0 : -1;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int out_put(struct outbuf *o, const char *p, size_t len)
{
    if (o->cap - o->len < len) {
        size_t ncap = o->cap ? o->cap : 4096;
        while (ncap - o->len < len)
            ncap *= 2;
        char *n = malloc(ncap);
        if (!n)
            return -1;
        if (o->data) {
            memcpy(n, o->data, o->len);
            sodium_memzero(o->data, o->cap);
        }
        free(o->data);
        o->data = n;
        o->cap = ncap;
    }
    memcpy(o->data + o->len, p, len);
    o->len += len;
    return 0;
}

static void out_free(struct outbuf *o)
{
    if (o->data)
        sodium_memzero(o->data, o->cap);
    free(o->data);
    memset(o, 0, sizeof *o);
}

/* Emits one line of the new file: a plain entry hashed (keeping the line ending), anything
 * else byte for byte. Sets *hashed when it hashed. Returns 0 or -1. */
static int rewrite_line(struct outbuf *o, const struct line *ln, const struct auth_cost *cost,
                        bool *hashed, char *err, size_t errlen)
{
    struct auth_entry e;
    bool skipped = false;
    char hash[crypto_pwhash_STRBYTES];
    *hashed = false;
    if (ln->len > AUTH_MAX_LINE || auth_parse_line(ln->ptr, ln->len, &e, &skipped, NULL, 0) != 0 ||
        skipped)
        return out_put(o, ln->ptr, ln->len + (ln->has_lf ? 1 : 0));
    if (e.kind != AUTH_PLAIN) {
        free_secret(e.secret);
        return out_put(o, ln->ptr, ln->len + (ln->has_lf ? 1 : 0));
    }
    int rc = auth_hash(e.secret, cost, hash, sizeof hash);
    free_secret(e.secret);
    if (rc != 0) {
        set_err(err, errlen, "hashing failed for %s", e.name);
        return -1;
    }
    bool cr = ln->ptr[ln->len - 1] == '\r';
    const char *end = cr ? (ln->has_lf ? "\r\n" : "\r") : (ln->has_lf ? "\n" : "");
    if (out_put(o, e.name, strlen(e.name)) != 0 || out_put(o, " ", 1) != 0 ||
        out_put(o, hash, strlen(hash)) != 0 || out_put(o, end, strlen(end)) != 0) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    *hashed = true;
    return 0;
}

/* Builds the rewritten contents of `buf`. Returns the number of lines hashed, or -1. */
static int rewrite_build(const char *buf, size_t len, const struct auth_cost *cost,
                         struct outbuf *o, char *err, size_t errlen)
{
    size_t pos = 0;
    struct line ln;
    int count = 0;
    while (next_line(buf, len, &pos, &ln)) {
        bool hashed = false;
        if (rewrite_line(o, &ln, cost, &hashed, err, errlen) != 0) {
            if (err && errlen && err[0] == '\0')
                set_err(err, errlen, "out of memory");
            return -1;
        }
        if (hashed && count < INT_MAX)
            count++;
    }
    return count;
}

/* Writes `o` into a new temporary file next to `path` (name into `tmp`), with `mode`, synced.
 * Returns 0, or -1 with nothing left behind. */
static int write_temp(const char *path, const struct outbuf *o, mode_t mode, char *tmp,
                      size_t tmplen)
{
    int n = snprintf(tmp, tmplen, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= tmplen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fchmod(fd, mode) != 0 ||
        fileio_write_all(fd, o->data ? o->data : "", o->len) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

/* When nothing needs hashing the file is left alone. If only the final directory sync fails
 * the new file is in place: the count is returned and `err` says so. */
int auth_rewrite_hashed(const char *path, const struct auth_cost *cost, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    mode_t mode = 0600;
    struct outbuf o = {0};
    char tmp[PATH_MAX];
    set_err(err, errlen, "%s", "");
    if (!path || read_all(path, &buf, &len, &mode) != 0) {
        set_err(err, errlen, "cannot read %s: %s", path ? path : "(null)", strerror(errno));
        return -1;
    }
    int count = rewrite_build(buf, len, cost, &o, err, errlen);
    if (count <= 0)
        goto done;
    if (write_temp(path, &o, mode, tmp, sizeof tmp) != 0) {
        set_err(err, errlen, "cannot write a temporary file for %s: %s", path, strerror(errno));
        count = -1;
        goto done;
    }
    if (rename(tmp, path) != 0) {
        set_err(err, errlen, "cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        count = -1;
        goto done;
    }
    if (fileio_sync_parent(path) != 0)
        set_err(err, errlen, "%s replaced but its directory could not be synced", path);
done:
    sodium_memzero(buf, len);
    free(buf);
    out_free(&o);
    return count;
}

bool lockout_is_locked(struct lockout *l, int64_t now_ms)
{
    if (l->locked_until == 0)
        return false;
    if (l->locked_until >= INT64_MAX / 1000 || now_ms < l->locked_until * 1000)
        return true;
    l->locked_until = 0;
    l->failures = 0;
    return false;
}

/* An expired lock is cleared first, so counting starts afresh after a lock-out. The end is
 * rounded up to a whole second (the unit the store keeps): a lock never ends early. */
enum lockout_result lockout_fail(struct lockout *l, int64_t now_ms, int max_failures,
                                 int64_t duration)
{
    lockout_is_locked(l, now_ms);
    if (l->failures < INT_MAX)
        l->failures++;
    if (l->failures < (max_failures < 1 ? 1 : max_failures))
        return LOCKOUT_RETRY;
    if (duration < 0)
        duration = 0;
    if (now_ms < 0)
        now_ms = 0;
    int64_t now_s = now_ms / 1000 + (now_ms % 1000 != 0);
    l->locked_until = now_s > INT64_MAX / 1000 - duration ? INT64_MAX / 1000 : now_s + duration;
    return LOCKOUT_NOW_LOCKED;
}

void lockout_success(struct lockout *l)
{
    l->failures = 0;
    l->locked_until = 0;
}
