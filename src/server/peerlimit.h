/* Connections at once per source: an IPv4 address, or the /64 network of an IPv6 one (what
 * one host or one customer usually holds; an IPv4-mapped IPv6 address counts as its IPv4
 * address). Each source costs memory only while it has connections. */
#ifndef PARLEY_PEERLIMIT_H
#define PARLEY_PEERLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/pairmap.h"

struct sockaddr;

/* Which source a connection counts against. */
struct peerlimit_key {
    uint32_t hi, lo;
};

/* The counts; zero-initialise it. */
struct peerlimit {
    struct pairmap counts; /* key -> size_t * (the count, at least 1) */
};

/* Returns the source of the peer address `sa`. */
struct peerlimit_key peerlimit_key_of(const struct sockaddr *sa);

/* Counts one more connection from `key` unless it has `max` already (0: no limit). Returns
 * true when counted (give it back with peerlimit_release), false when refused or when memory
 * ran out. */
bool peerlimit_take(struct peerlimit *pl, struct peerlimit_key key, size_t max);

/* Gives back a connection counted by peerlimit_take. */
void peerlimit_release(struct peerlimit *pl, struct peerlimit_key key);

/* Returns the connections counted for `key`. */
size_t peerlimit_count(const struct peerlimit *pl, struct peerlimit_key key);

/* Frees the counts. */
void peerlimit_free(struct peerlimit *pl);

#endif
