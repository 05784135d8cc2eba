/* The terminal side of the client. On a terminal it reads lines with readline's callback
 * interface (prompt, editing, history, completion) driven by the event loop, reads passwords
 * without echo, and prints incoming lines above the line being typed without disturbing it.
 * From a pipe it reads plain lines, prints no prompt for commands and no escape codes, and
 * hands over one line at a time. There is one terminal, so this module has one instance. */
#ifndef PARLEY_CLIENT_UI_H
#define PARLEY_CLIENT_UI_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

/* Receives each line the user entered, without its newline, or NULL once at end of input. The
 * line is only valid during the call. */
typedef void (*ui_line_fn)(void *ctx, const char *line);

/* Says whether the first word `word` (`len` bytes) of a command takes a user name next. */
typedef bool (*ui_user_arg_fn)(const char *word, size_t len);

/* What a one-line question reads. */
enum ui_input {
    UI_INPUT_LINE,   /* echoed, editable (a user name) */
    UI_INPUT_SECRET, /* not echoed on a terminal (a password) */
};

/* Sets the terminal up (tty or pipe mode, chosen from stdin and stdout) and the callback that
 * receives lines. Reads nothing until ui_ask() or ui_commands(). Returns 0, or -1 on failure. */
int ui_init(struct event_base *base, ui_line_fn fn, void *ctx);

/* Returns true when stdin and stdout are a terminal (interactive mode). */
bool ui_is_tty(void);

/* Returns true when the input is a terminal (a person types it; stdout may be redirected). */
bool ui_input_is_tty(void);

/* Shows `prompt` (also in pipe mode, without a newline) and reads one line of `kind`, which is
 * handed to the line callback; then reads nothing more until asked again. */
void ui_ask(enum ui_input kind, const char *prompt);

/* Reads command lines continuously with `prompt` (shown on a terminal only), handing each to
 * the line callback, with history and completion. */
void ui_commands(const char *prompt);

/* Changes the command prompt. A `question` prompt is also printed in pipe mode; on a
 * terminal it starts on an empty line, the line being typed is kept aside and comes back
 * with the next prompt that is not a question. */
void ui_set_prompt(const char *prompt, bool question);

/* Stops reading input and removes the prompt; ui_ask()/ui_commands() start again. A line
 * typed and not sent (not a password) is printed first as `Unsent: <line>`. */
void ui_stop(void);

/* In pipe mode, holds back the next command line until as many ui_release() calls as
 * ui_hold() calls have been made (the client waits for the server's reply). No-op on a tty. */
void ui_hold(void);

/* Ends one ui_hold(). */
void ui_release(void);

/* Prints one line (a newline is added) above the line being typed, after replacing control
 * characters and broken UTF-8 with '?'. */
void ui_print(const char *line);

/* ui_print() of a formatted line. */
void ui_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ui_printf() in the colour of the SGR code `sgr` (e.g. "35"; NULL: as ui_printf). Only the
 * caller's code is sent: the line itself is cleaned as always. */
void ui_printf_color(const char *sgr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shows lines starting `Error. ` in red from now on (`on`), or not. */
void ui_set_error_color(bool on);

/* Sets the words for tab completion: a NULL-terminated list of command names (kept, not
 * copied) and the test for commands whose next word is a user name. */
void ui_set_completion(const char *const *commands, ui_user_arg_fn user_arg);

/* Adds a user name to those offered by tab completion (names seen during the session). */
void ui_remember_name(const char *name);

/* After a stop (SIGCONT, e.g. Ctrl-Z then `fg`): puts the terminal back the way the current
 * prompt needs it (readline's mode, or no echo for a password), whatever the shell did to it
 * meanwhile, and redraws the prompt and the line being typed. */
void ui_resume(void);

/* Tells readline the terminal changed size (SIGWINCH). */
void ui_resize(void);

/* Stops reading, removes the prompt and restores the terminal, discarding what was typed
 * ahead and not read (it was meant for the client, not for the shell); prints nothing
 * afterwards except through plain stdout. Safe to call more than once. */
void ui_shutdown(void);

/* Frees what the module holds; ui_shutdown() must have been called. */
void ui_free(void);

#endif
