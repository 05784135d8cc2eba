/* `parleyd --check`; see check.h. */
#include "server/check.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/auth.h"
#include "server/metrics.h"
#include "server/net_tls.h"
#include "server/store.h"

/* Descriptors the server holds besides its connections: listeners, the store's files, the
 * hash workers' pipes, the event loop's own; a limit below --max-connections plus these is
 * warned about. */
#define CHECK_SPARE_FDS 64

/* One thing to check; prints its problems and says whether there was one. */
typedef enum check_verdict (*check_step_fn)(const struct config *cfg);

static enum check_verdict check_credentials(const struct config *cfg)
{
    struct auth_table t = {0};
    struct auth_cost cap = {cfg->max_hash_ops, cfg->max_hash_mem};
    char err[256] = "";
    enum check_verdict v = CHECK_OK;
    if (auth_load(cfg->credentials, &cap, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "parleyd: credentials %s: %s\n", cfg->credentials, err);
        v = CHECK_WRONG;
    } else if (t.bad_lines) {
        fprintf(stderr, "parleyd: credentials %s: %zu line(s) cannot be used; the first: %s\n",
                cfg->credentials, t.bad_lines, err);
        v = CHECK_WRONG;
    }
    auth_table_free(&t);
    return v;
}

/* A missing data directory is made at start: its nearest existing parent must let it be. */
static enum check_verdict check_creatable(const char *dir)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    struct stat sb;
    char *slash;
    while ((slash = strrchr(parent, '/')) && slash != parent) {
        *slash = '\0';
        if (stat(parent, &sb) == 0)
            break;
    }
    if (!slash)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == parent)
        snprintf(parent, sizeof(parent), "/");
    if (access(parent, W_OK | X_OK) == 0)
        return CHECK_OK;
    fprintf(stderr, "parleyd: data directory %s is missing and cannot be made in %s: %s\n", dir,
            parent, strerror(errno));
    return CHECK_WRONG;
}

/* Opens the store as the server would and closes it again: the lock is held only meanwhile. */
static enum check_verdict check_data_dir(const struct config *cfg)
{
    struct stat sb;
    if (stat(cfg->data_dir, &sb) != 0 && errno == ENOENT)
        return check_creatable(cfg->data_dir);
    struct store *st = NULL;
    char err[512] = "";
    int rc = cfg->accept_store_loss
                 ? store_open_accepting_loss(&st, cfg->store, cfg->data_dir, err, sizeof(err))
                 : store_open(&st, cfg->store, cfg->data_dir, err, sizeof(err));
    store_close(st);
    if (rc == 0)
        return CHECK_OK;
    fprintf(stderr, "parleyd: data directory %s: %s\n", cfg->data_dir, err);
    return CHECK_WRONG;
}

/* A certificate given on the command line must load with its key; a generated one is made in
 * the data directory at start when missing. */
static enum check_verdict check_tls(const struct config *cfg)
{
    if (!cfg->tls_cert)
        return CHECK_OK;
    char err[512] = "";
    struct net_tls *tls = net_tls_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
    if (tls) {
        net_tls_free(tls);
        return CHECK_OK;
    }
    fprintf(stderr, "parleyd: %s\n", err);
    return CHECK_WRONG;
}

/* The server raises its descriptor limit to the hard one; below what --max-connections needs,
 * connections past it are refused (not fatal: a warning). */
static enum check_verdict check_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY)
        return CHECK_OK;
    unsigned long long need = (unsigned long long)cfg->max_connections + CHECK_SPARE_FDS;
    if (need > (unsigned long long)rl.rlim_max)
        fprintf(stderr,
                "parleyd: warning: --max-connections %zu needs about %llu descriptors; the "
                "limit is %llu (ulimit -Hn, LimitNOFILE= in the unit)\n",
                cfg->max_connections, need, (unsigned long long)rl.rlim_max);
    return CHECK_OK;
}

/* A --metrics address must have the form the server reads (it is bound only at start). */
static enum check_verdict check_metrics(const struct config *cfg)
{
    char host[METRICS_ADDR_MAX];
    int port;
    if (!cfg->metrics || metrics_parse_addr(cfg->metrics, host, &port) == 0)
        return CHECK_OK;
    fprintf(stderr, "parleyd: --metrics %s: expected ADDR:PORT\n", cfg->metrics);
    return CHECK_WRONG;
}

static const check_step_fn check_steps[] = {check_credentials, check_data_dir, check_tls,
                                            check_metrics, check_fd_limit};

enum check_verdict check_run(const struct config *cfg)
{
    enum check_verdict v = CHECK_OK;
    if (auth_init() < 0)
        return CHECK_WRONG;
    for (size_t i = 0; i < sizeof(check_steps) / sizeof(check_steps[0]); i++)
        if (check_steps[i](cfg) != CHECK_OK)
            v = CHECK_WRONG;
    return v;
}
