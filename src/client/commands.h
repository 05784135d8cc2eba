/* The commands a logged-in user types (spec §4): a table of names, argument shapes and
 * handlers; checks arguments before anything is sent; turns the server's replies and error
 * codes into the spec's exact lines. */
#ifndef PARLEY_CLIENT_COMMANDS_H
#define PARLEY_CLIENT_COMMANDS_H

#include "common/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct cmd;

/* The longest message text the client sends (the server's default limit). */
#define CMD_MAX_TEXT PROTO_DEFAULT_MAX_MESSAGE

/* A parsed command line. `text` points into the line that was parsed. */
struct cmd_call {
    const struct cmd *cmd;
    char user[PROTO_MAX_NAME + 1];
    const char *text;
    uint64_t seconds;
};

/* Parses `line`. Returns 0 with `out` filled in; 1 for a blank line (nothing to do); -1 with
 * the line to print in `err` (capacity `cap`): `Error. Invalid command`, a usage line, or what
 * is wrong with an argument. */
int cmd_parse(const char *line, struct cmd_call *out, char *err, size_t cap);

/* Returns the name of a parsed command. */
const char *cmd_name(const struct cmd *cmd);

/* Runs the command line `line` typed by the logged-in user, printing errors locally and
 * sending what the server must do; prints the outcome when the reply comes. */
void cmd_execute(struct client *c, const char *line);

/* Returns the NULL-terminated list of command names and their aliases (`/msg`, `/who`,
 * `/quit`, `/help`), for completion. */
const char *const *cmd_names(void);

/* Returns true when the command `word` (`len` bytes) takes a user name as first argument. */
bool cmd_takes_user(const char *word, size_t len);

#endif
