/* Open-addressing map of id pairs with backward-shift deletion; see pairmap.h. */
#include "server/pairmap.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PAIRMAP_MIN_CAP 64

static uint64_t make_key(uint32_t a, uint32_t b)
{
    return (uint64_t)a << 32 | b;
}

/* The splitmix64 finaliser: every key bit moves the slot. */
static size_t home_of(uint64_t key, size_t cap)
{
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebull;
    key ^= key >> 31;
    return (size_t)key & (cap - 1);
}

/* Returns the slot holding `key`, or the empty slot where it would go. */
static struct pairmap_slot *find_slot(const struct pairmap *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = home_of(key, m->cap);; i = (i + 1) & mask) {
        struct pairmap_slot *s = &m->slots[i];
        if (!s->value || s->key == key)
            return s;
    }
}

void pairmap_init(struct pairmap *m)
{
    memset(m, 0, sizeof(*m));
}

void *pairmap_get(const struct pairmap *m, uint32_t a, uint32_t b)
{
    if (m->cap == 0)
        return NULL;
    return find_slot(m, make_key(a, b))->value;
}

/* Moves every entry into a table of `cap` slots. Returns 0 or -1 (unchanged). */
static int resize(struct pairmap *m, size_t cap)
{
    struct pairmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    struct pairmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].value)
            *find_slot(m, old.slots[i].key) = old.slots[i];
    free(old.slots);
    return 0;
}

int pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, void *value)
{
    assert(value);
    if ((m->count + 1) * 4 > m->cap * 3 && resize(m, m->cap ? m->cap * 2 : PAIRMAP_MIN_CAP) < 0)
        return -1;
    uint64_t key = make_key(a, b);
    struct pairmap_slot *s = find_slot(m, key);
    if (!s->value)
        m->count++;
    s->key = key;
    s->value = value;
    return 0;
}

/* True when an entry whose home is `home` may move from `from` back to the hole at `hole`:
 * the hole lies cyclically in [home, from). */
static bool may_fill(size_t home, size_t hole, size_t from, size_t mask)
{
    return ((hole - home) & mask) < ((from - home) & mask);
}

/* Empties slot `hole` and shifts back the entries after it that probed past it. */
static void delete_at(struct pairmap *m, size_t hole)
{
    size_t mask = m->cap - 1;
    for (size_t i = (hole + 1) & mask; m->slots[i].value; i = (i + 1) & mask) {
        if (may_fill(home_of(m->slots[i].key, m->cap), hole, i, mask)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].value = NULL;
    m->count--;
}

void *pairmap_remove(struct pairmap *m, uint32_t a, uint32_t b)
{
    if (m->cap == 0)
        return NULL;
    struct pairmap_slot *s = find_slot(m, make_key(a, b));
    void *value = s->value;
    if (!value)
        return NULL;
    delete_at(m, (size_t)(s - m->slots));
    if (m->cap > PAIRMAP_MIN_CAP && m->count * 8 < m->cap)
        resize(m, m->cap / 2); /* on failure the bigger table simply stays */
    return value;
}

void pairmap_free(struct pairmap *m, void (*fn)(void *value))
{
    for (size_t i = 0; fn && i < m->cap; i++)
        if (m->slots[i].value)
            fn(m->slots[i].value);
    free(m->slots);
    pairmap_init(m);
}
