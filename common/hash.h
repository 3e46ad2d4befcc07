/* hash.h — small non-cryptographic hashes for keys and versions (never for secrets). */
#ifndef TQ_HASH_H
#define TQ_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_fnv1a64(const void *data, size_t len);
/* Continue a running FNV-1a hash (start from HASH_FNV_INIT). */
#define HASH_FNV_INIT 0xcbf29ce484222325ULL
uint64_t hash_fnv1a64_more(uint64_t h, const void *data, size_t len);
/* splitmix64 step: a good 64-bit mixer and a tiny RNG (state advances). */
uint64_t hash_splitmix64(uint64_t *state);
uint64_t hash_mix64(uint64_t x);
/* 16 lowercase hex digits and a NUL. */
void hash_hex64(uint64_t h, char out[17]);

#endif
