/* The known_servers file: which key (common/tlsfp.h fingerprint) each server presented the
 * first time it was trusted, one `host:port sha256:<hex>` line each (as ssh's known_hosts).
 * `#` comments and blank lines are kept; a line that is neither is skipped. */
#ifndef PARLEY_CLIENT_KNOWN_H
#define PARLEY_CLIENT_KNOWN_H

#include <stddef.h>

#include "common/tlsfp.h"

/* What the file says of a server. */
enum known_result {
    KNOWN_UNKNOWN,  /* no line for it */
    KNOWN_MATCH,    /* its line names this key */
    KNOWN_MISMATCH, /* its line names another key: someone may be in the middle */
    KNOWN_ERROR,    /* the file could not be read (errno) */
};

/* Writes the name of `host` and `port` as the file has it ("[::1]:5001" for an IPv6
 * address) into `out`. */
void known_name(const char *host, const char *port, char *out, size_t len);

/* Looks `name` up in the text `text`; on a mismatch the key on file goes to `on_file` and its
 * line number to `*line`. */
enum known_result known_find(const char *text, const char *name, const char *fp,
                             char on_file[TLSFP_LEN + 1], int *line);

/* Looks `name` up in the file `path` (a missing file knows no one), like known_find. */
enum known_result known_lookup(const char *path, const char *name, const char *fp,
                               char on_file[TLSFP_LEN + 1], int *line);

/* Appends `name fp` to `path`, creating it (mode 0600) and its directory (0700) if needed.
 * Returns 0, or -1 (errno). */
int known_add(const char *path, const char *name, const char *fp);

/* Writes the file's usual path into `out`: $XDG_CONFIG_HOME/parley/known_servers, else
 * ~/.config/parley/known_servers. Returns 0, or -1 when neither is set. */
int known_default_path(char *out, size_t len);

#endif
