#include "pcache.h"

#include "err.h"
#include "hash.h"

#include <stdlib.h>
#include <string.h>

int pcache_init(PrefixCache *pc, size_t slots)
{
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    pc->slots = calloc(n, sizeof *pc->slots);
    if (!pc->slots)
        return TQ_ENOMEM;
    pc->mask = n - 1;
    return 0;
}

void pcache_free(PrefixCache *pc)
{
    if (!pc)
        return;
    free(pc->slots);
    pc->slots = NULL;
    pc->mask = 0;
}

void pcache_clear(PrefixCache *pc)
{
    if (pc->slots)
        memset(pc->slots, 0, (pc->mask + 1) * sizeof *pc->slots);
}

bool pcache_seen(PrefixCache *pc, uint64_t key)
{
    key |= 1; /* 0 marks an empty slot */
    uint64_t *slot = &pc->slots[hash_mix64(key) & pc->mask];
    bool hit = *slot == key;
    *slot = key;
    return hit;
}
