/* Server diagnostics on stderr. Errors always print; info only with --verbose. Never pass a
 * password, a session secret or a message body to these functions. */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stdbool.h>

/* Turns informational logging on or off. */
void log_set_verbose(bool on);

/* Returns true when informational logging is on (to skip building costly log lines). */
bool log_verbose(void);

/* Prints an error line, always. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints an informational line when verbose. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
