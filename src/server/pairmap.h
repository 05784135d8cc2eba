/* A hash map from ordered pairs of 32-bit ids (such as two users' directory ids) to pointers:
 * open addressing with linear probing; entries are removed by shifting their successors back,
 * so look-ups never meet tombstones, and the table shrinks again when it empties. Every
 * operation is O(1) on average. */
#ifndef PARLEY_PAIRMAP_H
#define PARLEY_PAIRMAP_H

#include <stddef.h>
#include <stdint.h>

struct pairmap_slot {
    uint64_t key;
    void *value; /* NULL: the slot is empty */
};

/* The map; zero-initialise it or call pairmap_init. */
struct pairmap {
    struct pairmap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
};

/* Makes an empty map. */
void pairmap_init(struct pairmap *m);

/* Returns the value stored under (a, b), or NULL. (a, b) and (b, a) are different keys. */
void *pairmap_get(const struct pairmap *m, uint32_t a, uint32_t b);

/* Stores `value` (not NULL) under (a, b), replacing any previous value. Returns 0, or -1 when
 * memory ran out (the map is unchanged). */
int pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, void *value);

/* Removes (a, b) and returns its value, or NULL when it was not there. */
void *pairmap_remove(struct pairmap *m, uint32_t a, uint32_t b);

/* Calls `fn` on every value (unless `fn` is NULL), then frees the map's memory and leaves it
 * empty. */
void pairmap_free(struct pairmap *m, void (*fn)(void *value));

#endif
