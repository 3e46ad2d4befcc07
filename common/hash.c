#include "hash.h"

#include <stdio.h>

uint64_t hash_fnv1a64_more(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t hash_fnv1a64(const void *data, size_t len) { return hash_fnv1a64_more(HASH_FNV_INIT, data, len); }

uint64_t hash_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t hash_splitmix64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return hash_mix64(*state);
}

void hash_hex64(uint64_t h, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)h); }
