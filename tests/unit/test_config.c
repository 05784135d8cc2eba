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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_option_takes_exactly_its_range),
        cmocka_unit_test(test_positionals_keep_their_ranges),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_store_backend_by_name),
        cmocka_unit_test(test_tls_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
