/* A hash map from strings to pointers (open addressing, linear probing). Keys are borrowed: the
 * caller keeps them alive while they are in the map. Entries can be removed (a directory of
 * accounts never does; the client's P2P tables do). */
#ifndef PARLEY_STRMAP_H
#define PARLEY_STRMAP_H

#include <stddef.h>

struct strmap_slot {
    const char *key;
    size_t key_len;
    size_t hash;
    void *value;
};

/* The map; zero-initialise it or call strmap_init. */
struct strmap {
    struct strmap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
};

/* Makes an empty map. */
void strmap_init(struct strmap *m);

/* Returns the value stored under the `len` bytes at `key`, or NULL. */
void *strmap_get(const struct strmap *m, const char *key, size_t len);

/* Stores `value` under `key` (NUL-terminated, borrowed), replacing any previous value.
 * Returns 0, or -1 when memory ran out (the map is unchanged). */
int strmap_put(struct strmap *m, const char *key, void *value);

/* Removes the entry stored under the `len` bytes at `key` and returns its value, or NULL when
 * there is none. The entry's key is no longer referenced afterwards. */
void *strmap_remove(struct strmap *m, const char *key, size_t len);

/* Frees the map's memory (not the keys or values). */
void strmap_free(struct strmap *m);

#endif
