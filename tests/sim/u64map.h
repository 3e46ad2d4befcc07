/* u64map.h — open-addressing hash map from 64-bit keys to 64-bit values.
 *
 * Keys are usually 64-bit hashes of strings; callers that need exact string identity store an index
 * as the value and compare the string themselves. Linear probing, power-of-two capacity, grown at
 * 1/2 load, so lookups stay O(1) as the map grows. max_entries bounds memory: an insert into a full
 * map fails with TQ_ELIMIT (the caller decides whether to clear it). Not thread-safe. */
#ifndef SIM_U64MAP_H
#define SIM_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct U64Map {
    uint64_t *keys; /* 0 = empty slot (key 0 is stored as a remapped value internally) */
    uint64_t *vals;
    size_t cap;     /* slots, power of two; 0 until the first insert */
    size_t len;
    size_t max_entries;
} U64Map;

void u64map_init(U64Map *m, size_t max_entries); /* 0 = no bound */
void u64map_free(U64Map *m);
void u64map_clear(U64Map *m); /* drops all entries, keeps memory */
/* Pointer to the value of key, or NULL. Valid until the next insert. */
uint64_t *u64map_get(const U64Map *m, uint64_t key);
/* Pointer to the value of key, inserting it with value 0 if absent (*created set accordingly).
 * NULL on allocation failure or when the map holds max_entries. Valid until the next insert. */
uint64_t *u64map_upsert(U64Map *m, uint64_t key, int *created);

#endif
