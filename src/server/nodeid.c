/* The node id of a cluster node; see nodeid.h. */
#include "server/nodeid.h"

#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define NODEID_FILE "node-id"
#define NODEID_HOST_MAX 40 /* characters of the host name in a made id */

/* Whether `c` may be part of a node id: ASCII letters, digits, '.', '_' and '-'. */
static bool nodeid_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool nodeid_valid(const char *id)
{
    size_t n = strnlen(id, NODEID_MAX + 1);
    if (n == 0 || n > NODEID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!nodeid_char(id[i]))
            return false;
    return true;
}

/* Copies `id` into `out`, or fails when it does not fit. */
static int copy_id(const char *id, char *out, size_t len, char *err, size_t errlen)
{
    if (strlen(id) >= len) {
        snprintf(err, errlen, "node id '%s' does not fit in %zu bytes", id, len);
        return -1;
    }
    memcpy(out, id, strlen(id) + 1);
    return 0;
}

/* Reads at most `size` - 1 bytes of `path` into `buf` and their count into `*got`. Returns 1
 * when there is no file, 0 when read, -1 on an error. */
static int read_kept(const char *path, char *buf, size_t size, size_t *got, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    ssize_t n = fd < 0 ? -1 : 0;
    *got = 0;
    while (fd >= 0 && *got < size - 1) {
        n = read(fd, buf + *got, size - 1 - *got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        *got += (size_t)n;
    }
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(saved));
        return -1;
    }
    buf[*got] = '\0';
    return 0;
}

/* Checks the `got` bytes read from the file: one valid id, maybe followed by one newline
 * (which is cut off). */
static int check_kept(const char *path, char *buf, size_t got, char *err, size_t errlen)
{
    if (got > 0 && buf[got - 1] == '\n')
        buf[--got] = '\0';
    if (got == 0) {
        snprintf(err, errlen, "%s is empty: remove it to make a new node id, or write one", path);
        return -1;
    }
    if (strlen(buf) != got || !nodeid_valid(buf)) {
        snprintf(err, errlen, "%s holds no valid node id (1 to %d of A-Z a-z 0-9 . _ -)", path,
                 NODEID_MAX);
        return -1;
    }
    return 0;
}

/* Makes a new id: "<hostname>-<8 random hex digits>", the host name kept to the id's
 * characters and NODEID_HOST_MAX of them ("node" when none is left). */
static int make_id(char *out, size_t size, char *err, size_t errlen)
{
    char host[256] = "";
    char kept[NODEID_HOST_MAX + 1];
    size_t n = 0;
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    for (const char *c = host; *c && n < NODEID_HOST_MAX; c++)
        if (nodeid_char(*c))
            kept[n++] = *c;
    kept[n] = '\0';
    uint32_t r;
    ssize_t got;
    while ((got = getrandom(&r, sizeof r, 0)) < 0 && errno == EINTR)
        ;
    if (got != (ssize_t)sizeof r) {
        snprintf(err, errlen, "no random bytes for a node id: %s", strerror(errno));
        return -1;
    }
    snprintf(out, size, "%s-%08x", n ? kept : "node", (unsigned)r);
    return 0;
}

/* Writes "<id>\n" to `path` atomically: a temporary file in `dir`, flushed, renamed. */
static int write_kept(const char *dir, const char *path, const char *id, char *err, size_t errlen)
{
    char tmp[PATH_MAX], line[NODEID_MAX + 2];
    int fd = -1;
    if (snprintf(tmp, sizeof tmp, "%s/." NODEID_FILE ".XXXXXX", dir) < (int)sizeof tmp)
        fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot make a temporary file: %s", dir, strerror(errno));
        return -1;
    }
    int n = snprintf(line, sizeof line, "%s\n", id);
    int rc = fileio_write_all(fd, line, (size_t)n);
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc == 0)
        rc = fileio_sync_parent(path);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

int nodeid_resolve(const char *given, const char *dir, char *out, size_t len, char *err,
                   size_t errlen)
{
    if (given)
        return copy_id(given, out, len, err, errlen);
    char path[PATH_MAX], buf[NODEID_MAX + 2];
    if (snprintf(path, sizeof path, "%s/" NODEID_FILE, dir) >= (int)sizeof path) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    size_t got = 0;
    int rc = read_kept(path, buf, sizeof buf, &got, err, errlen);
    if (rc == 0)
        rc = check_kept(path, buf, got, err, errlen);
    else if (rc == 1)
        rc = make_id(buf, sizeof buf, err, errlen) || write_kept(dir, path, buf, err, errlen) ? -1
                                                                                              : 0;
    return rc == 0 ? copy_id(buf, out, len, err, errlen) : -1;
}
