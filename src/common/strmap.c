/* Open-addressing string map; see strmap.h. */
#include "common/strmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_bytes(const char *s, size_t len)
{
    size_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void strmap_init(struct strmap *m)
{
    memset(m, 0, sizeof(*m));
}

static struct strmap_slot *find_slot(const struct strmap *m, const char *key, size_t len, size_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct strmap_slot *s = &m->slots[i];
        if (!s->key)
            return s;
        if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

void *strmap_get(const struct strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return NULL;
    struct strmap_slot *s = find_slot(m, key, len, hash_bytes(key, len));
    return s->key ? s->value : NULL;
}

static int grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    struct strmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            *find_slot(m, old.slots[i].key, old.slots[i].key_len, old.slots[i].hash) = old.slots[i];
    free(old.slots);
    return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -1;
    size_t len = strlen(key);
    size_t h = hash_bytes(key, len);
    struct strmap_slot *s = find_slot(m, key, len, h);
    if (!s->key) {
        s->key = key;
        s->key_len = len;
        s->hash = h;
        m->count++;
    }
    s->value = value;
    return 0;
}

/* Returns true when the entry whose home slot is `home` may move back into the hole at `hole`
 * from `at` (its probe sequence from `home` passes `hole` before reaching `at`). */
static bool may_fill(size_t home, size_t hole, size_t at)
{
    if (hole <= at)
        return home <= hole || home > at;
    return home <= hole && home > at;
}

void *strmap_remove(struct strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return NULL;
    struct strmap_slot *s = find_slot(m, key, len, hash_bytes(key, len));
    if (!s->key)
        return NULL;
    void *value = s->value;
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    /* Backward-shift deletion: later entries of the same run move into the hole, so every
     * look-up still finds its key before the first empty slot (no tombstones). */
    for (size_t at = (hole + 1) & mask; m->slots[at].key; at = (at + 1) & mask) {
        if (may_fill(m->slots[at].hash & mask, hole, at)) {
            m->slots[hole] = m->slots[at];
            hole = at;
        }
    }
    memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
    m->count--;
    return value;
}

void strmap_free(struct strmap *m)
{
    free(m->slots);
    strmap_init(m);
}
