/* How incoming messages and the prompt are shown: the spec's exact line, with the opt-in
 * comforts of options.h added around it (time, broadcast marker, bell, colour, one's name in
 * the prompt). There is one terminal, so this module has one instance. */
#ifndef PARLEY_CLIENT_DISPLAY_H
#define PARLEY_CLIENT_DISPLAY_H

#include <stddef.h>
#include <stdint.h>

struct options;

/* Takes the comforts to use (kept, not copied). Colours and the bell only ever reach a
 * terminal, and colours not when NO_COLOR is set. */
void display_init(const struct options *o);

/* Remembers that the user logged in now: direct messages older than this waited for them. */
void display_logged_in(void);

/* `<from>: <text>`, a direct message the server stamped with `when` (Unix time). */
void display_direct(const char *from, uint64_t when, const char *text, size_t len);

/* `<from>: <text>`, a broadcast. */
void display_broadcast(const char *from, const char *text, size_t len);

/* `<from>(private): <text>`, a private message. */
void display_private(const char *from, const char *text, size_t len);

/* Writes the command prompt for user `me` into `buf`: `> `, or `me> ` with name-in-prompt. */
void display_prompt(char *buf, size_t cap, const char *me);

#endif
