/* The known_servers file; see known.h. */
#include "client/known.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KNOWN_MAX_FILE (1 << 20) /* a known_servers file larger than this is not read */

void known_name(const char *host, const char *port, char *out, size_t len)
{
    if (strchr(host, ':'))
        snprintf(out, len, "[%s]:%s", host, port);
    else
        snprintf(out, len, "%s:%s", host, port);
}

/* Splits one line into its name and key; false for a comment, a blank or a malformed line. */
static bool split_line(const char *line, size_t n, char *name, size_t name_len,
                       char key[TLSFP_LEN + 1])
{
    const char *sp = memchr(line, ' ', n);
    if (n == 0 || line[0] == '#' || !sp || (size_t)(sp - line) >= name_len)
        return false;
    size_t klen = n - (size_t)(sp - line) - 1;
    char raw[TLSFP_LEN + 2];
    if (klen != TLSFP_LEN)
        return false;
    memcpy(raw, sp + 1, klen);
    raw[klen] = '\0';
    memcpy(name, line, (size_t)(sp - line));
    name[sp - line] = '\0';
    return tlsfp_parse(raw, key);
}

enum known_result known_find(const char *text, const char *name, const char *fp,
                             char on_file[TLSFP_LEN + 1], int *line)
{
    char this_name[512], key[TLSFP_LEN + 1];
    int no = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t full = nl ? (size_t)(nl - p) : strlen(p), n = full;
        no++;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (split_line(p, n, this_name, sizeof(this_name), key) && strcmp(this_name, name) == 0) {
            if (strcmp(key, fp) == 0)
                return KNOWN_MATCH;
            memcpy(on_file, key, TLSFP_LEN + 1);
            *line = no;
            return KNOWN_MISMATCH;
        }
        p += full + (nl ? 1 : 0);
    }
    return KNOWN_UNKNOWN;
}

/* Reads the whole file into a new string; NULL with errno ENOENT when it is missing. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(KNOWN_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, KNOWN_MAX_FILE, f) : 0;
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

enum known_result known_lookup(const char *path, const char *name, const char *fp,
                               char on_file[TLSFP_LEN + 1], int *line)
{
    char *text = read_all(path);
    if (!text)
        return errno == ENOENT ? KNOWN_UNKNOWN : KNOWN_ERROR;
    enum known_result r = known_find(text, name, fp, on_file, line);
    free(text);
    return r;
}

/* Creates the directory part of `path` (mode 0700) and its parent if missing. */
static void make_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = '\0';
    if (mkdir(dir, 0700) == 0 || errno != ENOENT)
        return;
    char *up = strrchr(dir, '/');
    if (up && up != dir) {
        *up = '\0';
        mkdir(dir, 0700);
        *up = '/';
    }
    mkdir(dir, 0700);
}

int known_add(const char *path, const char *name, const char *fp)
{
    make_parent(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    char line[600];
    int n = snprintf(line, sizeof(line), "%s %s\n", name, fp);
    ssize_t w = n > 0 && (size_t)n < sizeof(line) ? write(fd, line, (size_t)n) : -1;
    int saved = errno;
    if (close(fd) < 0 || w != n) {
        errno = w != n ? saved : errno;
        return -1;
    }
    return 0;
}

int known_default_path(char *out, size_t len)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(out, len, "%s/parley/known_servers", xdg);
    else if (home && home[0] == '/')
        snprintf(out, len, "%s/.config/parley/known_servers", home);
    else
        return -1;
    return 0;
}
