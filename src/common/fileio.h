/* Small file helpers every program needs for writes that must survive a crash: a write that
 * goes on after short writes and interrupts, and the sync of a directory after a rename. */
#ifndef PARLEY_FILEIO_H
#define PARLEY_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all `len` bytes of `data` to `fd`, going on after short writes and EINTR. Returns 0,
 * or -1 with errno set. */
int fileio_write_all(int fd, const void *data, size_t len);

/* The same at offset `off` of `fd` (pwrite: the file position does not move). */
int fileio_pwrite_all(int fd, const void *data, size_t len, off_t off);

/* Flushes the directory that holds `path` (its parent; "." for a bare name), so that a rename
 * or a creation of `path` is durable. Returns 0, or -1 with errno set. */
int fileio_sync_parent(const char *path);

#endif
