/* Input history kept between runs at a terminal: `$XDG_STATE_HOME/parley/history` (default
 * `~/.local/state/parley/history`), mode 0600 in a 0700 directory. Only command lines are in
 * readline's history (never a user name or a password), and pipe mode keeps none. */
#ifndef PARLEY_CLIENT_HISTFILE_H
#define PARLEY_CLIENT_HISTFILE_H

/* Loads the saved history into readline's (nothing happens when there is none). */
void histfile_load(void);

/* Saves readline's history, at most `max` lines, without the `private` lines (their text is
 * encrypted end to end), creating the file and its directories as needed. Failures are silent: the
 * history is a comfort, never a reason to fail. */
void histfile_save(int max);

#endif
