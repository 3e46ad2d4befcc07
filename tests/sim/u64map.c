#include "u64map.h"

#include <stdlib.h>
#include <string.h>

/* Key 0 marks an empty slot, so a real key 0 is stored under this stand-in; a genuine key equal to
 * the stand-in would alias it, which for 64-bit hashes is a 2^-64 event we accept. */
#define U64MAP_ZERO_KEY 0x9e3779b97f4a7c15ULL

static uint64_t fix_key(uint64_t k) { return k ? k : U64MAP_ZERO_KEY; }

/* Keys are often already hashes, but cheap callers may pass small integers: mix before masking. */
static size_t slot_of(uint64_t k, size_t mask)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & mask;
}

void u64map_init(U64Map *m, size_t max_entries)
{
    memset(m, 0, sizeof *m);
    m->max_entries = max_entries;
}

void u64map_free(U64Map *m)
{
    if (!m)
        return;
    free(m->keys);
    free(m->vals);
    size_t max = m->max_entries;
    u64map_init(m, max);
}

void u64map_clear(U64Map *m)
{
    if (m->cap)
        memset(m->keys, 0, m->cap * sizeof *m->keys);
    m->len = 0;
}

uint64_t *u64map_get(const U64Map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    key = fix_key(key);
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return &m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

static int grow(U64Map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = calloc(ncap, sizeof *nk);
    uint64_t *nv = malloc(ncap * sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return -1;
    }
    size_t mask = ncap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j])
            continue;
        size_t i = slot_of(m->keys[j], mask);
        while (nk[i])
            i = (i + 1) & mask;
        nk[i] = m->keys[j];
        nv[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

uint64_t *u64map_upsert(U64Map *m, uint64_t key, int *created)
{
    uint64_t *v = u64map_get(m, key);
    if (v) {
        if (created)
            *created = 0;
        return v;
    }
    if (m->max_entries && m->len >= m->max_entries)
        return NULL;
    if ((m->len + 1) * 2 > m->cap && grow(m))
        return NULL;
    key = fix_key(key);
    size_t mask = m->cap - 1;
    size_t i = slot_of(key, mask);
    while (m->keys[i])
        i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = 0;
    m->len++;
    if (created)
        *created = 1;
    return &m->vals[i];
}
