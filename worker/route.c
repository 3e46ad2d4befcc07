#include "route.h"

#include "batch.h"
#include "check.h"
#include "cost.h"
#include "escalate.h"
#include "ledger.h"
#include "log.h"
#include "prompt.h"
#include "utf8.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_last_tier(const Call *c) { return c->tier + 1 >= c->kind->ntiers; }

static OaiMaxTokensField max_tokens_field(const TqModel *m)
{
    return m->max_tokens_field == TQ_MAXTOK_MAX_COMPLETION_TOKENS ? OAI_MAX_COMPLETION_TOKENS : OAI_MAX_TOKENS;
}

static OaiSystemAs system_as(const TqModel *m)
{
    return m->system_as == TQ_SYSTEM_AS_USER ? OAI_SYSTEM_IN_USER
           : m->system_as == TQ_SYSTEM_OMIT  ? OAI_SYSTEM_OMIT
                                             : OAI_SYSTEM_MESSAGE;
}

static int build_judge_body(Call *c, const TqModel *m, Buf *out, TqErr *err)
{
    const CallJob *cj = &c->jobs[0];
    Buf sys, user, extra;
    buf_init(&sys, 0);
    buf_init(&user, 0);
    buf_init(&extra, 0);
    /* the prompt as this tier answered it (a compressed one, or the original) */
    int rc = check_judge_prompt(call_job_prompt(c, cj, NULL), c->pending_answer ? c->pending_answer : "", &sys, &user);
    if (rc)
        tq_err(err, rc, "cannot build the judge prompt");
    if (!rc)
        rc = prompt_extra_body(m, c->kind, cj, &extra, err);
    if (!rc) {
        OaiRequest r = {.model = m->api_model, .system = sys.data, .user = user.data, .user_len = user.len,
                        .max_tokens = 8, .max_tokens_field = max_tokens_field(m), .temperature = 0,
                        .system_as = system_as(m), .extra_members = extra.data};
        c->sent_max_tokens = 8;
        c->max_tokens_capped = false;
        rc = oai_build_request(&r, out, err);
    }
    buf_free(&sys);
    buf_free(&user);
    buf_free(&extra);
    return rc;
}

/* The compression request (README "Context compression"): a fixed instruction, the question when the
 * kind's compression is question-aware, the document. */
static int build_compress_body(Call *c, const TqModel *m, Buf *out, TqErr *err)
{
    int target = c->kind->compress.target_tokens;
    Buf sys, user;
    buf_init(&sys, 0);
    buf_init(&user, 0);
    int rc = buf_printf(&sys, "You shorten documents for another model that must answer from them. Rewrite the document"
                              " below in at most %d tokens. Keep every name, number, date, quantity, identifier and claim"
                              " exactly as written; drop repetition, boilerplate and formatting. Do not answer any"
                              " question and do not add anything. Output only the shortened document.", target);
    if (!rc && c->compress_question)
        rc = buf_puts(&user, "Question the document must still answer: ") || buf_puts(&user, c->compress_question) ||
             buf_puts(&user, "\n\n");
    if (!rc)
        rc = buf_puts(&user, "Document:\n") || buf_puts(&user, c->compress_input ? c->compress_input : "");
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    } else {
        int64_t input = oai_estimate_tokens(user.data, user.len) + oai_estimate_tokens(sys.data, sys.len);
        bool capped = false;
        /* room past the target (models overshoot a little); an answer cut at the limit is not used */
        int64_t max_tokens = prompt_max_tokens(m, (int64_t)target + target / 2 + 16, input, &capped);
        OaiRequest r = {.model = m->api_model, .system = sys.data, .system_len = sys.len, .user = user.data,
                        .user_len = user.len, .max_tokens = max_tokens, .max_tokens_field = max_tokens_field(m),
                        .temperature = 0, .system_as = system_as(m)};
        c->sent_max_tokens = max_tokens;
        c->max_tokens_capped = capped;
        rc = oai_build_request(&r, out, err);
    }
    buf_free(&sys);
    buf_free(&user);
    return rc;
}

int route_build_body(Call *c, Buf *out, TqErr *err)
{
    if (c->batched && c->phase == CALL_PHASE_ANSWER)
        return batch_build_body(c, out, err);
    const TqModel *m = &c->cfg->models[c->send_model];
    if (c->phase == CALL_PHASE_JUDGE)
        return build_judge_body(c, m, out, err);
    if (c->phase == CALL_PHASE_COMPRESS)
        return build_compress_body(c, m, out, err);
    CallJob *cj = &c->jobs[0];
    Buf sys, user, extra;
    buf_init(&sys, 0);
    buf_init(&user, 0);
    buf_init(&extra, 0);
    bool has_system = false;
    int rc = prompt_system(c->kind, cj, &sys, &has_system, err);
    int64_t saved_context = 0, saved_prompt = 0;
    const char *context = call_job_context(c, cj, &saved_context);
    const char *prompt = call_job_prompt(c, cj, &saved_prompt);
    int64_t saved = saved_context + saved_prompt;
    if (!rc && context && *context &&
        (buf_puts(&user, "Context:\n") || buf_puts(&user, context) || buf_puts(&user, "\n\n")))
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    if (!rc && saved > 0 && c->phase != CALL_PHASE_SHADOW) {
        /* every request that carries the shorter context is billed for fewer input tokens */
        cj->compress_tokens_saved += saved;
        cj->compress_saved_pico = cost_add(cj->compress_saved_pico, cost_of_call(&m->prices, saved, 0, 0));
    }
    if (!rc && buf_puts(&user, prompt))
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    if (!rc)
        rc = prompt_extra_body(m, c->kind, cj, &extra, err);
    if (!rc) {
        int64_t input = oai_estimate_tokens(user.data, user.len) + (has_system ? oai_estimate_tokens(sys.data, sys.len) : 0);
        bool capped = false;
        int64_t max_tokens = prompt_max_tokens(m, cj->max_tokens, input, &capped);
        OaiRequest r = {
            .model = m->api_model,
            .system = has_system ? (sys.data ? sys.data : "") : NULL,
            .system_len = sys.len,
            .user = user.data,
            .user_len = user.len,
            .max_tokens = max_tokens,
            .max_tokens_field = max_tokens_field(m),
            .temperature = cj->temperature,
            .logprobs = m->logprobs && c->kind->checks.logprobs,
            .system_as = system_as(m),
            .extra_members = extra.data,
        };
        if (has_system && sys.len == 0)
            r.system = NULL; /* an empty system prompt is no system message */
        if (c->phase == CALL_PHASE_SAMPLE) {
            /* An independent second answer: sampled warm, with its own seed, no logprobs needed. */
            r.temperature = cj->temperature > 0.7 ? cj->temperature : 0.7;
            r.has_seed = true;
            r.seed = 7919 + c->tier;
            r.logprobs = false;
        }
        c->sent_max_tokens = max_tokens;
        c->max_tokens_capped = capped;
        rc = oai_build_request(&r, out, err);
    }
    buf_free(&sys);
    buf_free(&user);
    buf_free(&extra);
    return rc;
}

/* ---- outcomes ---------------------------------------------------------------------------------- */

static void complete_job(const Call *c, CallJob *cj, char *answer, double score, int tier, int model,
                         const char *reason)
{
    cj->outcome = CALL_JOB_DONE;
    free(cj->result);
    cj->result = answer;
    cj->quality = score;
    cj->reason = reason;
    cj->answer_tier = tier;
    cj->answer_model = model;
    /* answered by a fallback of its tier (the tier's model was unavailable): said so in the reason;
     * the model and tier columns say who and where */
    if (c->kind->pinned_model < 0 && tier >= 0 && tier < c->kind->ntiers && model != c->kind->tiers[tier].model &&
        strcmp(reason, "escalation_failed") != 0)
        cj->reason = "fallback";
    /* The baseline: the first answer's tokens on the kind's baseline model, none cached. */
    cj->baseline_pico =
        cost_of_call(&c->cfg->models[c->kind->baseline_model].prices, cj->first_prompt_tokens, 0, cj->first_output_tokens);
}

/* No usable answer: the job fails for good (another attempt would meet the same answer). */
static void fail_job(CallJob *cj, const char *reason, const char *detail)
{
    cj->outcome = CALL_JOB_FAIL;
    cj->reason = reason;
    free(cj->error);
    cj->error = strdup(detail && *detail ? detail : reason);
    cj->retryable = false;
    cj->retry_after_ms = 0;
}

/* Remember a usable answer under the bar: it is kept if escalation stops early. */
static void keep_best(CallJob *cj, const char *answer, double score, int tier, int model)
{
    if (score <= cj->best_score && cj->best_answer)
        return;
    char *copy = strdup(answer);
    if (!copy)
        return;
    free(cj->best_answer);
    cj->best_answer = copy;
    cj->best_score = score;
    cj->best_tier = tier;
    cj->best_model = model;
}

/* Estimated picodollars of asking tier t (and its judge), from the tokens of the answer in hand. */
static int64_t estimate_tier(const Call *c, int t, int64_t tokens_in, int64_t tokens_out)
{
    const TqConfig *cfg = c->cfg;
    const TqModel *m = &cfg->models[c->kind->tiers[t].model];
    int64_t out = tokens_out > 0 ? tokens_out : 1;
    int64_t est = cost_of_call(&m->prices, tokens_in, 0, out);
    if (c->kind->checks.judge_model >= 0)
        est += cost_of_call(&cfg->models[c->kind->checks.judge_model].prices, tokens_in + out + 64, 0, 4);
    return est;
}

/* Charge a job its share of an exchange: what its budget counts, and what a cached answer keeps as
 * the price of producing it. */
static void add_spent(CallJob *cj, int64_t pico, int64_t tokens_in, int64_t tokens_out)
{
    cj->spent_pico = cost_add(cj->spent_pico, pico);
    cj->spent_tokens_in += tokens_in;
    cj->spent_tokens_out += tokens_out;
}

static int64_t budget_left(const Call *c, const CallJob *cj)
{
    int64_t micro = cj->job->max_budget_micro > 0 ? cj->job->max_budget_micro : c->kind->max_budget_micro;
    if (micro <= 0)
        return INT64_MAX;
    if (micro > 1000000000000LL) /* a million dollars: the CHECK's bound, whatever a row holds */
        micro = 1000000000000LL;
    return cost_add(micro * 1000000, -cost_add(cj->job->cost_so_far_pico, cj->spent_pico));
}

/* One scored answer of one job (alone or a batch item). Completes or fails the job, or returns
 * ESC_NEXT_TIER for the caller to move it up. Takes ownership of answer. */
static EscAction decide_job(Call *c, CallJob *cj, char *answer, const CheckResult *res, int64_t tokens_in,
                            int64_t tokens_out, const char **reason)
{
    const TqTier *tier = &c->kind->tiers[c->tier];
    bool usable = !res->gate_failed;
    /* A later tier's answer that agrees with the best earlier answer may pass a lower bar: two
     * models saying the same thing is a signal of its own (accept_if_agrees, chosen by calibrate). */
    bool agrees = usable && !isnan(tier->accept_if_agrees) && cj->best_answer && !c->all_tiers &&
                  check_samples_agree(answer, cj->best_answer);
    if (usable)
        keep_best(cj, answer, res->score, c->tier, c->model);
    bool last = is_last_tier(c);
    EscInput in = {
        .score = res->score,
        .usable = usable,
        .gate_reason = res->reason,
        .accept = agrees && tier->accept_if_agrees < tier->accept ? tier->accept_if_agrees : tier->accept,
        .last_tier = last,
        .all_tiers = c->all_tiers,
        .has_best = cj->best_answer != NULL,
        .budget_left_pico = budget_left(c, cj),
        .next_tier_cost_pico = last ? 0 : estimate_tier(c, c->tier + 1, tokens_in, tokens_out),
    };
    EscDecision d = escalate_decide(&in);
    if (d.action == ESC_ACCEPT && agrees && !(res->score >= tier->accept))
        d.reason = "agreed"; /* passed only the lower bar */
    *reason = d.reason;
    switch (d.action) {
    case ESC_ACCEPT:
    case ESC_FINAL:
        complete_job(c, cj, answer, res->score, c->tier, c->model, d.reason);
        return d.action;
    case ESC_KEEP_BEST:
        free(answer);
        complete_job(c, cj, cj->best_answer, cj->best_score, cj->best_tier, cj->best_model, d.reason);
        cj->best_answer = NULL;
        return d.action;
    case ESC_FAIL:
        free(answer);
        if (strcmp(d.reason, "budget") == 0)
            fail_job(cj, d.reason, "the job's budget ran out before any tier gave a usable answer");
        else
            fail_job(cj, d.reason, res->detail);
        return d.action;
    case ESC_NEXT_TIER:
        free(answer);
        cj->escalations++;
        return d.action;
    }
    free(answer);
    return ESC_FAIL;
}

/* A soft signal the kind relies on did not come: say so once per model (a provider that stops
 * returning logprobs must not switch the gate off unnoticed) and remember it in the ledger row. */
static void note_missing(const Call *c, LedgerRow *row, unsigned missing)
{
    if (!missing)
        return;
    row->missing_signals |= missing;
    char names[64], key[200];
    check_signal_names(missing, names, sizeof names);
    const TqModel *m = &c->cfg->models[c->model];
    snprintf(key, sizeof key, "missing:%s:%s:%s", c->kind->name, m->name, names);
    if (log_first_time(key))
        log_msg(LOG_WARN, "route",
                "kind %s on model %s: answers come without %s; they are scored as missing that signal "
                "(checks.missing_signal %s)",
                c->kind->name, m->name, names,
                c->kind->checks.missing_signal == CHECK_MISSING_OTHER_CHECKS ? "other_checks" : "escalate");
}

/* ---- single answers ---------------------------------------------------------------------------- */

/* Reset the call to send again (next tier or a verification request): the body is rebuilt. */
static RouteAction send_again(Call *c)
{
    c->tries = 0;
    return ROUTE_SEND;
}

/* Verification requests are worth paying for only when the answer could still escalate (or, in an
 * all-tiers run or for a job pinned to one model, to record the answer's score: a bake-off's
 * verdict where there is no gold answer). */
static bool may_escalate(const Call *c) { return c->all_tiers || c->kind->score_final || !is_last_tier(c); }
static bool wants_sample(const Call *c) { return c->kind->checks.agreement && may_escalate(c); }
static bool wants_judge(const Call *c) { return c->kind->checks.judge_model >= 0 && may_escalate(c); }

/* What the checks see of the job's answer: the kind's checks, the job's own labels. */
static CheckInput check_input_job(const Call *c, const CallJob *cj, const char *answer, const char *finish,
                                  const OaiLogprobs *lp, double judge, const char *sample)
{
    return (CheckInput){
        .checks = &c->kind->checks,
        .labels = (const char *const *)cj->labels,
        .nlabels = cj->nlabels,
        .content = answer,
        .content_len = strlen(answer),
        .finish_reason = finish,
        .logprobs = lp,
        .judge_score = judge,
        .second_sample = sample,
        /* on the last tier no judge or sample is asked for: its answer is final anyway */
        .not_asked = (wants_judge(c) ? 0u : CHECK_SIGNAL_JUDGE) | (wants_sample(c) ? 0u : CHECK_SIGNAL_AGREEMENT),
    };
}

/* Check an answer; a matched label replaces the answer by its canonical form. A check that cannot
 * run (a bug: config_load validates what it needs) counts as a failed gate. */
static void score_answer(const CheckInput *in, char **answer, CheckResult *res)
{
    TqErr err = {0};
    if (check_answer(in, res, &err) != 0) {
        memset(res, 0, sizeof *res);
        res->gate_failed = true;
        res->reason = "check_error";
        char why[152];
        utf8_copy_cut(why, sizeof why, err.msg, strlen(err.msg));
        snprintf(res->detail, sizeof res->detail, "the answer could not be checked: %s", why);
        return;
    }
    if (res->canonical) {
        free(*answer);
        *answer = res->canonical;
        res->canonical = NULL;
    }
}

/* Whether an answer says the context does not hold what was asked ("The document does not state
 * this."). Lower-case phrases, matched anywhere in a short answer. */
static bool says_not_in_context(const char *answer)
{
    static const char *const phrases[] = {"does not state", "not stated", "does not mention", "not mentioned",
                                          "does not say", "no information", "not provided", "not specified",
                                          "does not specify", "cannot be determined", "not found in the",
                                          "not in the context", "not in the document", "is not given", NULL};
    size_t n = strlen(answer);
    if (n == 0 || n > 300)
        return false;
    char low[301];
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)(answer[i] >= 'A' && answer[i] <= 'Z' ? answer[i] - 'A' + 'a' : answer[i]);
    for (const char *const *p = phrases; *p; p++)
        if (strstr(low, *p))
            return true;
    return false;
}

/* An answer from a compressed context that says the context lacks the answer is not believed: the
 * fact may be what the compression dropped (README "Context compression", guard). The same tier is
 * asked again with the original context (once). Returns true when it is. */
static bool reask_with_original(Call *c, LedgerRow *row, const char *answer)
{
    CallJob *cj = &c->jobs[0];
    const QueueJob *job = cj->job;
    if (c->phase != CALL_PHASE_ANSWER || c->batched || !job || cj->use_original)
        return false;
    /* a shorter text went with this request */
    bool shorter = (job->original_context && call_job_context(c, cj, NULL) != job->original_context) ||
                   (job->original_prompt && call_job_prompt(c, cj, NULL) != job->original_prompt);
    if (!shorter || !says_not_in_context(answer))
        return false;
    cj->use_original = true;
    row->reason = "not_in_compressed_context";
    if (!row->error)
        row->error = strdup("the answer says the compressed context lacks it: the same tier is asked again with the original");
    return true;
}

/* The single job's answer has its final score: record it, then accept, escalate or stop. */
static RouteAction decide(Call *c, LedgerRow *answer_row, char *answer, const CheckResult *res)
{
    CallJob *cj = &c->jobs[0];
    answer_row->score = res->score;
    if (res->gate_failed && !answer_row->error)
        answer_row->error = strdup(res->detail); /* why the answer was not good enough */
    note_missing(c, answer_row, res->missing);
    if (c->all_tiers) {
        free(answer_row->answer);
        answer_row->answer = strdup(answer);
    }
    const char *reason = "escalated";
    EscAction a = decide_job(c, cj, answer, res, answer_row->tokens_in, answer_row->tokens_out, &reason);
    answer_row->reason = reason;
    if (a != ESC_NEXT_TIER)
        return ROUTE_FINISH;
    c->tier++;
    c->model = c->kind->tiers[c->tier].model;
    c->send_model = c->model;
    c->phase = CALL_PHASE_ANSWER;
    return send_again(c);
}

/* After step `from`, send the next verification request the kind asks for, or score and decide
 * with every signal gathered. */
static RouteAction verify_next(Call *c, CallPhase from)
{
    if (from == CALL_PHASE_ANSWER && wants_sample(c)) {
        c->phase = CALL_PHASE_SAMPLE;
        c->send_model = c->model;
        return send_again(c);
    }
    if (from != CALL_PHASE_JUDGE && wants_judge(c)) {
        c->phase = CALL_PHASE_JUDGE;
        c->send_model = c->kind->checks.judge_model;
        return send_again(c);
    }
    LedgerRow *answer_row = &c->rows[c->pending_row];
    char *answer = c->pending_answer;
    char *finish = c->pending_finish;
    char *sample = c->pending_sample;
    c->pending_answer = c->pending_finish = c->pending_sample = NULL;
    c->phase = CALL_PHASE_ANSWER;
    c->send_model = c->model;
    CheckInput in = check_input_job(c, &c->jobs[0], answer, finish, &c->pending_logprobs, c->pending_judge, sample);
    CheckResult res;
    score_answer(&in, &answer, &res);
    RouteAction a = decide(c, answer_row, answer, &res);
    check_result_free(&res);
    free(finish);
    free(sample);
    return a;
}

/* A single job's exchange: the whole charge is its. */
static void account(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    CallJob *cj = &c->jobs[0];
    ledger_usage(&c->cfg->models[c->send_model].prices, resp, request_body, row);
    row->status = "ok";
    ledger_charge_one(row, cj->job->id);
    add_spent(cj, row->cost_pico, row->tokens_in, row->tokens_out);
    if (c->phase == CALL_PHASE_ANSWER && cj->first_prompt_tokens == 0) {
        cj->first_prompt_tokens = row->tokens_in;
        cj->first_output_tokens = row->tokens_out;
    }
}

/* ---- batched answers --------------------------------------------------------------------------- */

/* Indices of the jobs still in the call. */
static int live_jobs(const Call *c, int *idx)
{
    int m = 0;
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job)
            idx[m++] = i;
    return m;
}

static void add_fork(Call *c, Call *f)
{
    if (!f)
        return;
    f->next = c->forks;
    c->forks = f;
}

/* A batched exchange is charged to its live jobs: input by each item's share of the prompt (the
 * shared system prompt evenly), output by each item's share of the answer (an item that came back
 * unusable weighs as much as its prompt: it was written, whatever it holds). */
static void account_batch(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body,
                          const BatchItem *items, bool split_ok)
{
    ledger_usage(&c->cfg->models[c->send_model].prices, resp, request_body, row);
    row->status = "ok";
    int n = c->njobs;
    int64_t *in_w = calloc((size_t)n, sizeof *in_w), *out_w = calloc((size_t)n, sizeof *out_w);
    int64_t *ids = calloc((size_t)n, sizeof *ids), *parts = calloc((size_t)n, sizeof *parts);
    int *idx = calloc((size_t)n, sizeof *idx);
    if (in_w && out_w && ids && parts && idx) {
        batch_weights(c, in_w);
        int live = live_jobs(c, idx);
        for (int k = 0; k < live; k++) {
            int i = idx[k];
            ids[k] = c->jobs[i].job->id;
            in_w[k] = in_w[i];
            const BatchItem *it = split_ok ? &items[i] : NULL;
            out_w[k] = it && it->answer ? oai_estimate_tokens(it->answer, strlen(it->answer)) + 1 : in_w[k];
        }
        if (live > 0 && ledger_charge_shares(row, &c->cfg->models[c->send_model].prices, ids, in_w, out_w, live, parts) == 0)
            for (int k = 0; k < live; k++) {
                const LedgerCharge *ch = k < row->ncharges && row->charges[k].job_id == ids[k] ? &row->charges[k] : NULL;
                add_spent(&c->jobs[idx[k]], parts[k], ch ? ch->tokens_in : 0, ch ? ch->tokens_out : 0);
            }
    }
    free(in_w);
    free(out_w);
    free(ids);
    free(parts);
    free(idx);
}

/* How the adaptive batch size learns from this batch: only a malformed answer shrinks it. */
static void batch_verdict(Call *c, CallBatchVerdict v)
{
    if (c->batch_verdict != CALL_BATCH_MALFORMED)
        c->batch_verdict = v;
}

/* Split a batched answer by id and route every item as if it had been asked alone. */
static RouteAction route_batch_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    int n = c->njobs;
    int *idx = calloc((size_t)n, sizeof *idx);
    int *alone = calloc((size_t)n, sizeof *alone);
    int *up = calloc((size_t)n, sizeof *up);
    BatchItem *items = calloc((size_t)n, sizeof *items);
    if (!idx || !alone || !up || !items) {
        free(idx);
        free(alone);
        free(up);
        free(items);
        ledger_usage(&c->cfg->models[c->send_model].prices, resp, request_body, row);
        return ROUTE_FINISH; /* jobs stay pending: their leases expire and they are retried */
    }
    row->reason = "answered";
    int live = live_jobs(c, idx);
    int unknown = 0, nalone = 0, nup = 0;
    TqErr err = {0};
    const char *content = resp->content ? resp->content : "";
    int split = batch_split_answers(content, strlen(content), n, items, &unknown, &err);
    account_batch(c, row, resp, request_body, items, split == 0);
    if (split != 0) {
        /* Nothing in it can be trusted: re-send each half as its own batch (or alone). */
        row->reason = "batch_unparsable";
        row->error = strdup(err.msg);
        batch_verdict(c, CALL_BATCH_MALFORMED);
        add_fork(c, call_fork(c, idx, live / 2, c->tier));
        add_fork(c, call_fork(c, idx + live / 2, live - live / 2, c->tier));
        goto done;
    }
    batch_verdict(c, CALL_BATCH_CLEAN);
    /* what each job would have sent alone: the system prompt as filled in for these jobs */
    int64_t sys_tokens = live > 0 ? prompt_system_tokens(c->kind, &c->jobs[idx[0]]) : 0;
    const TqModel *m = &c->cfg->models[c->send_model];
    for (int k = 0; k < live; k++) {
        int i = idx[k];
        CallJob *cj = &c->jobs[i];
        BatchItem *it = &items[i];
        if (it->problem) {
            batch_verdict(c, CALL_BATCH_MALFORMED);
            alone[nalone++] = i;
            continue;
        }
        /* What this job would have used alone: the baseline's basis and the savings estimate. */
        int64_t p_in = sys_tokens + oai_estimate_tokens(cj->job->prompt, strlen(cj->job->prompt)) + 4;
        int64_t p_out = oai_estimate_tokens(it->answer, strlen(it->answer)) + 1;
        if (cj->first_prompt_tokens == 0) {
            cj->first_prompt_tokens = p_in;
            cj->first_output_tokens = p_out;
        }
        row->solo_pico += cost_of_call(&m->prices, p_in, 0, p_out);
        row->solo_tokens_in += p_in;
        OaiLogprobs lp;
        oai_logprobs_in_range(resp, it->start, it->end, &lp);
        CheckInput in = check_input_job(c, cj, it->answer, resp->finish_reason, &lp, NAN, NULL);
        in.refusal = resp->refusal;
        char *answer = it->answer;
        it->answer = NULL;
        CheckResult res;
        score_answer(&in, &answer, &res);
        note_missing(c, row, res.missing);
        const char *reason = NULL;
        if (decide_job(c, cj, answer, &res, p_in, p_out, &reason) == ESC_NEXT_TIER)
            up[nup++] = i;
        check_result_free(&res);
    }
    if (nalone)
        row->error = strdup("some items came back missing, duplicated or malformed: re-sent alone");
    for (int k = 0; k < nalone; k++)
        add_fork(c, call_fork(c, &alone[k], 1, c->tier));
    if (nup)
        add_fork(c, call_fork(c, up, nup, c->tier + 1));
done:
    batch_items_free(items, n);
    free(items);
    free(idx);
    free(alone);
    free(up);
    return c->forks ? ROUTE_FORK : ROUTE_FINISH;
}

/* ---- entry points ------------------------------------------------------------------------------ */

/* The baseline model's answer for a job a cheaper tier answered: kept in the row (compared with the
 * job's result when the estimate is read), its cost in the ledger and charged to no job. */
static RouteAction shadow_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    ledger_usage(&c->cfg->models[c->send_model].prices, resp, request_body, row);
    row->status = "ok";
    row->reason = "shadow";
    free(row->answer);
    row->answer = resp->content ? resp->content : strdup("");
    resp->content = NULL;
    return ROUTE_FINISH;
}

/* ---- compression ------------------------------------------------------------------------------- */

/* A compression exchange is charged to the jobs it served in equal shares: they asked for the same
 * document. */
static void account_compress(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    const CostPrices *prices = &c->cfg->models[c->send_model].prices;
    ledger_usage(prices, resp, request_body, row);
    int n = c->njobs;
    int64_t *ids = calloc((size_t)n, sizeof *ids), *w = calloc((size_t)n, sizeof *w), *parts = calloc((size_t)n, sizeof *parts);
    int *idx = calloc((size_t)n, sizeof *idx);
    int live = 0;
    for (int i = 0; ids && w && parts && idx && i < n; i++)
        if (c->jobs[i].job && c->jobs[i].outcome == CALL_JOB_PENDING) {
            idx[live] = i;
            ids[live] = c->jobs[i].job->id;
            w[live++] = 1;
        }
    if (live > 0 && ledger_charge_shares(row, prices, ids, w, w, live, parts) == 0)
        for (int k = 0; k < live; k++) {
            const LedgerCharge *ch = k < row->ncharges ? &row->charges[k] : NULL;
            add_spent(&c->jobs[idx[k]], parts[k], ch ? ch->tokens_in : 0, ch ? ch->tokens_out : 0);
        }
    free(ids);
    free(w);
    free(parts);
    free(idx);
}

/* What came back is used only when it is a shorter document: not empty, not a refusal, not cut off
 * at the output limit, fewer tokens than the input. Otherwise the cleaned original goes on. */
static RouteAction compress_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    account_compress(c, row, resp, request_body);
    row->status = "ok";
    const char *text = resp->content ? resp->content : "";
    text += strspn(text, " \t\r\n");
    size_t len = strlen(text);
    while (len && strchr(" \t\r\n", text[len - 1]))
        len--;
    int64_t tokens = oai_estimate_tokens(text, len);
    static const char *const refusals[] = {"I can't", "I cannot", "I'm sorry", "I am sorry", "Sorry,", "I won't", NULL};
    bool refused = resp->refusal && *resp->refusal;
    for (const char *const *p = refusals; !refused && *p && len < 400; p++)
        refused = strncmp(text, *p, strlen(*p)) == 0;
    if (len == 0)
        c->compress_failure = "compress_empty";
    else if (refused)
        c->compress_failure = "compress_refused";
    else if (resp->finish_reason && strcmp(resp->finish_reason, "length") == 0)
        c->compress_failure = "compress_cut_off";
    else if (tokens >= c->compress_tokens_before)
        c->compress_failure = "compress_not_shorter";
    else if (!(c->compress_output = strndup(text, len)))
        c->compress_failure = "compress_no_memory";
    if (c->compress_output) {
        c->compress_tokens_after = (int)tokens;
        row->reason = "compressed";
    } else {
        row->reason = c->compress_failure;
        char msg[200];
        snprintf(msg, sizeof msg, "%s: the compressor's output (%lld tokens from %d) was not used; the cleaned original"
                                  " context was sent", c->compress_failure, (long long)tokens, c->compress_tokens_before);
        row->error = strdup(msg);
    }
    return ROUTE_FINISH;
}

RouteAction route_on_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    row->max_tokens = c->sent_max_tokens;
    row->max_tokens_capped = c->max_tokens_capped;
    if (c->phase == CALL_PHASE_COMPRESS)
        return compress_response(c, row, resp, request_body);
    if (c->phase == CALL_PHASE_SHADOW)
        return shadow_response(c, row, resp, request_body);
    if (c->batched && c->phase == CALL_PHASE_ANSWER)
        return route_batch_response(c, row, resp, request_body);
    account(c, row, resp, request_body);
    if (c->phase == CALL_PHASE_JUDGE) {
        row->reason = "judged";
        double judge = NAN;
        if (check_parse_judge(resp->content, &judge) != 0) {
            judge = NAN; /* no verdict: a missing signal, never a pass */
            row->error = strdup("the judge gave no verdict");
        }
        row->score = judge;
        c->pending_judge = judge;
        return verify_next(c, CALL_PHASE_JUDGE);
    }
    if (c->phase == CALL_PHASE_SAMPLE) {
        row->reason = "sampled";
        c->pending_sample = resp->content ? resp->content : strdup("");
        resp->content = NULL;
        return verify_next(c, CALL_PHASE_SAMPLE);
    }
    row->reason = "answered";
    char *answer = resp->content;
    resp->content = NULL;
    if (!answer && !(answer = strdup("")))
        return ROUTE_FINISH;
    /* Gates first: an answer that fails a hard gate is not worth sampling again or judging. */
    CheckInput in = check_input_job(c, &c->jobs[0], answer, resp->finish_reason, &resp->logprobs, NAN, NULL);
    in.refusal = resp->refusal;
    in.has_reasoning = resp->has_reasoning;
    in.not_asked |= CHECK_SIGNAL_JUDGE | CHECK_SIGNAL_AGREEMENT; /* not gathered yet: scored below */
    if (reask_with_original(c, row, answer)) {
        free(answer);
        return send_again(c);
    }
    CheckResult res;
    score_answer(&in, &answer, &res);
    if (res.gate_failed || (!wants_sample(c) && !wants_judge(c))) {
        RouteAction a = decide(c, row, answer, &res);
        check_result_free(&res);
        return a;
    }
    check_result_free(&res);
    c->pending_answer = answer;
    c->pending_finish = strdup(resp->finish_reason ? resp->finish_reason : "stop");
    c->pending_logprobs = resp->logprobs;
    c->pending_row = (int)(row - c->rows);
    c->pending_judge = NAN;
    c->pending_sample = NULL;
    return verify_next(c, CALL_PHASE_ANSWER);
}

/* Failures a smaller batch may not meet: the batch as a whole was too big: it goes out again in
 * halves. A transient failure (429, 5xx, timeouts) is not the batch's fault: once its tries are
 * spent its jobs go back to the queue together, never split into more requests that would ignore
 * the provider's retry-after. Any other failure (a 400 for one poisonous item, a gateway refusing
 * everything) sends each item alone, so no job fails for a neighbour's sake. */
static bool batch_too_big(const char *reason)
{
    return strcmp(reason, "context_length_exceeded") == 0 || strcmp(reason, "payload_too_large") == 0 ||
           strcmp(reason, "response_too_large") == 0;
}

RouteAction route_on_failure(Call *c, const char *reason, bool retryable)
{
    CallJob *cj = &c->jobs[0];
    if (c->phase == CALL_PHASE_COMPRESS) {
        (void)retryable;
        c->compress_failure = reason; /* the jobs go on with the cleaned original */
        return ROUTE_FINISH;
    }
    if (c->phase == CALL_PHASE_SHADOW)
        return ROUTE_FINISH; /* no comparison this time; the job is done whatever happens here */
    if (c->batched && c->phase == CALL_PHASE_ANSWER && retryable)
        return ROUTE_FAIL; /* back to the queue together (after the tries, with the backoff) */
    if (c->batched && c->phase == CALL_PHASE_ANSWER) {
        int *idx = calloc((size_t)c->njobs, sizeof *idx);
        int live = idx ? live_jobs(c, idx) : 0;
        /* a failed request is not a malformed answer: the adaptive batch size stays where it is */
        batch_verdict(c, CALL_BATCH_NEUTRAL);
        if (live >= 2 && batch_too_big(reason)) {
            add_fork(c, call_fork(c, idx, live / 2, c->tier));
            add_fork(c, call_fork(c, idx + live / 2, live - live / 2, c->tier));
        } else if (live >= 2) {
            for (int k = 0; k < live; k++)
                add_fork(c, call_fork(c, &idx[k], 1, c->tier));
        }
        free(idx);
        if (c->forks)
            return ROUTE_FORK;
    }
    if (c->phase == CALL_PHASE_JUDGE) {
        /* No verdict: the judge signal is missing (scored as the kind's missing_signal says). */
        c->pending_judge = NAN;
        return verify_next(c, CALL_PHASE_JUDGE);
    }
    if (c->phase == CALL_PHASE_SAMPLE) {
        /* No second sample: the agreement signal is missing. */
        free(c->pending_sample);
        c->pending_sample = NULL;
        return verify_next(c, CALL_PHASE_SAMPLE);
    }
    if (c->tier > 0 && !is_last_tier(c) && !c->all_tiers) {
        /* Escalating, and this tier could not be asked (its provider is down, out of quota,
         * refusing): the job wanted a better answer than it has, so it asks the tier above rather
         * than settling for one under the bar. */
        cj->escalations++;
        c->tier++;
        c->model = c->kind->tiers[c->tier].model;
        c->send_model = c->model;
        c->phase = CALL_PHASE_ANSWER;
        return send_again(c);
    }
    if (cj->best_answer) {
        /* the last tier could not be asked: the best usable earlier answer, marked as such */
        complete_job(c, cj, cj->best_answer, cj->best_score, cj->best_tier, cj->best_model, "escalation_failed");
        cj->best_answer = NULL;
        return ROUTE_FINISH;
    }
    return ROUTE_FAIL;
}

void route_charge_unanswered(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    row->max_tokens = c->sent_max_tokens;
    row->max_tokens_capped = c->max_tokens_capped;
    if (c->batched && c->phase == CALL_PHASE_ANSWER) {
        account_batch(c, row, resp, request_body, NULL, false);
    } else if (c->phase == CALL_PHASE_COMPRESS) {
        account_compress(c, row, resp, request_body);
    } else {
        ledger_usage(&c->cfg->models[c->send_model].prices, resp, request_body, row);
        if (c->phase == CALL_PHASE_SHADOW)
            return; /* shadow spend is charged to no job */
        ledger_charge_one(row, c->jobs[0].job->id);
        add_spent(&c->jobs[0], row->cost_pico, row->tokens_in, row->tokens_out);
    }
}
