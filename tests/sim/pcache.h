/* pcache.h — the provider's prefix cache, as a bounded direct-mapped set of 64-bit keys.
 *
 * A key is hash(model, system message). Two keys that land on the same slot evict each other,
 * which is how a real cache forgets under pressure; memory is fixed at init. */
#ifndef SIM_PCACHE_H
#define SIM_PCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PrefixCache {
    uint64_t *slots;
    size_t mask;
} PrefixCache;

/* slots is rounded up to a power of two. Returns 0 or TQ_ENOMEM. */
int pcache_init(PrefixCache *pc, size_t slots);
void pcache_free(PrefixCache *pc);
void pcache_clear(PrefixCache *pc);
/* True if key was cached already; key is cached afterwards either way. */
bool pcache_seen(PrefixCache *pc, uint64_t key);

#endif
