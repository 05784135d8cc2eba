/* libFuzzer harness: the server's request parser and every handler behind it. Input bytes are
 * split into chunks by 0xFF; each chunk's first byte picks one of three connections and the
 * rest is fed to it as received bytes. Sessions the server closes are ended and replaced. */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/linebuf.h"
#include "fuzz/net_stub.h"
#include "server/server.h"
#include "server/store.h"
#include "server/worker.h"

#define CONNS 3

static struct server srv;
static struct net_conn conns[CONNS];
static struct session *sessions[CONNS];
static struct linebuf bufs[CONNS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add_user(const char *name, const char *password)
{
    struct user *u = directory_add(&srv.dir, name);
    if (!u || directory_set_account(u, AUTH_PLAIN, password) < 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* No budgets: the users live across inputs and would soon get nothing but 429. */
    char *args[] = {"parleyd", "--msg-rate", "0",  "--req-rate", "0", "--max-errors",
                    "1000000", "0",          "60", "60",         NULL};
    if (config_parse(&srv.cfg, 10, args) != CONFIG_RUN || auth_init() < 0)
        abort();
    srv.cfg.max_output = 1 << 20;
    directory_init(&srv.dir);
    add_user("hans", "falcon");
    add_user("yoda", "wise");
    add_user("vader", "dark");
    char dir[] = "/tmp/parley-fuzz-server-XXXXXX";
    char err[256];
    if (!mkdtemp(dir) || store_open(&srv.store, &store_local_ops, dir, err, sizeof(err)) < 0)
        abort();
    srv.fmt_cap = srv.cfg.max_line + 256;
    srv.fmt = malloc(srv.fmt_cap);
    srv.base = event_base_new();
    srv.workers = worker_pool_new(srv.base, 1, 256);
    if (!srv.fmt || !srv.base || !srv.workers)
        abort();
    return 0;
}

/* The group commit's answer: a failure's undo is not what this fuzzer looks at. */
static void commit_done(void *arg, int rc)
{
    (void)arg;
    (void)rc;
}

static void open_conn(int i)
{
    memset(&conns[i], 0, sizeof(conns[i]));
    linebuf_init(&bufs[i], srv.cfg.max_line);
    sessions[i] = session_open(&srv, &conns[i]);
    if (!sessions[i])
        abort();
}

static void close_conn(int i)
{
    session_closed(sessions[i], NET_CLOSE_EOF);
    linebuf_free(&bufs[i]);
    sessions[i] = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < CONNS; i++)
        open_conn(i);
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));
        const uint8_t *chunk_end = sep ? sep : end;
        if (chunk_end > p) {
            int i = p[0] % CONNS;
            linebuf_feed(&bufs[i], (const char *)p + 1, (size_t)(chunk_end - p - 1), session_frame,
                         sessions[i]);
            if (conns[i].closed) {
                close_conn(i);
                open_conn(i);
            }
        }
        p = sep ? sep + 1 : end;
    }
    store_commit(srv.store, commit_done, NULL);
    srv.n_undo = 0;
    session_expire(&srv, INT64_MAX / 2);
    p2p_expire(&srv, INT64_MAX / 2);
    for (int i = 0; i < CONNS; i++)
        close_conn(i);
    return 0;
}
