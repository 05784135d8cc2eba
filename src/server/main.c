/* parleyd: the Parley instant-messaging server. See man/parleyd.8. */
#include <limits.h>
#include <stdio.h>

#include "server/auth.h"
#include "server/check.h"
#include "server/config.h"
#include "server/server.h"
#include "server/tlscert.h"

/* `parleyd --hash-credentials FILE`: rewrites plain passwords as argon2id hashes. */
static int hash_credentials(const struct config *cfg)
{
    struct auth_cost cost = {cfg->hash_ops, cfg->hash_mem};
    char err[256] = "";
    if (auth_init() < 0)
        return 1;
    int n = auth_rewrite_hashed(cfg->hash_credentials, &cost, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "parleyd: %s: %s\n", cfg->hash_credentials, err);
        return 1;
    }
    printf("%d password%s hashed in %s\n", n, n == 1 ? "" : "s", cfg->hash_credentials);
    return 0;
}

/* `parleyd --tls-fingerprint`: prints the fingerprint of the TLS key (made first if needed). */
static int print_fingerprint(const struct config *cfg)
{
    char cert[PATH_MAX], key[PATH_MAX], fp[TLSFP_LEN + 1], err[512];
    if (server_tls_files(cfg, cert, key, sizeof(cert), err, sizeof(err)) < 0 ||
        tlscert_fingerprint(cert, fp, err, sizeof(err)) < 0) {
        fprintf(stderr, "parleyd: %s\n", err);
        return 1;
    }
    puts(fp);
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT:
        return 0;
    case CONFIG_ERROR:
        return 2;
    case CONFIG_RUN:
        break;
    }
    if (cfg.hash_credentials)
        return hash_credentials(&cfg);
    if (cfg.tls_fingerprint)
        return print_fingerprint(&cfg);
    if (cfg.check)
        return (int)check_run(&cfg);
    struct server srv;
    int rc = 1;
    if (server_init(&srv, &cfg) == 0)
        rc = server_run(&srv);
    server_free(&srv);
    return rc;
}
