/* Users, presence and blocks in memory; see directory.h. */
#include "server/directory.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void directory_init(struct directory *d)
{
    memset(d, 0, sizeof(*d));
    strmap_init(&d->by_name);
}

static void free_secret(struct user *u)
{
    if (!u->secret)
        return;
    sodium_memzero(u->secret, strlen(u->secret));
    free(u->secret);
    u->secret = NULL;
}

void directory_free(struct directory *d)
{
    for (uint32_t i = 0; i < d->count; i++) {
        struct user *u = d->by_id[i];
        free_secret(u);
        free(u->blocked);
        free(u);
    }
    free(d->by_id);
    strmap_free(&d->by_name);
    memset(d, 0, sizeof(*d));
}

struct user *directory_find(const struct directory *d, const char *name, size_t len)
{
    return strmap_get(&d->by_name, name, len);
}

struct user *directory_by_id(const struct directory *d, uint32_t id)
{
    return id < d->count ? d->by_id[id] : NULL;
}

struct user *directory_add(struct directory *d, const char *name)
{
    size_t len = strlen(name);
    struct user *u = directory_find(d, name, len);
    if (u)
        return u;
    if (len > PROTO_MAX_NAME)
        return NULL;
    if (d->count == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        struct user **ids = realloc(d->by_id, cap * sizeof(*ids));
        if (!ids)
            return NULL;
        d->by_id = ids;
        d->cap = cap;
    }
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    memcpy(u->name, name, len + 1);
    u->id = d->count;
    if (strmap_put(&d->by_name, u->name, u) < 0) {
        free(u);
        return NULL;
    }
    d->by_id[d->count++] = u;
    return u;
}

int directory_set_account(struct user *u, enum auth_kind kind, const char *secret)
{
    char *copy = strdup(secret);
    if (!copy)
        return -1;
    free_secret(u);
    u->secret = copy;
    u->kind = kind;
    u->has_account = true;
    return 0;
}

void directory_set_online(struct directory *d, struct user *u, struct session *s)
{
    if (s && !u->online) {
        u->online_prev = NULL;
        u->online_next = d->online_head;
        if (d->online_head)
            d->online_head->online_prev = u;
        d->online_head = u;
        d->online_count++;
    } else if (!s && u->online) {
        if (u->online_prev)
            u->online_prev->online_next = u->online_next;
        else
            d->online_head = u->online_next;
        if (u->online_next)
            u->online_next->online_prev = u->online_prev;
        u->online_prev = u->online_next = NULL;
        d->online_count--;
    }
    u->online = s;
}

void directory_set_elsewhere(struct directory *d, struct user *u, bool on)
{
    if (on && !u->elsewhere) {
        u->elsewhere_prev = NULL;
        u->elsewhere_next = d->elsewhere_head;
        if (d->elsewhere_head)
            d->elsewhere_head->elsewhere_prev = u;
        d->elsewhere_head = u;
        d->elsewhere_count++;
    } else if (!on && u->elsewhere) {
        if (u->elsewhere_prev)
            u->elsewhere_prev->elsewhere_next = u->elsewhere_next;
        else
            d->elsewhere_head = u->elsewhere_next;
        if (u->elsewhere_next)
            u->elsewhere_next->elsewhere_prev = u->elsewhere_prev;
        u->elsewhere_prev = u->elsewhere_next = NULL;
        d->elsewhere_count--;
    }
    u->elsewhere = on;
}

/* Returns the index where `id` is or would go in a's sorted block list. */
static uint32_t block_slot(const struct user *a, uint32_t id)
{
    uint32_t lo = 0, hi = a->n_blocked;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a->blocked[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool directory_blocks(const struct user *a, const struct user *b)
{
    if (a->n_blocked == 0)
        return false;
    uint32_t i = block_slot(a, b->id);
    return i < a->n_blocked && a->blocked[i] == b->id;
}

bool directory_related(const struct user *a, const struct user *b)
{
    return directory_blocks(a, b) || directory_blocks(b, a);
}

int directory_block(struct user *a, const struct user *b)
{
    uint32_t i = block_slot(a, b->id);
    if (i < a->n_blocked && a->blocked[i] == b->id)
        return 0;
    if (a->n_blocked == a->cap_blocked) {
        uint32_t cap = a->cap_blocked ? a->cap_blocked * 2 : 4;
        uint32_t *p = realloc(a->blocked, cap * sizeof(*p));
        if (!p)
            return -1;
        a->blocked = p;
        a->cap_blocked = cap;
    }
    memmove(a->blocked + i + 1, a->blocked + i, (a->n_blocked - i) * sizeof(*a->blocked));
    a->blocked[i] = b->id;
    a->n_blocked++;
    return 1;
}

int directory_unblock(struct user *a, const struct user *b)
{
    uint32_t i = block_slot(a, b->id);
    if (i >= a->n_blocked || a->blocked[i] != b->id)
        return 0;
    memmove(a->blocked + i, a->blocked + i + 1, (a->n_blocked - i - 1) * sizeof(*a->blocked));
    a->n_blocked--;
    return 1;
}

void directory_mark_reset(struct directory *d)
{
    d->mark_epoch++;
    if (d->mark_epoch == 0) {
        for (uint32_t i = 0; i < d->count; i++)
            d->by_id[i]->mark = 0;
        d->mark_epoch = 1;
    }
}

bool directory_mark(struct directory *d, struct user *u)
{
    if (u->mark == d->mark_epoch)
        return true;
    u->mark = d->mark_epoch;
    return false;
}
