/* Identity keys, known_peers pins and safety numbers; see identity.h. */
#include "client/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENT_KEY_HEX (2 * PCH_KEY_LEN)
#define IDENT_LINE_MAX (PROTO_MAX_NAME + IDENT_KEY_HEX + 8)

bool ident_base_dir(char *out, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(out, cap, "%s/parley", xdg);
    else if (home && home[0] == '/')
        n = snprintf(out, cap, "%s/.config/parley", home);
    else
        return false;
    return n > 0 && (size_t)n < cap;
}

static int fail_with(char *err, size_t cap, const char *what, const char *path)
{
    snprintf(err, cap, "%s: %s", path, what);
    return -1;
}

/* Makes `path` and every missing directory above it (0700). */
static bool make_dirs(const char *path)
{
    char dir[IDENT_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *slash = strchr(dir + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash)
            *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return false;
        if (!slash)
            return true;
        *slash = '/';
    }
}

static bool path_in(const struct ident *id, const char *file, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", id->dir, file);
    return n > 0 && (size_t)n < cap;
}

/* Writes a fresh key to `path`, which must not exist yet. */
static int create_key(struct ident *id, const char *path, char *err, size_t cap)
{
    char hex[IDENT_KEY_HEX + 2];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fail_with(err, cap, strerror(errno), path);
    randombytes_buf(id->priv, PCH_KEY_LEN);
    sodium_bin2hex(hex, sizeof(hex), id->priv, PCH_KEY_LEN);
    hex[IDENT_KEY_HEX] = '\n';
    ssize_t w = write(fd, hex, IDENT_KEY_HEX + 1);
    sodium_memzero(hex, sizeof(hex));
    if (w != IDENT_KEY_HEX + 1 || fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return fail_with(err, cap, "cannot write the identity key", path);
    }
    close(fd);
    return 0;
}

static int read_key(struct ident *id, const char *path, char *err, size_t cap)
{
    char hex[IDENT_KEY_HEX + 8];
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return errno == ENOENT ? 1 : fail_with(err, cap, strerror(errno), path);
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        close(fd);
        return fail_with(err, cap, "readable by others; chmod 600 it", path);
    }
    ssize_t n = read(fd, hex, sizeof(hex));
    close(fd);
    size_t got = 0;
    int rc = 0;
    if (n < IDENT_KEY_HEX ||
        sodium_hex2bin(id->priv, PCH_KEY_LEN, hex, IDENT_KEY_HEX, NULL, &got, NULL) != 0 ||
        got != PCH_KEY_LEN)
        rc = fail_with(err, cap, "not an identity key (64 hex digits)", path);
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

/* The directory name for user `me`: the name itself when it is made of letters, digits, `-`
 * and `_` only and does not begin with `x-`, else `x-` and its bytes in hex (a name may hold
 * `/` or be `..`; `x-612e62` must not meet the directory of `a.b`). */
static void dir_name(const char *me, char out[2 * PROTO_MAX_NAME + 3])
{
    if (me[0] && strncmp(me, "x-", 2) != 0 &&
        strspn(me, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
            strlen(me)) {
        snprintf(out, 2 * PROTO_MAX_NAME + 3, "%s", me);
        return;
    }
    memcpy(out, "x-", 2);
    sodium_bin2hex(out + 2, 2 * PROTO_MAX_NAME + 1, (const uint8_t *)me, strlen(me));
}

int ident_load(struct ident *id, const char *base, const char *me, char *err, size_t cap)
{
    char path[IDENT_PATH_MAX], name[2 * PROTO_MAX_NAME + 3];
    memset(id, 0, sizeof(*id));
    snprintf(id->me, sizeof(id->me), "%s", me);
    dir_name(id->me, name);
    int n = snprintf(id->dir, sizeof(id->dir), "%s/%s", base, name);
    if (n < 0 || (size_t)n >= sizeof(id->dir) || !path_in(id, "identity", path, sizeof(path)))
        return fail_with(err, cap, "path too long", base);
    if (!make_dirs(id->dir))
        return fail_with(err, cap, strerror(errno), id->dir);
    int rc = read_key(id, path, err, cap);
    if (rc > 0)
        rc = create_key(id, path, err, cap);
    if (rc == 0)
        pch_public_key(id->pub, id->priv);
    return rc;
}

/* ---- known_peers ---- */

/* Parses `<peer> <hex>` from `line`; false for anything else. */
static bool parse_pin(const char *line, char *peer, uint8_t pub[PCH_KEY_LEN])
{
    const char *sp = strchr(line, ' ');
    if (!sp || sp == line || (size_t)(sp - line) > PROTO_MAX_NAME)
        return false;
    const char *hex = sp + 1;
    size_t len = strcspn(hex, "\n");
    size_t got = 0;
    if (len != IDENT_KEY_HEX || hex[len] != '\n')
        return false;
    if (sodium_hex2bin(pub, PCH_KEY_LEN, hex, len, NULL, &got, NULL) != 0 || got != PCH_KEY_LEN)
        return false;
    memcpy(peer, line, (size_t)(sp - line));
    peer[sp - line] = '\0';
    return true;
}

/* Calls `fn` on each pin in known_peers (none when the file is missing) until it returns
 * true. Returns 1 when it did, 0 when it never did, -1 when the file is unreadable or bad. */
static int each_pin(const struct ident *id, bool (*fn)(void *, const char *, const uint8_t *),
                    void *arg)
{
    char path[IDENT_PATH_MAX], line[IDENT_LINE_MAX], peer[PROTO_MAX_NAME + 1];
    uint8_t pub[PCH_KEY_LEN];
    if (!path_in(id, "known_peers", path, sizeof(path)))
        return -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    int rc = 0, lines = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        if (++lines > IDENT_MAX_PEERS || !parse_pin(line, peer, pub))
            rc = -1;
        else if (fn(arg, peer, pub))
            rc = 1;
    }
    fclose(f);
    return rc;
}

struct find_arg {
    const char *peer;
    uint8_t *pub;
};

static bool find_fn(void *arg, const char *peer, const uint8_t *pub)
{
    struct find_arg *a = arg;
    if (strcmp(peer, a->peer) != 0)
        return false;
    memcpy(a->pub, pub, PCH_KEY_LEN);
    return true;
}

int ident_peer_key(const struct ident *id, const char *peer, uint8_t pub[PCH_KEY_LEN])
{
    struct find_arg a = {peer, pub};
    return each_pin(id, find_fn, &a);
}

static bool count_fn(void *arg, const char *peer, const uint8_t *pub)
{
    (void)peer;
    (void)pub;
    ++*(size_t *)arg;
    return false;
}

/* Returns the number of pins in known_peers (IDENT_MAX_PEERS when it cannot be read). */
static size_t count_pins(const struct ident *id)
{
    size_t n = 0;
    return each_pin(id, count_fn, &n) < 0 ? IDENT_MAX_PEERS : n;
}

static bool append_pin(const struct ident *id, const char *peer, const uint8_t pub[PCH_KEY_LEN])
{
    char path[IDENT_PATH_MAX], line[IDENT_LINE_MAX], hex[IDENT_KEY_HEX + 1];
    if (!path_in(id, "known_peers", path, sizeof(path)))
        return false;
    sodium_bin2hex(hex, sizeof(hex), pub, PCH_KEY_LEN);
    int n = snprintf(line, sizeof(line), "%s %s\n", peer, hex);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
        return false;
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    return close(fd) == 0 && ok;
}

enum ident_pin ident_check_peer(const struct ident *id, const char *peer,
                                const uint8_t pub[PCH_KEY_LEN])
{
    uint8_t pinned[PCH_KEY_LEN];
    int rc = ident_peer_key(id, peer, pinned);
    if (rc < 0)
        return IDENT_PIN_ERROR;
    if (rc > 0)
        return sodium_memcmp(pinned, pub, PCH_KEY_LEN) == 0 ? IDENT_PIN_SAME : IDENT_PIN_CHANGED;
    if (count_pins(id) >= IDENT_MAX_PEERS)
        return IDENT_PIN_FULL; /* past it the file could not be read back, nor forgotten in */
    return append_pin(id, peer, pub) ? IDENT_PIN_NEW : IDENT_PIN_ERROR;
}

struct copy_arg {
    const char *drop;
    FILE *out;
    bool dropped, failed;
};

static bool copy_fn(void *arg, const char *peer, const uint8_t *pub)
{
    struct copy_arg *a = arg;
    char hex[IDENT_KEY_HEX + 1];
    if (strcmp(peer, a->drop) == 0) {
        a->dropped = true;
        return false;
    }
    sodium_bin2hex(hex, sizeof(hex), pub, PCH_KEY_LEN);
    if (fprintf(a->out, "%s %s\n", peer, hex) < 0)
        a->failed = true;
    return false;
}

int ident_forget(const struct ident *id, const char *peer)
{
    char path[IDENT_PATH_MAX], tmp[IDENT_PATH_MAX];
    if (!path_in(id, "known_peers", path, sizeof(path)) ||
        !path_in(id, "known_peers.tmp", tmp, sizeof(tmp)))
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        goto fail;
    }
    struct copy_arg a = {peer, f, false, false};
    bool ok =
        each_pin(id, copy_fn, &a) == 0 && !a.failed && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0 || !ok)
        goto fail;
    if (!a.dropped) {
        unlink(tmp);
        return 0;
    }
    if (rename(tmp, path) != 0)
        goto fail;
    return 1;
fail:
    unlink(tmp);
    return -1;
}

/* ---- safety numbers ---- */

/* One user's 30 digits: SHA-512(0x0000 ‖ key ‖ name), then (hash ‖ key) again and again;
 * six 5-byte big-endian chunks of the result, each mod 100000. */
static void half_digits(const char *name, const uint8_t pub[PCH_KEY_LEN],
                        char out[IDENT_NUMBER_DIGITS + 1])
{
    uint8_t h[crypto_hash_sha512_BYTES];
    const uint8_t version[2] = {0, 0};
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, version, sizeof(version));
    crypto_hash_sha512_update(&st, pub, PCH_KEY_LEN);
    crypto_hash_sha512_update(&st, (const uint8_t *)name, strlen(name));
    crypto_hash_sha512_final(&st, h);
    for (int i = 1; i < IDENT_ITERATIONS; i++) {
        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, h, sizeof(h));
        crypto_hash_sha512_update(&st, pub, PCH_KEY_LEN);
        crypto_hash_sha512_final(&st, h);
    }
    for (int c = 0; c < IDENT_NUMBER_DIGITS / 5; c++) {
        uint64_t v = 0;
        for (int b = 0; b < 5; b++)
            v = (v << 8) | h[5 * c + b];
        snprintf(out + 5 * c, 6, "%05u", (unsigned)(v % 100000));
    }
}

/* Copies `digits` into `out` in groups of five separated by one space. */
static char *grouped(const char *digits, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && i % 5 == 0)
            *out++ = ' ';
        *out++ = digits[i];
    }
    *out = '\0';
    return out;
}

void ident_safety_number(const char *a, const uint8_t apub[PCH_KEY_LEN], const char *b,
                         const uint8_t bpub[PCH_KEY_LEN], char out[IDENT_SAFETY_LEN + 1])
{
    char da[IDENT_NUMBER_DIGITS + 1], db[IDENT_NUMBER_DIGITS + 1];
    char both[2 * IDENT_NUMBER_DIGITS + 1];
    half_digits(a, apub, da);
    half_digits(b, bpub, db);
    bool a_first = strcmp(da, db) <= 0;
    snprintf(both, sizeof(both), "%s%s", a_first ? da : db, a_first ? db : da);
    grouped(both, 2 * IDENT_NUMBER_DIGITS, out);
}

void ident_own_number(const char *name, const uint8_t pub[PCH_KEY_LEN], char out[IDENT_OWN_LEN + 1])
{
    char d[IDENT_NUMBER_DIGITS + 1];
    half_digits(name, pub, d);
    grouped(d, IDENT_NUMBER_DIGITS, out);
}

void ident_wipe(struct ident *id)
{
    sodium_memzero(id->priv, sizeof(id->priv));
}
