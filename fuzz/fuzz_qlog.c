/* libFuzzer harness: opening a queue log whose bytes after the magic are the input (torn,
 * damaged, junk). Opening must not crash or leak; once it succeeded the log must be whole:
 * a new message commits, the next open finds no damage, and ids never go back. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/qlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[sizeof dir + 16];

/* Removes every file of the directory: the log, its rewrite, copies of a damaged log. */
static void empty_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char file[sizeof dir + 300];

    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
        unlink(file);
    }
    if (d)
        closedir(d);
}

static void remove_dir(void)
{
    empty_dir();
    rmdir(dir);
}

/* Writes the magic and the input as the log file. */
static int write_log(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite("PARLEYQ1", 1, 8, f) == 8 && fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* After a successful open: a push commits, and the log opens again whole, ids above it. */
static void check_whole(struct qlog *q)
{
    char err[512];
    int64_t id;

    if (qlog_push(q, "fuzz", "fuzzed", 1, "x", 1, &id) != 0 || qlog_commit(q) != 0)
        abort();
    qlog_close(q);
    if (qlog_open(&q, path, NULL, err, sizeof err) != 0 || qlog_damaged(q) ||
        qlog_count(q, "fuzzed") < 1 || qlog_next_id(q) <= id)
        abort();
    qlog_close(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qlog *q = NULL;
    char err[512];

    if (!path[0]) {
        /* On a tmpfs when there is one: the log's flushes then cost nothing. */
        snprintf(dir, sizeof dir, "%s/parley-fuzz-qlog-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
        snprintf(path, sizeof path, "%s/parley.queue", dir);
    }
    if (write_log(data, size) == 0 && qlog_open(&q, path, NULL, err, sizeof err) == 0)
        check_whole(q);
    empty_dir();
    return 0;
}
