/* held.h — the set of jobs this process holds (claimed, not yet written back), with their attempt
 * numbers: what the scheduler renews leases for and hands back at shutdown. Thread-safe (one mutex;
 * every operation is O(n) in its arguments, not in the set). */
#ifndef TQ_HELD_H
#define TQ_HELD_H

#include <stdint.h>

typedef struct HeldSet HeldSet;

HeldSet *held_new(void);
void held_free(HeldSet *h);
int held_add(HeldSet *h, int64_t id, int attempt);
void held_remove(HeldSet *h, int64_t id);
int held_count(HeldSet *h);
/* Copy every (id, attempt) into malloc'd arrays; returns the count (0 with NULL arrays if empty),
 * or -1 on allocation failure. */
int held_snapshot(HeldSet *h, int64_t **ids, int **attempts);

#endif
