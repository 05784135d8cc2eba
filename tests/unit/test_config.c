/* Unit tests of src/server/config.c: every numeric option accepts exactly its documented range,
 * the value read back from its field is the value given (the range fits the field's type: a
 * 16-bit counter behind a 32-bit option is what let --max-errors above 65535 never trip), and
 * anything else is a usage error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "server/store.h"

/* One numeric option, its range and where its value lands. */
struct case_ {
    const char *option;
    long long min, max;
    long long (*get)(const struct config *);
};

#define GETTER(field)                                                                              \
    static long long get_##field(const struct config *c)                                           \
    {                                                                                              \
        return (long long)c->field;                                                                \
    }
GETTER(port)
GETTER(block_duration)
GETTER(timeout)
GETTER(hash_ops)
GETTER(hash_mem)
GETTER(hash_threads)
GETTER(max_line)
GETTER(max_message)
GETTER(max_output)
GETTER(send_batch)
GETTER(max_connections)
GETTER(max_per_address)
GETTER(login_timeout)
GETTER(hello_timeout)
GETTER(handshake_timeout)
GETTER(tls_port)
GETTER(msg_rate)
GETTER(msg_burst)
GETTER(req_rate)
GETTER(req_burst)
GETTER(max_errors)
GETTER(max_queued)
GETTER(max_failures)
GETTER(redis_timeout_ms)
GETTER(redis_max_inflight)
GETTER(lease_secs)
GETTER(redis_stream_max)

static const struct case_ cases[] = {
    {"--port", 0, 65535, get_port},
    {"--block-duration", 0, 100000000, get_block_duration},
    {"--timeout", 1, 100000000, get_timeout},
    {"--hash-ops", 1, 1000, get_hash_ops},
    {"--hash-mem", 8192, 1LL << 32, get_hash_mem},
    {"--hash-threads", 1, 64, get_hash_threads},
    {"--max-line", 256, 1 << 20, get_max_line},
    {"--max-message", 1, 1 << 20, get_max_message},
    {"--max-output", 4096, 1LL << 34, get_max_output},
    {"--send-batch", 0, 1024, get_send_batch},
    {"--max-connections", 1, 10000000, get_max_connections},
    {"--max-per-address", 0, 10000000, get_max_per_address},
    {"--login-timeout", 1, 100000000, get_login_timeout},
    {"--hello-timeout", 1, 100000000, get_hello_timeout},
    {"--handshake-timeout", 1, 100000000, get_handshake_timeout},
    {"--tls-port", 0, 65535, get_tls_port},
    {"--msg-rate", 0, 10000000, get_msg_rate},
    {"--msg-burst", 1, 10000000, get_msg_burst},
    {"--req-rate", 0, 10000000, get_req_rate},
    {"--req-burst", 1, 10000000, get_req_burst},
    {"--max-errors", 1, 1000000, get_max_errors},
    {"--max-queued", 1, 1LL << 40, get_max_queued},
    {"--max-failures", 1, 1000, get_max_failures},
    {"--redis-timeout", 100, 600000, get_redis_timeout_ms},
    {"--redis-max-inflight", 16, 1000000, get_redis_max_inflight},
    {"--lease", 2, 15, get_lease_secs},
    {"--redis-stream-max", 1000, 100000000, get_redis_stream_max},
};

/* Parses the required settings as options, then `<option> <value>`, which overrides them (with
 * --max-message 1, so that --max-line is not raised to fit the default message length). */
static enum config_result parse_with(struct config *cfg, const char *option, const char *value)
{
    char *args[] = {"parleyd", "--port",        "0", "--block-duration", "60",          "--timeout",
                    "10",      "--max-message", "1", (char *)option,     (char *)value, NULL};
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w"); /* usage errors are expected here */
    enum config_result r = config_parse(cfg, 11, args);
    fclose(stderr);
    stderr = saved;
    return r;
}

static void test_every_option_takes_exactly_its_range(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct case_ *c = &cases[i];
        const long long good[] = {c->min, c->max, c->min + (c->max - c->min) / 3};
        const long long bad[] = {c->min - 1, c->max + 1};
        char v[32];
        struct config cfg;
        for (size_t k = 0; k < 3; k++) {
            snprintf(v, sizeof(v), "%lld", good[k]);
            assert_int_equal(parse_with(&cfg, c->option, v), CONFIG_RUN);
            assert_true(c->get(&cfg) == good[k]);
        }
        for (size_t k = 0; k < 2; k++) {
            snprintf(v, sizeof(v), "%lld", bad[k]);
            assert_int_equal(parse_with(&cfg, c->option, v), CONFIG_ERROR);
        }
        const char *junk[] = {"", "x", "1x", "1.5", "99999999999999999999999"};
        for (size_t k = 0; k < sizeof(junk) / sizeof(junk[0]); k++)
            assert_int_equal(parse_with(&cfg, c->option, junk[k]), CONFIG_ERROR);
    }
}

static void test_positionals_keep_their_ranges(void **state)
{
    (void)state;
    struct config cfg;
    char *ok[] = {"parleyd", "65535", "100000000", "100000000", NULL};
    assert_int_equal(config_parse(&cfg, 4, ok), CONFIG_RUN);
    assert_int_equal(cfg.port, 65535);
    assert_true(cfg.block_duration == 100000000 && cfg.timeout == 100000000);
    char *port[] = {"parleyd", "65536", "1", "1", NULL};
    char *timeout[] = {"parleyd", "1", "1", "0", NULL};
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    assert_int_equal(config_parse(&cfg, 4, port), CONFIG_ERROR);
    assert_int_equal(config_parse(&cfg, 4, timeout), CONFIG_ERROR);
    fclose(stderr);
    stderr = saved;
}

/* Which port speaks TLS, and the combinations that are usage errors. */
static void test_tls_options(void **state)
{
    (void)state;
    struct config cfg;
    char *plain[] = {"parleyd", "1", "1", "1", NULL};
    char *tls[] = {"parleyd", "--tls", "1", "1", "1", NULL};
    char *cert[] = {"parleyd", "--tls-cert", "c", "--tls-key", "k", "1", "1", "1", NULL};
    char *beside[] = {"parleyd", "--tls-cert", "c", "--tls-key", "k", "--tls-port",
                      "2",       "1",          "1", "1",         NULL};
    char *fingerprint[] = {"parleyd", "--tls-fingerprint", NULL};
    char *lone_cert[] = {"parleyd", "--tls-cert", "c", "1", "1", "1", NULL};
    char *lone_key[] = {"parleyd", "--tls-key", "k", "1", "1", "1", NULL};
    char *both[] = {"parleyd", "--tls", "--tls-port", "2", "1", "1", "1", NULL};
    assert_int_equal(config_parse(&cfg, 4, plain), CONFIG_RUN);
    assert_false(cfg.tls);
    assert_int_equal(cfg.tls_port, -1);
    assert_int_equal(config_parse(&cfg, 5, tls), CONFIG_RUN);
    assert_true(cfg.tls && !cfg.tls_cert);
    assert_int_equal(config_parse(&cfg, 8, cert), CONFIG_RUN);
    assert_true(cfg.tls);
    assert_string_equal(cfg.tls_key, "k");
    assert_int_equal(config_parse(&cfg, 10, beside), CONFIG_RUN);
    assert_true(!cfg.tls && cfg.tls_port == 2);
    assert_int_equal(config_parse(&cfg, 2, fingerprint), CONFIG_RUN);
    assert_true(cfg.tls_fingerprint);
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    assert_int_equal(config_parse(&cfg, 6, lone_cert), CONFIG_ERROR);
    assert_int_equal(config_parse(&cfg, 6, lone_key), CONFIG_ERROR);
    assert_int_equal(config_parse(&cfg, 7, both), CONFIG_ERROR);
    fclose(stderr);
    stderr = saved;
}

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    char *args[] = {"parleyd", "0", "60", "10", NULL};
    assert_int_equal(config_parse(&cfg, 4, args), CONFIG_RUN);
    assert_int_equal(cfg.max_errors, 100);
    assert_int_equal(cfg.max_per_address, 256);
    assert_int_equal(cfg.hello_timeout, 10);
    assert_int_equal(cfg.handshake_timeout, 10);
    assert_int_equal(cfg.req_rate, 50);
    assert_int_equal(cfg.req_burst, 200);
    assert_null(cfg.redis);
    assert_null(cfg.node_id);
    assert_int_equal(cfg.redis_timeout_ms, 2000);
    assert_int_equal(cfg.redis_max_inflight, 10000);
    assert_int_equal(cfg.lease_secs, 10);
    assert_int_equal(cfg.redis_stream_max, 10000);
}

/* --store picks a backend by name; a name no backend has is a usage error. */
static void test_store_backend_by_name(void **state)
{
    (void)state;
    struct config cfg;
    char *dflt[] = {"parleyd", "0", "60", "10", NULL};
    assert_int_equal(config_parse(&cfg, 4, dflt), CONFIG_RUN);
    assert_ptr_equal(cfg.store, &store_local_ops);
    char *local[] = {"parleyd", "--store", "local", "0", "60", "10", NULL};
    cfg.store = NULL;
    assert_int_equal(config_parse(&cfg, 6, local), CONFIG_RUN);
    assert_ptr_equal(cfg.store, &store_local_ops);
    char *unknown[] = {"parleyd", "--store", "Local", "0", "60", "10", NULL};
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    assert_int_equal(config_parse(&cfg, 6, unknown), CONFIG_ERROR);
    fclose(stderr);
    stderr = saved;
}

/* Parses the NULL-terminated `argv` with stderr caught: its first line goes to `msg` ("" when
 * nothing was printed), so that a test can tell which rule refused the command line. */
static enum config_result parse_caught(struct config *cfg, char **argv, char *msg, size_t len)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *saved = stderr;
    stderr = tmpfile();
    assert_non_null(stderr);
    enum config_result r = config_parse(cfg, argc, argv);
    rewind(stderr);
    if (!fgets(msg, (int)len, stderr))
        msg[0] = '\0';
    msg[strcspn(msg, "\n")] = '\0';
    fclose(stderr);
    stderr = saved;
    return r;
}

/* A usage error whose first line contains `what`. */
#define assert_refused(argv, what)                                                                 \
    do {                                                                                           \
        struct config c_;                                                                          \
        char m_[512];                                                                              \
        assert_int_equal(parse_caught(&c_, (argv), m_, sizeof m_), CONFIG_ERROR);                  \
        if (!strstr(m_, (what)))                                                                   \
            fail_msg("'%s' refused with '%s', expected '%s'", (argv)[1], m_, (what));              \
    } while (0)

/* `--redis addr` as the cluster would be started: with the redis backend it runs with that
 * address and store; without it (before the backend is built) it is refused for that reason,
 * not for the address. */
static void assert_redis_accepted(const char *addr)
{
    char *args[] = {"parleyd", "--redis", (char *)addr, "0", "60", "10", NULL};
    struct config cfg;
    char msg[512];
    enum config_result r = parse_caught(&cfg, args, msg, sizeof msg);
    if (store_backend("redis")) {
        assert_int_equal(r, CONFIG_RUN);
        assert_string_equal(cfg.redis, addr);
        assert_ptr_equal(cfg.store, store_backend("redis"));
    } else {
        assert_int_equal(r, CONFIG_ERROR);
        if (!strstr(msg, "this parleyd has no redis store"))
            fail_msg("--redis '%s' refused with '%s'", addr, msg);
    }
}

/* --redis takes HOST:PORT (host non-empty, port 1..65535) or unix:PATH (non-empty, fits a
 * socket address). */
static void test_redis_address_shape(void **state)
{
    (void)state;
    const char *good[] = {"127.0.0.1:6379", "redis.example:1",      "h:65535",
                          "[::1]:6379",     "unix:/tmp/redis.sock", "unix:r"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_redis_accepted(good[i]);
    char long_path[128] = "unix:/";
    memset(long_path + 6, 'p', 107 - 1);
    long_path[6 + 106] = '\0'; /* a 107-byte path: the most sun_path holds */
    assert_redis_accepted(long_path);
    strcat(long_path, "p");
    const char *bad[] = {"",       ":6379",   "host",    "host:",   "host:0", "host:65536",
                         "host:x", "host:+1", "host: 1", "host:-1", "unix:",  long_path};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *args[] = {"parleyd", "--redis", (char *)bad[i], "0", "60", "10", NULL};
        assert_refused(args, "parleyd: --redis '");
    }
}

/* --node-id: 1 to 64 characters of [A-Za-z0-9._-]. */
static void test_node_id_option(void **state)
{
    (void)state;
    char longest[65], too_long[66];
    memset(longest, 'n', 64);
    longest[64] = '\0';
    memset(too_long, 'n', 65);
    too_long[65] = '\0';
    const char *good[] = {"node1", "a", "Web-01.example_b", longest};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *args[] = {"parleyd", "--node-id", (char *)good[i], "0", "60", "10", NULL};
        struct config cfg;
        char msg[512];
        assert_int_equal(parse_caught(&cfg, args, msg, sizeof msg), CONFIG_RUN);
        assert_string_equal(cfg.node_id, good[i]);
    }
    const char *bad[] = {"",
                         too_long,
                         "a b",
                         "a/b",
                         "a:b",
                         "n\xc3\xb6"
                         "de",
                         "a\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *args[] = {"parleyd", "--node-id", (char *)bad[i], "0", "60", "10", NULL};
        assert_refused(args, "parleyd: --node-id '");
    }
}

/* The Redis password: the option, else $PARLEYD_REDIS_PASSWORD (set and not empty). */
static void test_redis_password(void **state)
{
    (void)state;
    struct config cfg;
    char msg[512];
    char *plain[] = {"parleyd", "0", "60", "10", NULL};
    char *given[] = {"parleyd", "--redis-password", "s3cret", "0", "60", "10", NULL};
    char *empty[] = {"parleyd", "--redis-password", "", "0", "60", "10", NULL};
    unsetenv("PARLEYD_REDIS_PASSWORD");
    assert_int_equal(parse_caught(&cfg, plain, msg, sizeof msg), CONFIG_RUN);
    assert_null(cfg.redis_password);
    assert_int_equal(parse_caught(&cfg, given, msg, sizeof msg), CONFIG_RUN);
    assert_string_equal(cfg.redis_password, "s3cret");
    assert_refused(empty, "--redis-password must not be empty");
    setenv("PARLEYD_REDIS_PASSWORD", "from-env", 1);
    assert_int_equal(parse_caught(&cfg, plain, msg, sizeof msg), CONFIG_RUN);
    assert_string_equal(cfg.redis_password, "from-env");
    assert_int_equal(parse_caught(&cfg, given, msg, sizeof msg), CONFIG_RUN);
    assert_string_equal(cfg.redis_password, "s3cret");
    setenv("PARLEYD_REDIS_PASSWORD", "", 1);
    assert_int_equal(parse_caught(&cfg, plain, msg, sizeof msg), CONFIG_RUN);
    assert_null(cfg.redis_password);
    unsetenv("PARLEYD_REDIS_PASSWORD");
}

/* One system, one store: --redis means the redis store, and the redis store needs --redis. */
static void test_store_follows_redis(void **state)
{
    (void)state;
    char *redis_alone[] = {"parleyd", "--store", "redis", "0", "60", "10", NULL};
    char *local_after[] = {"parleyd", "--redis", "h:1", "--store", "local", "0", "60", "10", NULL};
    char *local_before[] = {"parleyd", "--store", "local", "--redis", "h:1", "0", "60", "10", NULL};
    assert_refused(redis_alone, store_backend("redis") ? "--store redis needs --redis ADDR"
                                                       : "unknown store 'redis'");
    assert_refused(local_after, "--redis needs the redis store, not --store local");
    assert_refused(local_before, "--redis needs the redis store, not --store local");
    assert_redis_accepted("h:1");
}

/* The options about the local store's files are usage errors with --redis, not ignored. */
static void test_local_store_options_refused_with_redis(void **state)
{
    (void)state;
    char *fsync[] = {"parleyd", "--redis", "h:1", "--fsync", "0", "60", "10", NULL};
    char *loss[] = {"parleyd", "--accept-store-loss", "--redis", "h:1", "0", "60", "10", NULL};
    char *reserve[] = {"parleyd", "--redis", "h:1", "--store-reserve", "0", "0", "60", "10", NULL};
    char *dflt[] = {"parleyd", "--redis", "h:1", "--store-reserve", "1048576", "0",
                    "60",      "10",      NULL};
    assert_refused(fsync, "--fsync is only for the local store");
    assert_refused(loss, "--accept-store-loss is only for the local store");
    assert_refused(reserve, "--store-reserve is only for the local store");
    assert_refused(dflt, "--store-reserve is only for the local store");
    char *local[] = {"parleyd", "--fsync", "--accept-store-loss", "--store-reserve", "0", "0", "60",
                     "10",      NULL};
    struct config cfg;
    char msg[512];
    assert_int_equal(parse_caught(&cfg, local, msg, sizeof msg), CONFIG_RUN);
    assert_true(cfg.fsync && cfg.accept_store_loss && cfg.store_reserve == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_option_takes_exactly_its_range),
        cmocka_unit_test(test_positionals_keep_their_ranges),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_store_backend_by_name),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_redis_address_shape),
        cmocka_unit_test(test_node_id_option),
        cmocka_unit_test(test_redis_password),
        cmocka_unit_test(test_store_follows_redis),
        cmocka_unit_test(test_local_store_options_refused_with_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
