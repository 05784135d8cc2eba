/* Command-line parsing for parleyd; see config.h and man/parleyd.8. */
#include "server/config.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/proto.h"
#include "server/nodeid.h"
#include "server/store.h"

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
    "  --store NAME           store backend (default local: the data directory; redis with\n"
    "                         --redis)\n"
    "  --bind ADDR            listen address (default 0.0.0.0)\n"
    "  --port-file FILE       write the bound port to FILE once listening\n"
    "  --allow-register       unknown user names become new accounts\n"
    "  --p2p-consent          ask users before a private session starts\n"
    "  --fsync                flush every store write to the disk before it counts (survives\n"
    "                         a power loss; default: a crash of the process)\n"
    "  --accept-store-loss    start although parley.db or parley.queue was lost (once)\n"
    "  --hash-credentials FILE  rewrite FILE's plain passwords as argon2id hashes and exit\n"
    "  --hash-ops N --hash-mem BYTES  argon2id cost (default: libsodium interactive)\n"
    "  --hash-threads N       password-hashing threads (default: cores - 1, at least 1)\n"
    "  --max-hash-ops N --max-hash-mem BYTES  refuse credentials lines whose hash costs more\n"
    "                         (default: libsodium moderate, 3 / 268435456, or the hash cost)\n"
    "TLS (TLS 1.2 and 1.3):\n"
    "  --tls                  the port speaks TLS only; without --tls-cert, a key and a\n"
    "                         self-signed certificate are made in the data directory\n"
    "  --tls-cert FILE --tls-key FILE  the certificate (chain) and its key (PEM); alone they\n"
    "                         imply --tls\n"
    "  --tls-port N           serve TLS on port N beside the plain port\n"
    "  --tls-fingerprint      print the SHA-256 fingerprint of the TLS key and exit\n"
    "  --metrics ADDR:PORT    serve Prometheus metrics at /metrics and a health check at\n"
    "                         /healthz on ADDR:PORT (e.g. 127.0.0.1:9464; default off)\n"
    "  --check                check the credentials file, the data directory and the options,\n"
    "                         print what is wrong and exit (0: parleyd would start)\n"
    "cluster (several nodes as one server; docs/CLUSTER.md):\n"
    "  --redis ADDR           share everything through Redis at HOST:PORT or unix:PATH\n"
    "  --node-id ID           this node's name, 1-64 of [A-Za-z0-9._-] (default: made once,\n"
    "                         kept in the data directory's node-id file)\n"
    "  --redis-password PASS  Redis's password; prefer $PARLEYD_REDIS_PASSWORD (a command\n"
    "                         line is visible to every user in ps)\n"
    "  --redis-timeout MS     a Redis command unanswered this long: connection lost\n"
    "                         (default 2000)\n"
    "  --redis-max-inflight N Redis commands in flight; past it, error 503 (default 10000)\n"
    "  --lease SECS           a node's users stay its own this long after its last\n"
    "                         heartbeat (2 to 15, default 10)\n"
    "  --redis-stream-max N   stream entries kept for nodes that were cut off, each one batch\n"
    "                         of up to 64 events (default 10000)\n"
    "limits:\n"
    "  --max-line BYTES       frame length, newline included (default 4096)\n"
    "  --max-message BYTES    message text length (default 1000)\n"
    "  --max-output BYTES     output queued per client before it is cut off (default 1048576)\n"
    "  --max-connections N    connections at once (default 100000)\n"
    "  --max-per-address N    of those, from one IPv4 address or IPv6 /64, 0 = unlimited\n"
    "                         (default 256)\n"
    "  --send-batch N         client sends of one flush made in one system call (io_uring,\n"
    "                         where the kernel has it); 0 = one send() each (default 256)\n"
    "  --fanout-slice N       sessions told of logins and logouts per loop iteration\n"
    "                         (default 64)\n"
    "  --fanout-backlog N     presence notices waiting beyond which password checks wait,\n"
    "                         and a cluster node pauses its event stream at 4x (default 1024)\n"
    "  --login-timeout S      time allowed to finish logging in (default 120)\n"
    "  --hello-timeout S      time allowed to send HELLO after connecting (default 10)\n"
    "  --handshake-timeout S  time allowed for a TLS handshake (default 10)\n"
    "  --msg-rate N           messages per second per user, 0 = unlimited (default 50)\n"
    "  --msg-burst N          messages a user may send at once (default 200)\n"
    "  --req-rate N           other requests per second per user, 0 = unlimited (default 50;\n"
    "                         a reply listing names costs one more per 100 names)\n"
    "  --req-burst N          other requests a user may send at once (default 200)\n"
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
    OPT_STORE,
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
    OPT_SEND_BATCH,
    OPT_MAX_PER_ADDRESS,
    OPT_FANOUT_SLICE,
    OPT_FANOUT_BACKLOG,
    OPT_LOGIN_TIMEOUT,
    OPT_HELLO_TIMEOUT,
    OPT_HANDSHAKE_TIMEOUT,
    OPT_MSG_RATE,
    OPT_MSG_BURST,
    OPT_REQ_RATE,
    OPT_REQ_BURST,
    OPT_MAX_ERRORS,
    OPT_MAX_QUEUED,
    OPT_MAX_FAILURES,
    OPT_MAX_HASH_JOBS,
    OPT_REGISTER_RATE,
    OPT_MAX_RELOAD_LOSS,
    OPT_STORE_RESERVE,
    OPT_TLS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_PORT,
    OPT_TLS_FINGERPRINT,
    OPT_CHECK,
    OPT_METRICS,
    OPT_REDIS,
    OPT_NODE_ID,
    OPT_REDIS_PASSWORD,
    OPT_REDIS_TIMEOUT,
    OPT_REDIS_MAX_INFLIGHT,
    OPT_LEASE,
    OPT_REDIS_STREAM_MAX,
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
    {"store", required_argument, NULL, OPT_STORE},
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
    {"send-batch", required_argument, NULL, OPT_SEND_BATCH},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-per-address", required_argument, NULL, OPT_MAX_PER_ADDRESS},
    {"fanout-slice", required_argument, NULL, OPT_FANOUT_SLICE},
    {"fanout-backlog", required_argument, NULL, OPT_FANOUT_BACKLOG},
    {"login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT},
    {"hello-timeout", required_argument, NULL, OPT_HELLO_TIMEOUT},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
    {"msg-rate", required_argument, NULL, OPT_MSG_RATE},
    {"msg-burst", required_argument, NULL, OPT_MSG_BURST},
    {"req-rate", required_argument, NULL, OPT_REQ_RATE},
    {"req-burst", required_argument, NULL, OPT_REQ_BURST},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
    {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
    {"max-hash-jobs", required_argument, NULL, OPT_MAX_HASH_JOBS},
    {"register-rate", required_argument, NULL, OPT_REGISTER_RATE},
    {"max-reload-loss", required_argument, NULL, OPT_MAX_RELOAD_LOSS},
    {"store-reserve", required_argument, NULL, OPT_STORE_RESERVE},
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-port", required_argument, NULL, OPT_TLS_PORT},
    {"tls-fingerprint", no_argument, NULL, OPT_TLS_FINGERPRINT},
    {"check", no_argument, NULL, OPT_CHECK},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"node-id", required_argument, NULL, OPT_NODE_ID},
    {"redis-password", required_argument, NULL, OPT_REDIS_PASSWORD},
    {"redis-timeout", required_argument, NULL, OPT_REDIS_TIMEOUT},
    {"redis-max-inflight", required_argument, NULL, OPT_REDIS_MAX_INFLIGHT},
    {"lease", required_argument, NULL, OPT_LEASE},
    {"redis-stream-max", required_argument, NULL, OPT_REDIS_STREAM_MAX},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Password hashes run at idle priority, but each still holds a core and its cache while it
 * runs: one fewer thread than the cores keeps a core for the event loop (issue 14: a login
 * storm on 2 cores raised the other users' DM p99 2.9-13.6x with 2 threads, 1.3-2.8x with 1). */
static int default_hash_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 2)
        return 1;
    return cores > 65 ? 64 : (int)cores - 1;
}

static void set_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = -1;
    cfg->tls_port = -1;
    cfg->block_duration = -1;
    cfg->timeout = -1;
    cfg->credentials = "credentials.txt";
    cfg->data_dir = "parley-data";
    cfg->store = &store_local_ops;
    cfg->hash_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    cfg->hash_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    cfg->hash_threads = default_hash_threads();
    cfg->max_line = PROTO_DEFAULT_MAX_LINE;
    cfg->max_message = PROTO_DEFAULT_MAX_MESSAGE;
    cfg->max_output = 1 << 20;
    cfg->send_batch = 256;
    cfg->max_connections = 100000;
    cfg->max_per_address = 256;
    cfg->fanout_slice = 64;
    cfg->fanout_backlog = 1024;
    cfg->login_timeout = 120;
    cfg->hello_timeout = 10;
    cfg->handshake_timeout = 10;
    cfg->msg_rate = 50;
    cfg->msg_burst = 200;
    cfg->req_rate = 50;
    cfg->req_burst = 200;
    cfg->max_errors = 100;
    cfg->max_queued = 10000;
    cfg->max_failures = 3;
    cfg->max_hash_jobs = 256;
    cfg->register_rate = 10;
    cfg->max_reload_loss = 50;
    cfg->store_reserve = 1 << 20;
    cfg->redis_timeout_ms = 2000;
    cfg->redis_max_inflight = 10000;
    cfg->lease_secs = 10;
    cfg->redis_stream_max = 10000;
}

/* How a numeric option is stored in struct config. */
enum num_type {
    NUM_INT,
    NUM_LONG,
    NUM_UNSIGNED,
    NUM_SIZE,
    NUM_ULL,
    NUM_LL,
};

/* A numeric option: its accepted range and the field it fills. */
struct num_option {
    int opt;
    const char *name;
    long long min, max;
    enum num_type type;
    size_t offset;
};

#define NUM(opt, name, min, max, type, field)                                                      \
    {                                                                                              \
        opt, name, min, max, type, offsetof(struct config, field)                                  \
    }

static const struct num_option num_options[] = {
    NUM(OPT_PORT, "port", 0, 65535, NUM_INT, port),
    NUM(OPT_BLOCK, "block_duration", 0, 100000000, NUM_LONG, block_duration),
    NUM(OPT_TIMEOUT, "timeout", 1, 100000000, NUM_LONG, timeout),
    NUM(OPT_TLS_PORT, "--tls-port", 0, 65535, NUM_INT, tls_port),
    NUM(OPT_HASH_OPS, "--hash-ops", 1, 1000, NUM_ULL, hash_ops),
    NUM(OPT_HASH_MEM, "--hash-mem", 8192, 1LL << 32, NUM_SIZE, hash_mem),
    NUM(OPT_HASH_THREADS, "--hash-threads", 1, 64, NUM_INT, hash_threads),
    NUM(OPT_MAX_LINE, "--max-line", 256, 1 << 20, NUM_SIZE, max_line),
    NUM(OPT_MAX_MESSAGE, "--max-message", 1, 1 << 20, NUM_SIZE, max_message),
    NUM(OPT_MAX_OUTPUT, "--max-output", 4096, 1LL << 34, NUM_SIZE, max_output),
    NUM(OPT_SEND_BATCH, "--send-batch", 0, 1024, NUM_SIZE, send_batch),
    NUM(OPT_MAX_CONNECTIONS, "--max-connections", 1, 10000000, NUM_SIZE, max_connections),
    NUM(OPT_MAX_PER_ADDRESS, "--max-per-address", 0, 10000000, NUM_SIZE, max_per_address),
    NUM(OPT_FANOUT_SLICE, "--fanout-slice", 1, 10000000, NUM_SIZE, fanout_slice),
    NUM(OPT_FANOUT_BACKLOG, "--fanout-backlog", 1, 1000000, NUM_SIZE, fanout_backlog),
    NUM(OPT_LOGIN_TIMEOUT, "--login-timeout", 1, 100000000, NUM_LONG, login_timeout),
    NUM(OPT_HELLO_TIMEOUT, "--hello-timeout", 1, 100000000, NUM_LONG, hello_timeout),
    NUM(OPT_HANDSHAKE_TIMEOUT, "--handshake-timeout", 1, 100000000, NUM_LONG, handshake_timeout),
    NUM(OPT_MSG_RATE, "--msg-rate", 0, 10000000, NUM_UNSIGNED, msg_rate),
    NUM(OPT_MSG_BURST, "--msg-burst", 1, 10000000, NUM_UNSIGNED, msg_burst),
    NUM(OPT_REQ_RATE, "--req-rate", 0, 10000000, NUM_UNSIGNED, req_rate),
    NUM(OPT_REQ_BURST, "--req-burst", 1, 10000000, NUM_UNSIGNED, req_burst),
    NUM(OPT_MAX_ERRORS, "--max-errors", 1, 1000000, NUM_UNSIGNED, max_errors),
    NUM(OPT_MAX_QUEUED, "--max-queued", 1, 1LL << 40, NUM_LL, max_queued),
    NUM(OPT_MAX_FAILURES, "--max-failures", 1, 1000, NUM_INT, max_failures),
    NUM(OPT_MAX_HASH_OPS, "--max-hash-ops", 1, 1000, NUM_ULL, max_hash_ops),
    NUM(OPT_MAX_HASH_MEM, "--max-hash-mem", 8192, 1LL << 32, NUM_SIZE, max_hash_mem),
    NUM(OPT_MAX_HASH_JOBS, "--max-hash-jobs", 1, 1000000, NUM_UNSIGNED, max_hash_jobs),
    NUM(OPT_REGISTER_RATE, "--register-rate", 0, 1000000, NUM_UNSIGNED, register_rate),
    NUM(OPT_MAX_RELOAD_LOSS, "--max-reload-loss", 0, 100, NUM_UNSIGNED, max_reload_loss),
    NUM(OPT_STORE_RESERVE, "--store-reserve", 0, 1LL << 30, NUM_SIZE, store_reserve),
    NUM(OPT_REDIS_TIMEOUT, "--redis-timeout", 100, 600000, NUM_LONG, redis_timeout_ms),
    NUM(OPT_REDIS_MAX_INFLIGHT, "--redis-max-inflight", 16, 1000000, NUM_SIZE, redis_max_inflight),
    NUM(OPT_LEASE, "--lease", 2, 15, NUM_LONG, lease_secs),
    NUM(OPT_REDIS_STREAM_MAX, "--redis-stream-max", 1000, 100000000, NUM_SIZE, redis_stream_max),
};

/* The largest value a field of this type holds. */
static long long type_max(enum num_type type)
{
    switch (type) {
    case NUM_INT:
        return INT_MAX;
    case NUM_LONG:
        return LONG_MAX;
    case NUM_UNSIGNED:
        return (long long)UINT_MAX;
    case NUM_SIZE:
        return SIZE_MAX > (unsigned long long)LLONG_MAX ? LLONG_MAX : (long long)SIZE_MAX;
    case NUM_ULL:
    case NUM_LL:
        return LLONG_MAX;
    }
    return 0;
}

/* The accepted maximum: the option's own, never more than its field holds. */
static long long option_max(const struct num_option *o)
{
    long long cap = type_max(o->type);
    return o->max < cap ? o->max : cap;
}

/* Stores `v` (within the option's range) in its field. */
static void store_number(struct config *cfg, const struct num_option *o, long long v)
{
    char *field = (char *)cfg + o->offset;
    assert(v >= o->min && v <= option_max(o));
    switch (o->type) {
    case NUM_INT:
        *(int *)field = (int)v;
        break;
    case NUM_LONG:
        *(long *)field = (long)v;
        break;
    case NUM_UNSIGNED:
        *(unsigned *)field = (unsigned)v;
        break;
    case NUM_SIZE:
        *(size_t *)field = (size_t)v;
        break;
    case NUM_ULL:
        *(unsigned long long *)field = (unsigned long long)v;
        break;
    case NUM_LL:
        *(long long *)field = v;
        break;
    }
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

static bool set_number(struct config *cfg, int opt, const char *arg)
{
    for (size_t i = 0; i < sizeof(num_options) / sizeof(num_options[0]); i++) {
        const struct num_option *o = &num_options[i];
        long long v;
        if (o->opt != opt)
            continue;
        if (!parse_num(o->name, arg, o->min, option_max(o), &v))
            return false;
        store_number(cfg, o, v);
        return true;
    }
    return false;
}

/* --store NAME: a backend store.h knows, else a usage error naming those it knows. */
static enum config_result set_store(struct config *cfg, const char *name)
{
    cfg->store = store_backend(name);
    if (cfg->store)
        return CONFIG_RUN;
    char names[256];
    store_backend_names(names, sizeof names);
    fprintf(stderr, "parleyd: unknown store '%s' (known: %s)\n%s", name, names, usage_text);
    return CONFIG_ERROR;
}

/* Whether `s` is a whole decimal port, 1 to 65535. */
static bool valid_port(const char *s)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    return *s >= '0' && *s <= '9' && !errno && *end == '\0' && v >= 1 && v <= 65535;
}

/* --redis ADDR: HOST:PORT (host non-empty, port 1 to 65535) or unix:PATH (a path that fits a
 * socket address); anything else is a usage error saying which shapes are accepted. */
static enum config_result set_redis(struct config *cfg, const char *addr)
{
    static const char unix_prefix[] = "unix:";
    const char *why = NULL;
    if (strncmp(addr, unix_prefix, sizeof unix_prefix - 1) == 0) {
        size_t n = strlen(addr + sizeof unix_prefix - 1);
        if (n == 0 || n >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
            why = "the socket path must be 1 to 107 bytes";
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon || colon == addr)
            why = "expected HOST:PORT or unix:PATH";
        else if (!valid_port(colon + 1))
            why = "the port must be a number from 1 to 65535";
    }
    if (why) {
        fprintf(stderr, "parleyd: --redis '%s': %s\n%s", addr, why, usage_text);
        return CONFIG_ERROR;
    }
    cfg->redis = addr;
    return CONFIG_RUN;
}

/* --node-id ID: checked against the node id rules (nodeid.h). */
static enum config_result set_node_id(struct config *cfg, const char *id)
{
    if (!nodeid_valid(id)) {
        fprintf(stderr, "parleyd: --node-id '%s': 1 to %d characters of A-Z a-z 0-9 . _ -\n%s", id,
                NODEID_MAX, usage_text);
        return CONFIG_ERROR;
    }
    cfg->node_id = id;
    return CONFIG_RUN;
}

/* --redis-password PASS: any non-empty text (it is never printed, not even here). */
static enum config_result set_redis_password(struct config *cfg, const char *pass)
{
    if (!*pass) {
        fprintf(stderr, "parleyd: --redis-password must not be empty\n%s", usage_text);
        return CONFIG_ERROR;
    }
    cfg->redis_password = pass;
    return CONFIG_RUN;
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
    case OPT_STORE:
        return set_store(cfg, arg);
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
    case OPT_TLS:
        cfg->tls = true;
        break;
    case OPT_TLS_CERT:
        cfg->tls_cert = arg;
        break;
    case OPT_TLS_KEY:
        cfg->tls_key = arg;
        break;
    case OPT_TLS_FINGERPRINT:
        cfg->tls_fingerprint = true;
        break;
    case OPT_CHECK:
        cfg->check = true;
        break;
    case OPT_METRICS:
        cfg->metrics = arg;
        break;
    case OPT_REDIS:
        return set_redis(cfg, arg);
    case OPT_NODE_ID:
        return set_node_id(cfg, arg);
    case OPT_REDIS_PASSWORD:
        return set_redis_password(cfg, arg);
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

/* Decides which port speaks TLS: the main one with --tls, or with a certificate and no
 * --tls-port. A certificate needs its key and the other way round. */
static enum config_result resolve_tls(struct config *cfg)
{
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(stderr, "parleyd: --tls-cert and --tls-key go together\n");
        return CONFIG_ERROR;
    }
    if (cfg->tls && cfg->tls_port >= 0) {
        fprintf(stderr, "parleyd: --tls makes the port TLS only; --tls-port adds a TLS port "
                        "beside a plain one: give one of them\n");
        return CONFIG_ERROR;
    }
    if (cfg->tls_cert && cfg->tls_port < 0)
        cfg->tls = true;
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

/* Options given on the command line whose defaults do not show it (resolve_store). */
struct given {
    bool store;
    bool store_reserve;
};

/* The name of a local-store option given with --redis, or NULL when there is none. */
static const char *local_only_option(const struct config *cfg, const struct given *given)
{
    if (cfg->fsync)
        return "--fsync";
    if (cfg->accept_store_loss)
        return "--accept-store-loss";
    if (given->store_reserve)
        return "--store-reserve";
    return NULL;
}

/* The Redis password from the environment when the command line has none (a command line is
 * visible to every user in ps; the environment is not). Empty counts as unset. */
static void resolve_redis_password(struct config *cfg)
{
    const char *env = getenv("PARLEYD_REDIS_PASSWORD");
    if (!cfg->redis_password && env && *env)
        cfg->redis_password = env;
}

/* One system, one store: with --redis the store is "redis" (and the options about the local
 * files are usage errors); without it, "redis" cannot be named. */
static enum config_result resolve_store(struct config *cfg, const struct given *given)
{
    const struct store_ops *redis = store_backend("redis");
    if (!cfg->redis) {
        if (given->store && cfg->store == redis) {
            fprintf(stderr, "parleyd: --store redis needs --redis ADDR\n");
            return CONFIG_ERROR;
        }
        return CONFIG_RUN;
    }
    if (given->store && cfg->store != redis) {
        fprintf(stderr, "parleyd: --redis needs the redis store, not --store %s\n",
                cfg->store->name);
        return CONFIG_ERROR;
    }
    const char *local = local_only_option(cfg, given);
    if (local) {
        fprintf(stderr, "parleyd: %s is only for the local store, not with --redis\n", local);
        return CONFIG_ERROR;
    }
    if (!redis) {
        fprintf(stderr, "parleyd: --redis: this parleyd has no redis store\n");
        return CONFIG_ERROR;
    }
    cfg->store = redis;
    return CONFIG_RUN;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    set_defaults(cfg);
    struct given given = {false, false};
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
        given.store |= opt == OPT_STORE;
        given.store_reserve |= opt == OPT_STORE_RESERVE;
    }
    if (take_positionals(cfg, argc, argv) != CONFIG_RUN || resolve_hash_caps(cfg) != CONFIG_RUN ||
        resolve_tls(cfg) != CONFIG_RUN || resolve_store(cfg, &given) != CONFIG_RUN)
        return CONFIG_ERROR;
    resolve_redis_password(cfg);
    if (cfg->hash_credentials || cfg->tls_fingerprint)
        return CONFIG_RUN;
    if (cfg->port < 0 || cfg->block_duration < 0 || cfg->timeout < 0) {
        fprintf(stderr, "parleyd: need <port> <block_duration> <timeout>\n%s", usage_text);
        return CONFIG_ERROR;
    }
    if (cfg->max_line < cfg->max_message + 64)
        cfg->max_line = cfg->max_message + 64;
    return CONFIG_RUN;
}
