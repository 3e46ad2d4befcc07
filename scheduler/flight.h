/* flight.h — single flight: identical jobs (one cache key) held by this process make one call.
 *
 * The first job with a key leads: it goes to the plan and the provider. The others that arrive while
 * it is in flight wait here (owned by the flight, still held and leased). When the leader's call is
 * written back, flight_land hands the waiters over: when the leader's answer was shareable (it would
 * be stored in the cache) they are completed from it as cache hits — the leader paid, each waiter
 * costs $0 and records what the leader's answer cost as saved, so the sum over jobs stays the sum
 * over calls; otherwise (the leader failed, went back to the queue, or its answer may not be kept)
 * they are released to be planned again, and the first of them leads next. Across processes there
 * is no single flight: two processes may each send one identical job (README "Response cache").
 *
 * Thread-safe (one mutex): the scheduler joins and takes released jobs, the writer lands. */
#ifndef TQ_FLIGHT_H
#define TQ_FLIGHT_H

#include "job.h"

#include <stdbool.h>

typedef struct Flight Flight;

Flight *flight_new(void);
/* Frees every job still waiting or released (their leases are handed back by the caller). */
void flight_free(Flight *f);

/* job joins the flight of key (64 hex digits: its cache key, or its context's compression key).
 * Returns true when it leads (send it; the caller marks it), false when it now waits here (the
 * flight owns it). Out of memory: it leads. */
bool flight_join(Flight *f, const char *key, QueueJob *job);

/* The leader of key is finished. shared: its answer is the waiters' too. Moves the waiters into
 * *jobs (malloc'd array of *n, caller owns both; NULL/0 when none) when shared; otherwise they are
 * released for flight_take_released. Unknown keys do nothing. */
void flight_land(Flight *f, const char *key, bool shared, QueueJob ***jobs, int *n);

/* Jobs released since the last call (malloc'd array, caller owns; *n 0 and NULL when none). */
void flight_take_released(Flight *f, QueueJob ***jobs, int *n);

/* Stopping: every job waiting or released is passed to fn, then freed. */
void flight_drop(Flight *f, void (*fn)(void *ud, const QueueJob *job), void *ud);

/* Jobs waiting on a leader. */
int flight_waiting(Flight *f);

#endif
