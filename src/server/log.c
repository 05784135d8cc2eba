/* stderr logging with a timestamp; see log.h. */
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static bool verbose;

void log_set_verbose(bool on)
{
    verbose = on;
}

bool log_verbose(void)
{
    return verbose;
}

/* Prints one line; `suffix` (may be NULL) is appended after the formatted text. */
static void vlog_line(const char *level, const char *suffix, const char *fmt, va_list ap)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "parleyd %s %s: ", when, level);
    vfprintf(stderr, fmt, ap);
    if (suffix)
        fputs(suffix, stderr);
    fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line("error", NULL, fmt, ap);
    va_end(ap);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_error_throttled(struct log_throttle *t, const char *fmt, ...)
{
    int64_t now = monotonic_ms();
    if (t->started && now - t->last_ms < LOG_THROTTLE_MS) {
        t->suppressed++;
        return;
    }
    char suffix[96] = "";
    if (t->suppressed)
        snprintf(suffix, sizeof(suffix), " (and %lu more like it since the last such line)",
                 t->suppressed);
    t->started = true;
    t->last_ms = now;
    t->suppressed = 0;
    va_list ap;
    va_start(ap, fmt);
    vlog_line("error", suffix, fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog_line("info", NULL, fmt, ap);
    va_end(ap);
}
