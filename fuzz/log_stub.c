/* Silent stand-ins for server/log.c: a fuzzer feeding damaged logs would print an error line
 * for each. */
#include "server/log.h"

void log_set_verbose(bool on)
{
    (void)on;
}

bool log_verbose(void)
{
    return false;
}

void log_error(const char *fmt, ...)
{
    (void)fmt;
}

void log_info(const char *fmt, ...)
{
    (void)fmt;
}
