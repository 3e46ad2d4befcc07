/* escalate.h — the one escalation policy: what happens to a job after an answer has its final score.
 *
 * Single answers and each item of a batched answer go through the same function, so the rule is
 * written once (DESIGN.md §3 "The call path", step 5):
 *
 *   all-tiers run (calibration)  every tier answers: NEXT_TIER until the last; there the answer is
 *                                the result when it is usable (FINAL), else the job FAILs
 *   usable and score >= accept   ACCEPT ("accepted"), on any tier but the last
 *   the last tier                its usable answer is FINAL ("final_tier") whatever it scored; an
 *                                unusable one gives way to the best usable answer of an earlier tier
 *                                (KEEP_BEST, "escalation_failed"), else the job FAILs with the gate
 *                                that failed ("truncated", "refusal", "label_not_allowed", ...)
 *   under the bar, not the last  NEXT_TIER ("escalated") — unless the next tier's estimated cost
 *                                exceeds what is left of the job's budget: then KEEP_BEST ("budget")
 *                                when a usable answer is in hand, else FAIL ("budget")
 *
 * "Usable" means the answer passed every hard gate: a job is only `done` with a real answer. The
 * caller records a usable answer under the bar as the best so far before deciding (has_best).
 * Pure: no I/O, no state; any thread. */
#ifndef TQ_ESCALATE_H
#define TQ_ESCALATE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    ESC_ACCEPT = 0, /* keep this answer; the job is done */
    ESC_FINAL,      /* keep this answer: it came from the last tier */
    ESC_NEXT_TIER,  /* ask the next tier */
    ESC_KEEP_BEST,  /* stop; the job is done with the best usable answer of an earlier tier */
    ESC_FAIL,       /* stop; no usable answer: the job fails (not retryable) */
} EscAction;

typedef struct EscInput {
    double score;            /* in [0,1]; 0 when a gate failed */
    bool usable;             /* passed every hard gate */
    const char *gate_reason; /* the failed gate's stable name when !usable */
    double accept;           /* this tier's bar */
    bool last_tier;
    bool all_tiers;          /* calibration run */
    bool has_best;           /* a usable answer (this one or an earlier tier's) is in hand */
    int64_t budget_left_pico;      /* what is left of the job's budget; INT64_MAX = no budget */
    int64_t next_tier_cost_pico;   /* estimated cost of asking the next tier (and its checks) */
} EscInput;

typedef struct EscDecision {
    EscAction action;
    const char *reason;      /* static, stable: accepted, final_tier, escalated, all_tiers, budget,
                              * escalation_failed, or the gate's name */
} EscDecision;

EscDecision escalate_decide(const EscInput *in);

/* "accept", "final", "next_tier", "keep_best", "fail". */
const char *escalate_action_name(EscAction a);

#endif
