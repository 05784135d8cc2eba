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

bool store_writable(const struct store *st)
{
    return st && !st->write_failed;
}

/* Every backend --store can name; the first is the default. */
static const struct store_ops *const store_backends[] = {
    &store_local_ops,
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

/* Opens a store on backend `ops`; `accept` lets it start after a loss. */
static int open_with(struct store **out, const struct store_ops *ops, const char *dir, bool accept,
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
    if (ops->open(&st->be, dir, accept, err, errlen) != 0)
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
    return open_with(out, ops, dir, false, err, errlen);
}

int store_open_accepting_loss(struct store **out, const struct store_ops *ops, const char *dir,
                              char *err, size_t errlen)
{
    return open_with(out, ops, dir, true, err, errlen);
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

int store_queue_push(struct store *st, const char *sender, const char *recipient, int64_t sent_at,
                     const char *body, size_t body_len, int64_t *id)
{
    return store_noted(st,
                       st->ops->queue_push(st->be, sender, recipient, sent_at, body, body_len, id));
}

int store_queue_load(struct store *st, const char *recipient, int64_t after_id, size_t limit,
                     store_msg_fn fn, void *ctx)
{
    return st->ops->queue_load(st->be, recipient, after_id, limit, fn, ctx);
}

int store_queue_ack(struct store *st, const char *recipient, int64_t up_to_id)
{
    return store_noted(st, st->ops->queue_ack(st->be, recipient, up_to_id));
}

int64_t store_queue_count(struct store *st, const char *recipient)
{
    return st->ops->queue_count(st->be, recipient);
}

int store_queue_totals(struct store *st, struct store_totals *out)
{
    return st->ops->queue_totals(st->be, out);
}

int store_block_add(struct store *st, const char *blocker, const char *blocked)
{
    return store_noted(st, st->ops->block_add(st->be, blocker, blocked));
}

int store_block_remove(struct store *st, const char *blocker, const char *blocked)
{
    return store_noted(st, st->ops->block_remove(st->be, blocker, blocked));
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

int store_presence_since(struct store *st, int64_t since, store_name_fn fn, void *ctx)
{
    return st->ops->presence_since(st->be, since, fn, ctx);
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
