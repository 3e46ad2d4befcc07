/* held.h — the set of jobs this process holds (claimed, not yet written back), with their attempt
 * numbers: what the scheduler renews leases for and hands back at shutdown. Thread-safe (one mutex;
 * every operation is O(n) in its arguments, not in the set). */
#ifndef TQ_HELD_H
#define TQ_HELD_H

#include <stdint.h>

typedef struct HeldSet HeldSet;

HeldSet *held_new(void);
void held_free(HeldSet *h);
/* bytes: the job's input text held in memory (prompt, context, system prompt), counted by
 * held_bytes until the job is removed. Adding an id already held replaces its entry. */
int held_add(HeldSet *h, int64_t id, int attempt, int64_t bytes);
void held_remove(HeldSet *h, int64_t id);
int held_count(HeldSet *h);
int64_t held_bytes(HeldSet *h);
/* Copy every (id, attempt) into malloc'd arrays; returns the count (0 with NULL arrays if empty),
 * or -1 on allocation failure. */
int held_snapshot(HeldSet *h, int64_t **ids, int **attempts);

#endif
