/* File helpers; see fileio.h. */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

/* Writes all `len` bytes, at `off` when `at` (pwrite), else at the file position. */
static int write_loop(int fd, const void *data, size_t len, bool at, off_t off)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = at ? pwrite(fd, p, len, off) : write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

int fileio_write_all(int fd, const void *data, size_t len)
{
    return write_loop(fd, data, len, false, 0);
}

int fileio_pwrite_all(int fd, const void *data, size_t len, off_t off)
{
    return write_loop(fd, data, len, true, off);
}

int fileio_sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
