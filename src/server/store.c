/* The store chosen by name: every call goes to the operations table of the open store's
 * backend (see store.h). Nothing else lives here, so each backend stays whole in its file. */
#include "server/store.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An open store: its backend and the backend's state. */
struct store {
    const struct store_ops *ops;
    void *be;
    bool write_failed; /* the last write the backend answered failed */
};

/* Remembers whether the store took the write that returned `rc`; returns `rc`. */
static int store_noted(struct store *st, int rc)
{
    st->write_failed = rc < 0;
    return rc;
}

void store_note(struct store *st, int rc)
{
    store_noted(st, rc);
}

bool store_writable(const struct store *st)
{
    return st && !st->write_failed;
}

/* Every backend --store can name; the first is the default. */
static const struct store_ops *const store_backends[] = {
    &store_local_ops,
    &store_redis_ops,
};

#define STORE_BACKEND_COUNT (sizeof store_backends / sizeof store_backends[0])

const struct store_ops *store_backend(const char *name)
{
    for (size_t i = 0; i < STORE_BACKEND_COUNT; i++)
        if (strcmp(store_backends[i]->name, name) == 0)
            return store_backends[i];
    return NULL;
}

void store_backend_names(char *out, size_t len)
{
    size_t used = 0;
    assert(len > 0);
    out[0] = '\0';
    for (size_t i = 0; i < STORE_BACKEND_COUNT && used < len; i++) {
        int n = snprintf(out + used, len - used, "%s%s", i ? ", " : "", store_backends[i]->name);
        if (n < 0)
            return;
        used += (size_t)n;
    }
}

int store_open_with(struct store **out, const struct store_ops *ops, const struct store_params *p,
                    char *err, size_t errlen)
{
    assert(ops);
    *out = NULL;
    struct store *st = calloc(1, sizeof *st);
    if (!st) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->ops = ops;
    struct store_params params = *p;
    params.owner = st;
    if (ops->open(&st->be, &params, err, errlen) != 0)
        goto fail;
    *out = st;
    return 0;

fail:
    free(st);
    return -1;
}

int store_open(struct store **out, const struct store_ops *ops, const char *dir, char *err,
               size_t errlen)
{
    struct store_params p = {.dir = dir};
    return store_open_with(out, ops, &p, err, errlen);
}

int store_open_accepting_loss(struct store **out, const struct store_ops *ops, const char *dir,
                              char *err, size_t errlen)
{
    struct store_params p = {.dir = dir, .accept_loss = true};
    return store_open_with(out, ops, &p, err, errlen);
}

bool store_answers_early(const struct store *st)
{
    return !st || st->ops->answers_early;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    st->ops->close(st->be);
    free(st);
}

int store_set_fsync(struct store *st, bool on)
{
    return st->ops->set_fsync(st->be, on);
}

int store_set_reserve(struct store *st, size_t bytes)
{
    return st->ops->set_reserve(st->be, bytes);
}

const char *store_error(const struct store *st)
{
    return st ? st->ops->error(st->be) : "no store";
}

void store_commit(struct store *st, store_commit_fn done, void *arg)
{
    if (!st) {
        done(arg, 0);
        return;
    }
    st->ops->commit(st->be, done, arg);
}

void store_queue_push(struct store *st, const char *sender, const char *recipient, int64_t sent_at,
                      const char *body, size_t body_len, int64_t max_queued, store_push_fn done,
                      void *arg)
{
    st->ops->queue_push(st->be, sender, recipient, sent_at, body, body_len, max_queued, done, arg);
}

void store_queue_load(struct store *st, const char *recipient, int64_t after_id, size_t limit,
                      store_msg_fn fn, store_done_fn done, void *ctx)
{
    st->ops->queue_load(st->be, recipient, after_id, limit, fn, done, ctx);
}

int store_queue_ack(struct store *st, const char *recipient, int64_t up_to_id)
{
    return store_noted(st, st->ops->queue_ack(st->be, recipient, up_to_id));
}

void store_queue_count(struct store *st, const char *recipient, store_count_fn done, void *arg)
{
    st->ops->queue_count(st->be, recipient, done, arg);
}

int store_queue_totals(struct store *st, struct store_totals *out)
{
    return st->ops->queue_totals(st->be, out);
}

void store_block_add(struct store *st, const char *blocker, const char *blocked, store_done_fn done,
                     void *arg)
{
    st->ops->block_add(st->be, blocker, blocked, done, arg);
}

void store_block_remove(struct store *st, const char *blocker, const char *blocked,
                        store_done_fn done, void *arg)
{
    st->ops->block_remove(st->be, blocker, blocked, done, arg);
}

int store_block_each(struct store *st, store_pair_fn fn, void *ctx)
{
    return st->ops->block_each(st->be, fn, ctx);
}

int store_presence_login(struct store *st, const char *name, int64_t now)
{
    return store_noted(st, st->ops->presence_login(st->be, name, now));
}

int store_presence_logout(struct store *st, const char *name, int64_t now)
{
    return store_noted(st, st->ops->presence_logout(st->be, name, now));
}

int store_heartbeat(struct store *st, int64_t now)
{
    return store_noted(st, st->ops->heartbeat(st->be, now));
}

int store_presence_recover(struct store *st, int64_t now)
{
    return st->ops->presence_recover(st->be, now);
}

void store_presence_since(struct store *st, int64_t since, store_name_fn fn, store_done_fn done,
                          void *ctx)
{
    st->ops->presence_since(st->be, since, fn, done, ctx);
}

int store_presence_forget(struct store *st, const char *name)
{
    return st->ops->presence_forget(st->be, name);
}

int store_lock_get(struct store *st, const char *name, struct store_lock *lock)
{
    return st->ops->lock_get(st->be, name, lock);
}

int store_lock_put(struct store *st, const char *name, const struct store_lock *lock)
{
    return store_noted(st, st->ops->lock_put(st->be, name, lock));
}

int store_lock_each(struct store *st, store_lock_fn fn, void *ctx)
{
    return st->ops->lock_each(st->be, fn, ctx);
}

void store_lock_attempt(struct store *st, const char *name, bool password_ok, int64_t now_ms,
                        const struct store_lock_policy *policy, store_lock_done_fn done, void *arg)
{
    st->ops->lock_attempt(st->be, name, password_ok, now_ms, policy, done, arg);
}

void store_account_add(struct store *st, const char *name, const char *hash, store_done_fn done,
                       void *arg)
{
    st->ops->account_add(st->be, name, hash, done, arg);
}

int store_account_each(struct store *st, store_account_fn fn, void *ctx)
{
    return st->ops->account_each(st->be, fn, ctx);
}
