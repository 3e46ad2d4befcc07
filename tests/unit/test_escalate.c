/* The one escalation policy, over a table of scores, bars, tiers and budgets: every row says what
 * a job's answer leads to and why. */
#include "../check.h"
#include "escalate.h"

#include <stdint.h>

#define NOBUDGET INT64_MAX

static void test_decisions_table(void)
{
    static const struct {
        const char *name;
        EscInput in;
        EscAction want;
        const char *reason;
    } rows[] = {
        /* name                        score usable gate      accept last  all    best  left      next  */
        {"confident, tier 1",          {0.95, true, NULL, 0.8, false, false, true, NOBUDGET, 10}, ESC_ACCEPT, "accepted"},
        {"exactly at the bar",         {0.80, true, NULL, 0.8, false, false, true, NOBUDGET, 10}, ESC_ACCEPT, "accepted"},
        {"under the bar",              {0.79, true, NULL, 0.8, false, false, true, NOBUDGET, 10}, ESC_NEXT_TIER, "escalated"},
        {"gate failed, bar 0",         {0.00, false, "truncated", 0.0, false, false, false, NOBUDGET, 10}, ESC_NEXT_TIER, "escalated"},
        {"last tier, low score",       {0.10, true, NULL, 0.0, true, false, true, NOBUDGET, 0}, ESC_FINAL, "final_tier"},
        {"last tier unusable, best",   {0.00, false, "refusal", 0.0, true, false, true, NOBUDGET, 0}, ESC_KEEP_BEST, "escalation_failed"},
        {"last tier unusable, none",   {0.00, false, "refusal", 0.0, true, false, false, NOBUDGET, 0}, ESC_FAIL, "refusal"},
        {"budget stops, best kept",    {0.50, true, NULL, 0.8, false, false, true, 5, 10}, ESC_KEEP_BEST, "budget"},
        {"budget stops, nothing",      {0.00, false, "label_not_allowed", 0.8, false, false, false, 5, 10}, ESC_FAIL, "budget"},
        {"budget just enough",         {0.50, true, NULL, 0.8, false, false, true, 10, 10}, ESC_NEXT_TIER, "escalated"},
        {"budget irrelevant: accept",  {0.90, true, NULL, 0.8, false, false, true, 0, 10}, ESC_ACCEPT, "accepted"},
        {"all tiers, not last",        {0.99, true, NULL, 0.8, false, true, true, NOBUDGET, 10}, ESC_NEXT_TIER, "all_tiers"},
        {"all tiers, last usable",     {0.10, true, NULL, 0.0, true, true, true, NOBUDGET, 0}, ESC_FINAL, "all_tiers"},
        {"all tiers, last unusable",   {0.00, false, "empty", 0.0, true, true, true, NOBUDGET, 0}, ESC_FAIL, "empty"},
        {"all tiers ignore budget",    {0.10, true, NULL, 0.8, false, true, true, 0, 10}, ESC_NEXT_TIER, "all_tiers"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        EscDecision d = escalate_decide(&rows[i].in);
        CHECKF(d.action == rows[i].want && strcmp(d.reason, rows[i].reason) == 0, "%s: got %s/%s, want %s/%s",
               rows[i].name, escalate_action_name(d.action), d.reason, escalate_action_name(rows[i].want),
               rows[i].reason);
    }
}

/* An unusable answer is never accepted, whatever the bar: a job is only done with a real answer. */
static void test_unusable_never_accepted(void)
{
    for (int b = 0; b <= 10; b++) {
        EscInput in = {.score = 1.0, .usable = false, .gate_reason = "tool_calls", .accept = b / 10.0,
                       .budget_left_pico = NOBUDGET};
        EscDecision d = escalate_decide(&in);
        CHECKF(d.action != ESC_ACCEPT && d.action != ESC_FINAL, "bar %.1f: %s", b / 10.0, escalate_action_name(d.action));
        in.last_tier = true;
        d = escalate_decide(&in);
        CHECKF(d.action == ESC_FAIL && strcmp(d.reason, "tool_calls") == 0, "last tier, bar %.1f: %s", b / 10.0,
               d.reason);
    }
}

int main(void)
{
    RUN(test_decisions_table);
    RUN(test_unusable_never_accepted);
    return check_done();
}
