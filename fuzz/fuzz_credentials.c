/* libFuzzer harness: the credentials-file line parser, the loader (with and without a cost
 * cap), the argon2id cost reader and the reload verdict. Every name the loader keeps is a
 * valid name whose line reads back as itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A kept entry's line `name secret` parses back to the same entry. */
static void check_round_trip(const struct auth_entry *e)
{
    char line[PROTO_MAX_NAME + PROTO_MAX_PASSWORD + 8], err[256];
    struct auth_entry back = {0};
    bool skipped = true;
    if (!proto_is_name((struct proto_slice){e->name, strlen(e->name)}))
        abort();
    if (e->kind == AUTH_UNUSABLE)
        return;
    int n = snprintf(line, sizeof(line), "%s %s", e->name, e->secret);
    if (n < 0 || (size_t)n >= sizeof(line) ||
        auth_parse_line(line, (size_t)n, &back, &skipped, err, sizeof(err)) != 0 || skipped ||
        strcmp(back.name, e->name) != 0 || strcmp(back.secret, e->secret) != 0 ||
        back.kind != e->kind)
        abort();
    free(back.secret);
}

static void check_load(const char *path, const struct auth_cost *cap)
{
    struct auth_table t = {0};
    char err[256];
    if (auth_load(path, cap, &t, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < t.count; i++) {
            if (auth_find(&t, t.entries[i].name) == NULL)
                abort();
            check_round_trip(&t.entries[i]);
        }
        if (auth_reload_verdict(&t, t.count, 0, 50) != AUTH_RELOAD_OK && t.bad_lines == 0)
            abort();
    }
    auth_table_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_entry e = {0};
    struct auth_cost cost;
    bool skipped = false;
    char err[256];
    if (auth_parse_line((const char *)data, size, &e, &skipped, err, sizeof(err)) == 0 &&
        !skipped) {
        if (!e.secret || strlen(e.name) == 0 || strchr(e.name, ' '))
            abort();
        if (auth_hash_cost(e.secret, &cost) == 0 && e.kind != AUTH_ARGON2ID)
            abort();
        free(e.secret);
    }
    char path[] = "/tmp/parley-fuzz-cred-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        const struct auth_cost cap = {3, 1u << 20};
        check_load(path, NULL);
        check_load(path, &cap);
    }
    close(fd);
    unlink(path);
    return 0;
}
