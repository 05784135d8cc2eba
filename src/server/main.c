/* parleyd: the Parley instant-messaging server. See man/parleyd.8. */
#include <stdio.h>

#include "server/auth.h"
#include "server/config.h"
#include "server/server.h"

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
    struct server srv;
    int rc = 1;
    if (server_init(&srv, &cfg) == 0)
        rc = server_run(&srv);
    server_free(&srv);
    return rc;
}
