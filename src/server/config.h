/* Server settings: the classic positional arguments, long options and every limit. */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct store_ops;

/* Everything parleyd can be told at start-up. */
struct config {
    int port;
    long block_duration; /* seconds an account stays locked */
    long timeout;        /* idle seconds before logout */
    const char *credentials;
    const char *data_dir;
    const struct store_ops *store; /* --store NAME: the backend of the store (store.h) */
    const char *bind_addr;
    const char *port_file;
    const char *hash_credentials; /* --hash-credentials FILE: rewrite it and exit */
    bool tls;                     /* the main port speaks TLS only */
    const char *tls_cert;         /* NULL: the generated one in data_dir (tlscert.h) */
    const char *tls_key;
    int tls_port;         /* a TLS port beside the plain one; -1: none */
    bool tls_fingerprint; /* --tls-fingerprint: print it and exit */
    bool check;           /* --check: validate the settings (check.h) and exit */
    const char *metrics;  /* --metrics ADDR:PORT: serve /metrics and /healthz; NULL: off */
    bool allow_register;
    bool p2p_consent;
    bool fsync;             /* every store write reaches the disk before it counts */
    bool accept_store_loss; /* start although a store file was lost (logged) */
    bool verbose;
    unsigned long long hash_ops;
    size_t hash_mem;
    int hash_threads; /* default: one fewer than the cores, at least 1 (config_defaults) */
    unsigned long long max_hash_ops; /* cost caps for hashes read from the credentials file */
    size_t max_hash_mem;
    unsigned max_hash_jobs;   /* password hashes queued or running, server-wide */
    unsigned register_rate;   /* registrations a minute per address; 0: no limit */
    unsigned max_reload_loss; /* percent of the accounts a SIGHUP reload may remove */
    size_t max_line;
    size_t max_message;
    size_t max_output;
    size_t send_batch; /* client sends in one system call (io_uring); 0: one send() each */
    size_t max_connections;
    size_t max_per_address; /* connections at once from one source address (0: no limit) */
    size_t fanout_slice;    /* sessions given presence notices per loop iteration (fanout.h) */
    size_t fanout_backlog;  /* notices waiting beyond which password checks wait (fanout.h) */
    long login_timeout;
    long hello_timeout;     /* seconds a new connection has to send HELLO */
    long handshake_timeout; /* seconds a TLS handshake may take */
    unsigned msg_rate;
    unsigned msg_burst;
    unsigned req_rate; /* requests other than messages, per second and user (0: no limit) */
    unsigned req_burst;
    unsigned max_errors;
    long long max_queued;
    size_t store_reserve; /* bytes of disk held back for lock-outs on a full disk */
    int max_failures;
    /* The cluster (docs/CLUSTER.md): several nodes on one Redis. */
    const char *redis;          /* --redis HOST:PORT or unix:PATH; NULL: one node, local store */
    const char *node_id;        /* --node-id ID; NULL: resolved at start (nodeid.h) */
    const char *redis_password; /* --redis-password, else $PARLEYD_REDIS_PASSWORD; never shown */
    long redis_timeout_ms;      /* a command unanswered this long: the connection is lost */
    size_t redis_max_inflight;  /* Redis commands in flight per node; past it: error 503 */
    long lease_secs;            /* how long a node's claim on its users outlives its heartbeat */
    size_t redis_stream_max;    /* events kept in the cluster's stream for cut-off nodes */
};

/* What config_parse decided. */
enum config_result {
    CONFIG_RUN,   /* start the server */
    CONFIG_EXIT,  /* --help or --version was printed: exit 0 */
    CONFIG_ERROR, /* a usage error was printed: exit 2 */
};

/* Fills `cfg` with the defaults, then the command line. Prints usage errors to stderr. */
enum config_result config_parse(struct config *cfg, int argc, char **argv);

#endif
