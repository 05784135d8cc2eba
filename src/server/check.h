/* `parleyd --check`: says whether the server would start with these settings, without starting
 * it (for operators and the systemd unit's ExecStartPre). */
#ifndef PARLEY_CHECK_H
#define PARLEY_CHECK_H

#include "server/config.h"

/* What check_run found. */
enum check_verdict {
    CHECK_OK = 0,    /* the server would start */
    CHECK_WRONG = 1, /* something is wrong; each problem was printed on stderr */
};

/* Validates the credentials file, the data directory (opening its store and closing it again,
 * so the directory's lock is held only for the check; a directory a running parleyd holds is
 * reported as wrong) and the options that depend on the system (the TLS key and certificate,
 * the form of the --metrics address, the descriptor limit against --max-connections, only a
 * warning). Never listens on a port and never creates a missing data directory. Prints one
 * line per problem, nothing when all is well. */
enum check_verdict check_run(const struct config *cfg);

#endif
