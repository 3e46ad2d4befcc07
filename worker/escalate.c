#include "escalate.h"

static EscDecision make(EscAction a, const char *reason) { return (EscDecision){a, reason}; }

/* No usable answer from this tier and none further to ask: the best earlier one, or nothing. */
static EscDecision fall_back(const EscInput *in, const char *reason_kept, const char *reason_failed)
{
    return in->has_best ? make(ESC_KEEP_BEST, reason_kept) : make(ESC_FAIL, reason_failed);
}

EscDecision escalate_decide(const EscInput *in)
{
    const char *gate = in->gate_reason ? in->gate_reason : "unusable";
    if (in->all_tiers) {
        if (!in->last_tier)
            return make(ESC_NEXT_TIER, "all_tiers");
        return in->usable ? make(ESC_FINAL, "all_tiers") : make(ESC_FAIL, gate);
    }
    if (in->last_tier)
        return in->usable ? make(ESC_FINAL, "final_tier") : fall_back(in, "escalation_failed", gate);
    if (in->usable && in->score >= in->accept)
        return make(ESC_ACCEPT, "accepted");
    if (in->next_tier_cost_pico > in->budget_left_pico)
        return fall_back(in, "budget", "budget");
    return make(ESC_NEXT_TIER, "escalated");
}

const char *escalate_action_name(EscAction a)
{
    switch (a) {
    case ESC_ACCEPT: return "accept";
    case ESC_FINAL: return "final";
    case ESC_NEXT_TIER: return "next_tier";
    case ESC_KEEP_BEST: return "keep_best";
    case ESC_FAIL: return "fail";
    }
    return "?";
}
