/* What a user has been shown from a server; see seen.h. The record is four lines:
 *
 *     parley-seen 1
 *     server <host> <port>
 *     user <name>
 *     last <id> <unix-time>
 *
 * in $XDG_STATE_HOME/parley/seen-<16 hex digits>, the digits a hash of host, port and user
 * (the first three lines say whose record it is, and a record that does not match them
 * exactly is ignored). */
#include "client/seen.h"

#include "common/fileio.h"

#include "common/proto.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEEN_MAGIC "parley-seen 1"
#define SEEN_MAX_FILE 1024 /* a record is far smaller: a bigger file is not one */
#define SEEN_MAX_HOST 255  /* longer host names are not remembered */
#define SEEN_MAX_PATH 4096

struct seen {
    struct event *save_ev; /* made active when a note waits to be saved */
    bool dirty;
    bool shown; /* `id` and `when` hold the newest message shown */
    uint64_t id, when;
    char host[SEEN_MAX_HOST + 1];
    unsigned port;
    char user[PROTO_MAX_NAME + 1];
    char dir[SEEN_MAX_PATH];  /* the state directory */
    char path[SEEN_MAX_PATH]; /* the record's file; "" when there is none */
};

/* ---- where ---- */

/* Puts the state directory in `dir`: $XDG_STATE_HOME/parley when that is an absolute path (the
 * XDG rule), else $HOME/.local/state/parley. False when neither is known or it is too long. */
static bool state_dir(char *dir, size_t cap)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(dir, cap, "%s/parley", xdg);
    else if (home && home[0] == '/')
        n = snprintf(dir, cap, "%s/.local/state/parley", home);
    else
        return false;
    return n > 0 && (size_t)n < cap;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Sets `s->dir` and `s->path` (left empty when there is no usable state directory). */
static void set_path(struct seen *s)
{
    char key[SEEN_MAX_HOST + PROTO_MAX_NAME + 16];
    int k = snprintf(key, sizeof(key), "%s\n%u\n%s", s->host, s->port, s->user);
    s->path[0] = '\0';
    if (k < 0 || (size_t)k >= sizeof(key) || !state_dir(s->dir, sizeof(s->dir)))
        return;
    uint64_t h = fnv1a(1469598103934665603ull, key, (size_t)k);
    int n = snprintf(s->path, sizeof(s->path), "%s/seen-%016" PRIx64, s->dir, h);
    if (n < 0 || (size_t)n >= sizeof(s->path))
        s->path[0] = '\0';
}

/* ---- the record ---- */

/* Writes the three lines that say whose record it is; returns their length, or 0. */
static size_t head_text(const struct seen *s, char *out, size_t cap)
{
    int n = snprintf(out, cap, SEEN_MAGIC "\nserver %s %u\nuser %s\n", s->host, s->port, s->user);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Parses `last <id> <time>\n`, the whole of `p`. */
static bool parse_last(const char *p, uint64_t *id, uint64_t *when)
{
    if (strncmp(p, "last ", 5) != 0)
        return false;
    p += 5;
    const char *sp = strchr(p, ' ');
    const char *nl = sp ? strchr(sp + 1, '\n') : NULL;
    if (!nl || nl[1] != '\0')
        return false;
    struct proto_slice a = {p, (size_t)(sp - p)}, b = {sp + 1, (size_t)(nl - sp - 1)};
    return proto_parse_u64(a, id) && proto_parse_u64(b, when);
}

/* Reads the regular file `path` of at most `cap - 1` bytes into `buf`, NUL-terminated, without
 * following a symbolic link or blocking on a FIFO. Returns false on any trouble. */
static bool read_small(const char *path, char *buf, size_t cap)
{
    struct stat st;
    size_t have = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size >= (off_t)cap)
        goto fail;
    for (;;) {
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        have += (size_t)n;
        if (have == cap - 1)
            goto fail; /* grew while being read */
    }
    close(fd);
    buf[have] = '\0';
    return memchr(buf, '\0', have) == NULL;
fail:
    close(fd);
    return false;
}

/* Loads the record from its file; anything unexpected leaves "nothing shown". */
static void load(struct seen *s)
{
    char buf[SEEN_MAX_FILE], head[SEEN_MAX_FILE];
    size_t hl = head_text(s, head, sizeof(head));
    uint64_t id, when;
    if (!s->path[0] || hl == 0 || !read_small(s->path, buf, sizeof(buf)))
        return;
    if (strncmp(buf, head, hl) != 0 || !parse_last(buf + hl, &id, &when))
        return;
    s->shown = true;
    s->id = id;
    s->when = when;
}

/* Creates `path` and its missing parents, mode 0700. */
static bool make_dirs(char *path)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = c;
        if (rc != 0 && errno != EEXIST)
            return false;
        if (c == '\0')
            return true;
    }
}

/* Replaces the file with the current record: a new file (0600) renamed over the old one, so
 * the file is always a whole record. A failure (read-only or full disk) is silent. */
static void save(struct seen *s)
{
    char text[SEEN_MAX_FILE], tmp[SEEN_MAX_PATH + 32];
    s->dirty = false;
    size_t hl = head_text(s, text, sizeof(text));
    int n = hl ? snprintf(text + hl, sizeof(text) - hl, "last %" PRIu64 " %" PRIu64 "\n", s->id,
                          s->when)
               : -1;
    int t = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", s->path, (long)getpid());
    if (!s->path[0] || n < 0 || (size_t)n >= sizeof(text) - hl || t < 0 ||
        (size_t)t >= sizeof(tmp) || !make_dirs(s->dir))
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = fileio_write_all(fd, text, hl + (size_t)n) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, s->path) != 0)
        unlink(tmp);
}

static void save_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct seen *s = arg;
    if (s->dirty)
        save(s);
}

/* ---- public ---- */

/* Parses a port of 1-5 digits, 1-65535. */
static bool parse_port(const char *port, unsigned *out)
{
    uint64_t v;
    struct proto_slice f = {port, strlen(port)};
    if (f.len == 0 || f.len > 5 || !proto_parse_u64(f, &v) || v == 0 || v > 65535)
        return false;
    *out = (unsigned)v;
    return true;
}

struct seen *seen_open(struct event_base *base, const char *host, const char *port,
                       const char *user)
{
    struct seen *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->save_ev = event_new(base, -1, 0, save_cb, s);
    if (!s->save_ev) {
        free(s);
        return NULL;
    }
    if (strlen(host) <= SEEN_MAX_HOST && strlen(user) <= PROTO_MAX_NAME &&
        parse_port(port, &s->port)) {
        snprintf(s->host, sizeof(s->host), "%s", host);
        snprintf(s->user, sizeof(s->user), "%s", user);
        set_path(s);
        load(s);
    }
    return s;
}

bool seen_already(const struct seen *s, uint64_t id, uint64_t when)
{
    return s && s->shown && id <= s->id && when <= s->when;
}

void seen_note(struct seen *s, uint64_t id, uint64_t when)
{
    if (!s)
        return;
    bool newer = !s->shown || id > s->id;
    bool restarted = !newer && when > s->when; /* the server's ids started again */
    if (!newer && !restarted)
        return;
    s->shown = true;
    s->id = id;
    s->when = restarted || when > s->when ? when : s->when;
    if (!s->dirty) {
        s->dirty = true;
        event_active(s->save_ev, EV_TIMEOUT, 0);
    }
}

void seen_close(struct seen *s)
{
    if (!s)
        return;
    if (s->dirty)
        save(s);
    event_free(s->save_ev);
    free(s);
}
