/* plan.h — batch planning: which claimed jobs go out together, and when.
 *
 * Jobs that may share a request (their kind batches, nothing per job changes the shared prefix —
 * no own system prompt, no private context — no check needs a request of its own per answer, not
 * an all-tiers run) wait in a group keyed by (kind, run_name, params text): jobs batch only with
 * identical parameters, so one system prompt serves them all, and only within their run, so one
 * producer's items never share a request with another's (unless the kind sets batch.across_runs). A group goes out when it reaches the current
 * batch size or the kind's token budget, or when its fill window (the kind's batch.fill_ms, from
 * its first job) closes; anything else goes out alone at once. The batch size per kind and model
 * adapts: it halves after a malformed batched answer and grows back by one after each clean one
 * (plan_learn, fed with the finished calls the writer sees).
 *
 * Groups are found by a hash of their key (O(1) per claimed job, however many groups are open) and
 * freed when they go out. The plan is used by one thread (the scheduler), except plan_learn and
 * plan_batch_size, which any thread may call (atomics). */
#ifndef TQ_PLAN_H
#define TQ_PLAN_H

#include "call.h"
#include "config.h"
#include "err.h"
#include "job.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct Plan Plan;

/* all_tiers: a calibration run (nothing batches). cfg must outlive the plan. */
int plan_new(Plan **out, const TqConfig *cfg, bool all_tiers, TqErr *err);
/* Frees the plan and every job still waiting in it. plan_free(NULL) does nothing. */
void plan_free(Plan *p);

/* Place a claimed job (the plan owns it from here). Calls ready to send are prepended to *ready
 * (a ->next list): the job alone, or a group it filled. A job whose params the kind does not read
 * comes back as a finished call (call_is_finished) of its own, never in a batch. A job whose kind
 * is not configured is freed and 0 returned with nothing added (its lease expires); TQ_ENOMEM when
 * a call could not be built (the jobs are freed: their leases expire and they are claimed again). */
int plan_add(Plan *p, QueueJob *job, int64_t now_ms, Call **ready);

/* Groups whose fill window has closed by now_ms (every group when force) become calls prepended to
 * *ready. Returns the earliest deadline still open, or INT64_MAX. */
int64_t plan_take_due(Plan *p, int64_t now_ms, bool force, Call **ready);

/* Stopping: every job still waiting is passed to fn, then freed (they were never sent). */
void plan_drop(Plan *p, void (*fn)(void *ud, const QueueJob *job), void *ud);

/* Jobs waiting in groups. */
int plan_waiting(const Plan *p);

/* Learn from a finished call: a batched answer that came back clean grows its kind's batch size on
 * that model by one (up to batch.max_items), a malformed one halves it (down to 1); anything else
 * changes nothing. Thread-safe. */
void plan_learn(Plan *p, const Call *c);
/* The current batch size for kind (in cfg->kinds) on model. Thread-safe. */
int plan_batch_size(const Plan *p, const TqKind *kind, int model);

#endif
