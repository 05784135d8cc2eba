/* Command-line parsing for parleyd; see config.h and man/parleyd.8. */
#include "server/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

static const char usage_text[] =
    "usage: parleyd [options] <port> <block_duration> <timeout>\n"
    "\n"
    "  <port>            TCP port to listen on (0: any free port)\n"
    "  <block_duration>  seconds an account stays locked after 3 wrong passwords\n"
    "  <timeout>         idle seconds after which a user is logged out\n"
    "\n"
    "options (each may replace a positional argument):\n"
    "  --port N --block-duration S --timeout S\n"
    "  --credentials FILE     accounts file (default credentials.txt)\n"
    "  --data-dir DIR         store directory (default parley-data)\n"
    "  --bind ADDR            listen address (default 0.0.0.0)\n"
    "  --port-file FILE       write the bound port to FILE once listening\n"
    "  --allow-register       unknown user names become new accounts\n"
    "  --p2p-consent          ask users before a private session starts\n"
    "  --fsync                flush every store write to the disk before it counts (survives\n"
    "                         a power loss; default: a crash of the process)\n"
    "  --accept-store-loss    start although parley.db or parley.queue was lost (once)\n"
    "  --hash-credentials FILE  rewrite FILE's plain passwords as argon2id hashes and exit\n"
    "  --hash-ops N --hash-mem BYTES  argon2id cost (default: libsodium interactive)\n"
    "  --hash-threads N       password-hashing threads (default 2)\n"
    "  --max-hash-ops N --max-hash-mem BYTES  refuse credentials lines whose hash costs more\n"
    "                         (default: libsodium moderate, 3 / 268435456, or the hash cost)\n"
    "limits:\n"
    "  --max-line BYTES       frame length, newline included (default 4096)\n"
    "  --max-message BYTES    message text length (default 1000)\n"
    "  --max-output BYTES     output queued per client before it is cut off (default 1048576)\n"
    "  --max-connections N    connections at once (default 100000)\n"
    "  --login-timeout S      time allowed to finish logging in (default 120)\n"
    "  --msg-rate N           messages per second per user, 0 = unlimited (default 50)\n"
    "  --msg-burst N          messages a user may send at once (default 200)\n"
    "  --max-errors N         malformed frames in a row before closing (default 100)\n"
    "  --max-queued N         messages waiting for one user until acknowledged (default 10000)\n"
    "  --max-failures N       wrong passwords before a lock-out (default 3)\n"
    "  --max-hash-jobs N      password hashes queued or running at once (default 256)\n"
    "  --register-rate N      registrations a minute per address, 0 = unlimited (default 10)\n"
    "  --max-reload-loss PCT  SIGHUP reload refused if it removes more accounts (default 50)\n"
    "  --store-reserve BYTES  disk held back for lock-outs on a full disk (default 1048576)\n"
    "  --verbose              log to stderr (never passwords or message bodies)\n"
    "  --help, --version\n";

enum {
    OPT_PORT = 256,
    OPT_BLOCK,
    OPT_TIMEOUT,
    OPT_CREDENTIALS,
    OPT_DATA_DIR,
    OPT_BIND,
    OPT_PORT_FILE,
    OPT_REGISTER,
    OPT_CONSENT,
    OPT_FSYNC,
    OPT_ACCEPT_STORE_LOSS,
    OPT_HASH_CREDENTIALS,
    OPT_HASH_OPS,
    OPT_HASH_MEM,
    OPT_HASH_THREADS,
    OPT_MAX_HASH_OPS,
    OPT_MAX_HASH_MEM,
    OPT_MAX_LINE,
    OPT_MAX_MESSAGE,
    OPT_MAX_OUTPUT,
    OPT_MAX_CONNECTIONS,
    OPT_LOGIN_TIMEOUT,
    OPT_MSG_RATE,
    OPT_MSG_BURST,
    OPT_MAX_ERRORS,
    OPT_MAX_QUEUED,
    OPT_MAX_FAILURES,
    OPT_MAX_HASH_JOBS,
    OPT_REGISTER_RATE,
    OPT_MAX_RELOAD_LOSS,
    OPT_STORE_RESERVE,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_VERSION,
};

static const struct option long_options[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"block-duration", required_argument, NULL, OPT_BLOCK},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"credentials", required_argument, NULL, OPT_CREDENTIALS},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"bind", required_argument, NULL, OPT_BIND},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"allow-register", no_argument, NULL, OPT_REGISTER},
    {"p2p-consent", no_argument, NULL, OPT_CONSENT},
    {"fsync", no_argument, NULL, OPT_FSYNC},
    {"accept-store-loss", no_argument, NULL, OPT_ACCEPT_STORE_LOSS},
    {"hash-credentials", required_argument, NULL, OPT_HASH_CREDENTIALS},
    {"hash-ops", required_argument, NULL, OPT_HASH_OPS},
    {"hash-mem", required_argument, NULL, OPT_HASH_MEM},
    {"hash-threads", required_argument, NULL, OPT_HASH_THREADS},
    {"max-hash-ops", required_argument, NULL, OPT_MAX_HASH_OPS},
    {"max-hash-mem", required_argument, NULL, OPT_MAX_HASH_MEM},
    {"max-line", required_argument, NULL, OPT_MAX_LINE},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"max-output", required_argument, NULL, OPT_MAX_OUTPUT},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT},
    {"msg-rate", required_argument, NULL, OPT_MSG_RATE},
    {"msg-burst", required_argument, NULL, OPT_MSG_BURST},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
    {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
    {"max-hash-jobs", required_argument, NULL, OPT_MAX_HASH_JOBS},
    {"register-rate", required_argument, NULL, OPT_REGISTER_RATE},
    {"max-reload-loss", required_argument, NULL, OPT_MAX_RELOAD_LOSS},
    {"store-reserve", required_argument, NULL, OPT_STORE_RESERVE},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void set_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = -1;
    cfg->block_duration = -1;
    cfg->timeout = -1;
    cfg->credentials = "credentials.txt";
    cfg->data_dir = "parley-data";
    cfg->hash_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    cfg->hash_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    cfg->hash_threads = 2;
    cfg->max_line = PROTO_DEFAULT_MAX_LINE;
    cfg->max_message = PROTO_DEFAULT_MAX_MESSAGE;
    cfg->max_output = 1 << 20;
    cfg->max_connections = 100000;
    cfg->login_timeout = 120;
    cfg->msg_rate = 50;
    cfg->msg_burst = 200;
    cfg->max_errors = 100;
    cfg->max_queued = 10000;
    cfg->max_failures = 3;
    cfg->max_hash_jobs = 256;
    cfg->register_rate = 10;
    cfg->max_reload_loss = 50;
    cfg->store_reserve = 1 << 20;
}

/* Parses a whole decimal number in [min, max]. */
static bool parse_num(const char *name, const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || end == s || *end || v < min || v > max) {
        fprintf(stderr, "parleyd: %s must be a number from %lld to %lld, not '%s'\n", name, min,
                max, s);
        return false;
    }
    *out = v;
    return true;
}

/* The options of accounts and password hashing (issue 9). */
static bool set_auth_number(struct config *cfg, int opt, const char *arg)
{
    long long v;
    switch (opt) {
    case OPT_MAX_HASH_OPS:
        return parse_num("--max-hash-ops", arg, 1, 1000, &v) &&
               (cfg->max_hash_ops = (unsigned long long)v, true);
    case OPT_MAX_HASH_MEM:
        return parse_num("--max-hash-mem", arg, 8192, 1LL << 32, &v) &&
               (cfg->max_hash_mem = (size_t)v, true);
    case OPT_MAX_HASH_JOBS:
        return parse_num("--max-hash-jobs", arg, 1, 1000000, &v) &&
               (cfg->max_hash_jobs = (unsigned)v, true);
    case OPT_REGISTER_RATE:
        return parse_num("--register-rate", arg, 0, 1000000, &v) &&
               (cfg->register_rate = (unsigned)v, true);
    case OPT_MAX_RELOAD_LOSS:
        return parse_num("--max-reload-loss", arg, 0, 100, &v) &&
               (cfg->max_reload_loss = (unsigned)v, true);
    default:
        return false;
    }
}

static bool set_number(struct config *cfg, int opt, const char *arg)
{
    long long v;
    switch (opt) {
    case OPT_PORT:
        return parse_num("port", arg, 0, 65535, &v) && (cfg->port = (int)v, true);
    case OPT_BLOCK:
        return parse_num("block_duration", arg, 0, 100000000, &v) &&
               (cfg->block_duration = (long)v, true);
    case OPT_TIMEOUT:
        return parse_num("timeout", arg, 1, 100000000, &v) && (cfg->timeout = (long)v, true);
    case OPT_HASH_OPS:
        return parse_num("--hash-ops", arg, 1, 1000, &v) &&
               (cfg->hash_ops = (unsigned long long)v, true);
    case OPT_HASH_MEM:
        return parse_num("--hash-mem", arg, 8192, 1LL << 32, &v) &&
               (cfg->hash_mem = (size_t)v, true);
    case OPT_HASH_THREADS:
        return parse_num("--hash-threads", arg, 1, 64, &v) && (cfg->hash_threads = (int)v, true);
    case OPT_MAX_LINE:
        return parse_num("--max-line", arg, 256, 1 << 20, &v) && (cfg->max_line = (size_t)v, true);
    case OPT_MAX_MESSAGE:
        return parse_num("--max-message", arg, 1, 1 << 20, &v) &&
               (cfg->max_message = (size_t)v, true);
    case OPT_MAX_OUTPUT:
        return parse_num("--max-output", arg, 4096, 1LL << 34, &v) &&
               (cfg->max_output = (size_t)v, true);
    case OPT_MAX_CONNECTIONS:
        return parse_num("--max-connections", arg, 1, 10000000, &v) &&
               (cfg->max_connections = (size_t)v, true);
    case OPT_LOGIN_TIMEOUT:
        return parse_num("--login-timeout", arg, 1, 100000000, &v) &&
               (cfg->login_timeout = (long)v, true);
    case OPT_MSG_RATE:
        return parse_num("--msg-rate", arg, 0, 10000000, &v) && (cfg->msg_rate = (unsigned)v, true);
    case OPT_MSG_BURST:
        return parse_num("--msg-burst", arg, 1, 10000000, &v) &&
               (cfg->msg_burst = (unsigned)v, true);
    case OPT_MAX_ERRORS:
        return parse_num("--max-errors", arg, 1, 1000000, &v) &&
               (cfg->max_errors = (unsigned)v, true);
    case OPT_MAX_QUEUED:
        return parse_num("--max-queued", arg, 1, 1LL << 40, &v) && (cfg->max_queued = v, true);
    case OPT_MAX_FAILURES:
        return parse_num("--max-failures", arg, 1, 1000, &v) && (cfg->max_failures = (int)v, true);
    case OPT_STORE_RESERVE:
        return parse_num("--store-reserve", arg, 0, 1LL << 30, &v) &&
               (cfg->store_reserve = (size_t)v, true);
    default:
        return set_auth_number(cfg, opt, arg);
    }
}

static enum config_result set_option(struct config *cfg, int opt, const char *arg)
{
    switch (opt) {
    case OPT_CREDENTIALS:
        cfg->credentials = arg;
        break;
    case OPT_DATA_DIR:
        cfg->data_dir = arg;
        break;
    case OPT_BIND:
        cfg->bind_addr = arg;
        break;
    case OPT_PORT_FILE:
        cfg->port_file = arg;
        break;
    case OPT_HASH_CREDENTIALS:
        cfg->hash_credentials = arg;
        break;
    case OPT_REGISTER:
        cfg->allow_register = true;
        break;
    case OPT_CONSENT:
        cfg->p2p_consent = true;
        break;
    case OPT_FSYNC:
        cfg->fsync = true;
        break;
    case OPT_ACCEPT_STORE_LOSS:
        cfg->accept_store_loss = true;
        break;
    case OPT_VERBOSE:
        cfg->verbose = true;
        break;
    case OPT_HELP:
        fputs(usage_text, stdout);
        return CONFIG_EXIT;
    case OPT_VERSION:
        printf("parleyd %s (protocol %d)\n", PARLEY_VERSION, PROTO_VERSION);
        return CONFIG_EXIT;
    default:
        if (!set_number(cfg, opt, arg))
            return CONFIG_ERROR;
    }
    return CONFIG_RUN;
}

static enum config_result take_positionals(struct config *cfg, int argc, char **argv)
{
    static const int order[] = {OPT_PORT, OPT_BLOCK, OPT_TIMEOUT};
    int n = argc - optind;
    if (n > 3) {
        fprintf(stderr, "parleyd: too many arguments\n%s", usage_text);
        return CONFIG_ERROR;
    }
    for (int i = 0; i < n; i++)
        if (!set_number(cfg, order[i], argv[optind + i]))
            return CONFIG_ERROR;
    return CONFIG_RUN;
}

/* Sets the hash cost caps left unset: libsodium's "moderate" cost, or the server's own hash
 * cost when that is higher (it must read back what it writes). A cap set below the server's
 * own cost is a usage error. */
static enum config_result resolve_hash_caps(struct config *cfg)
{
    if (!cfg->max_hash_ops)
        cfg->max_hash_ops = cfg->hash_ops > crypto_pwhash_OPSLIMIT_MODERATE
                                ? cfg->hash_ops
                                : crypto_pwhash_OPSLIMIT_MODERATE;
    if (!cfg->max_hash_mem)
        cfg->max_hash_mem = cfg->hash_mem > crypto_pwhash_MEMLIMIT_MODERATE
                                ? cfg->hash_mem
                                : crypto_pwhash_MEMLIMIT_MODERATE;
    if (cfg->max_hash_ops < cfg->hash_ops || cfg->max_hash_mem < cfg->hash_mem) {
        fprintf(stderr, "parleyd: --max-hash-ops and --max-hash-mem must be at least "
                        "--hash-ops and --hash-mem\n");
        return CONFIG_ERROR;
    }
    return CONFIG_RUN;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    set_defaults(cfg);
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (opt == '?') {
            fputs(usage_text, stderr);
            return CONFIG_ERROR;
        }
        enum config_result r = set_option(cfg, opt, optarg);
        if (r != CONFIG_RUN)
            return r;
    }
    if (take_positionals(cfg, argc, argv) != CONFIG_RUN || resolve_hash_caps(cfg) != CONFIG_RUN)
        return CONFIG_ERROR;
    if (cfg->hash_credentials)
        return CONFIG_RUN;
    if (cfg->port < 0 || cfg->block_duration < 0 || cfg->timeout < 0) {
        fprintf(stderr, "parleyd: need <port> <block_duration> <timeout>\n%s", usage_text);
        return CONFIG_ERROR;
    }
    if (cfg->max_line < cfg->max_message + 64)
        cfg->max_line = cfg->max_message + 64;
    return CONFIG_RUN;
}
