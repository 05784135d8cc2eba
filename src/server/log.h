/* Server diagnostics on stderr. Errors always print; info only with --verbose. Never pass a
 * password, a session secret or a message body to these functions. */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* Turns informational logging on or off. */
void log_set_verbose(bool on);

/* Returns true when informational logging is on (to skip building costly log lines). */
bool log_verbose(void);

/* Prints an error line, always. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints an informational line when verbose. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* How often lines of one kind that a peer can cause at will may be printed. */
#define LOG_THROTTLE_MS 60000

/* The state of one kind of throttled line; zero-initialise it. */
struct log_throttle {
    bool started;
    int64_t last_ms;          /* monotonic time of the last line printed */
    unsigned long suppressed; /* lines not printed since */
};

/* Prints an error line unless a line of this kind was printed less than LOG_THROTTLE_MS ago;
 * such lines are only counted, and the next line printed says how many there were. */
void log_error_throttled(struct log_throttle *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
