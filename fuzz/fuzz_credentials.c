/* libFuzzer harness: the credentials-file line parser and the file loader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_entry e = {0};
    bool skipped = false;
    char err[256];
    if (auth_parse_line((const char *)data, size, &e, &skipped, err, sizeof(err)) == 0 &&
        !skipped) {
        if (!e.secret || strlen(e.name) == 0 || strchr(e.name, ' '))
            abort();
        free(e.secret);
    }
    char path[] = "/tmp/parley-fuzz-cred-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        struct auth_table t = {0};
        if (auth_load(path, NULL, &t, err, sizeof(err)) == 0)
            for (size_t i = 0; i < t.count; i++)
                if (auth_find(&t, t.entries[i].name) == NULL)
                    abort();
        auth_table_free(&t);
    }
    close(fd);
    unlink(path);
    return 0;
}
