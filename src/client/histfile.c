/* Input history kept between runs; see histfile.h. */
#include "client/histfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>

/* Writes the history file's directory into `dir` and its path into `path`; false when
 * neither XDG_STATE_HOME nor HOME says where. */
static bool histfile_paths(char *dir, size_t dir_cap, char *path, size_t path_cap)
{
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (state && state[0] == '/')
        n = snprintf(dir, dir_cap, "%s/parley", state);
    else if (home && home[0] == '/')
        n = snprintf(dir, dir_cap, "%s/.local/state/parley", home);
    else
        return false;
    if (n < 0 || (size_t)n >= dir_cap)
        return false;
    n = snprintf(path, path_cap, "%s/history", dir);
    return n >= 0 && (size_t)n < path_cap;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int histfile_mkdirs(char *dir)
{
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(dir, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

void histfile_load(void)
{
    char dir[4096], path[4200];
    if (histfile_paths(dir, sizeof(dir), path, sizeof(path)))
        read_history(path);
}

/* Private messages are encrypted end to end: their text never goes to a file. */
static void drop_private_lines(void)
{
    for (int i = history_length - 1; i >= 0; i--) {
        HIST_ENTRY *e = history_get(history_base + i);
        if (e && strncmp(e->line, "private ", 8) == 0)
            free_history_entry(remove_history(i));
    }
}

void histfile_save(int max)
{
    char dir[4096], path[4200];
    if (!histfile_paths(dir, sizeof(dir), path, sizeof(path)) || histfile_mkdirs(dir) != 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    fchmod(fd, 0600); /* a file made by someone else's umask or an older version */
    close(fd);
    drop_private_lines();
    if (write_history(path) == 0)
        history_truncate_file(path, max);
}
