#include "route.h"

#include "batch.h"
#include "check.h"
#include "cost.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_last_tier(const Call *c) { return c->tier + 1 >= c->kind->ntiers; }

int route_build_body(const Call *c, Buf *out, TqErr *err)
{
    if (c->batched && c->phase == CALL_PHASE_ANSWER)
        return batch_build_body(c, out, err);
    const TqModel *m = &c->cfg->models[c->send_model];
    const CallJob *cj = &c->jobs[0];
    const QueueJob *job = cj->job;
    OaiMaxTokensField field =
        m->max_tokens_field == TQ_MAXTOK_MAX_COMPLETION_TOKENS ? OAI_MAX_COMPLETION_TOKENS : OAI_MAX_TOKENS;
    if (c->phase == CALL_PHASE_JUDGE) {
        Buf sys, user;
        buf_init(&sys, 0);
        buf_init(&user, 0);
        int rc = check_judge_prompt(job->prompt, c->pending_answer ? c->pending_answer : "", &sys, &user);
        if (!rc) {
            OaiRequest r = {.model = m->api_model, .system = sys.data, .user = user.data, .user_len = user.len,
                            .max_tokens = 8, .max_tokens_field = field, .temperature = 0};
            rc = oai_build_request(&r, out, err);
        } else {
            tq_err(err, rc, "cannot build the judge prompt");
        }
        buf_free(&sys);
        buf_free(&user);
        return rc;
    }
    Buf user;
    buf_init(&user, 0);
    const char *text = job->prompt;
    size_t text_len = strlen(job->prompt);
    if (job->context && *job->context) {
        if (buf_puts(&user, "Context:\n") || buf_puts(&user, job->context) || buf_puts(&user, "\n\n") ||
            buf_puts(&user, job->prompt)) {
            buf_free(&user);
            return tq_err(err, TQ_ENOMEM, "out of memory");
        }
        text = user.data;
        text_len = user.len;
    }
    OaiRequest r = {
        .model = m->api_model,
        .system = job->system_prompt ? job->system_prompt : c->kind->system_prompt,
        .user = text,
        .user_len = text_len,
        .max_tokens = cj->max_tokens,
        .max_tokens_field = field,
        .temperature = cj->temperature,
        .logprobs = m->logprobs && c->kind->checks.logprobs,
    };
    if (c->phase == CALL_PHASE_SAMPLE) {
        /* An independent second answer: sampled warm, with its own seed, no logprobs needed. */
        r.temperature = cj->temperature > 0.7 ? cj->temperature : 0.7;
        r.has_seed = true;
        r.seed = 7919 + c->tier;
        r.logprobs = false;
    }
    int rc = oai_build_request(&r, out, err);
    buf_free(&user);
    return rc;
}

/* Tokens and cost of the exchange into its ledger row (usage as reported, or estimated from what
 * was sent and what came back when the provider sent none, and marked so). */
static void row_usage(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    const TqModel *m = &c->cfg->models[c->send_model];
    int64_t in = resp->usage.prompt_tokens, cached = resp->usage.cached_tokens, out = resp->usage.completion_tokens;
    if (!resp->usage.present) {
        in = oai_estimate_tokens(request_body->data, request_body->len);
        cached = 0;
        out = oai_estimate_tokens(resp->content, resp->content_len) + (int64_t)(resp->reasoning_bytes / 4);
        row->estimated = true;
    }
    row->status = "ok";
    row->tokens_in = in;
    row->tokens_cached = cached;
    row->tokens_out = out;
    row->tokens_reasoning = resp->usage.reasoning_tokens;
    row->cost_pico = cost_of_call(&m->prices, in, cached, out);
}

/* A single job's exchange: the whole charge is its. */
static void account(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    row_usage(c, row, resp, request_body);
    int64_t in = row->tokens_in, cached = row->tokens_cached, out = row->tokens_out;
    row->charges = calloc(1, sizeof *row->charges);
    if (row->charges) {
        row->ncharges = 1;
        row->charges[0] = (LedgerCharge){c->jobs[0].job->id, row->cost_pico, in, cached, out};
    }
    CallJob *cj = &c->jobs[0];
    cj->spent_pico += row->cost_pico;
    if (c->phase == CALL_PHASE_ANSWER && cj->first_prompt_tokens == 0) {
        cj->first_prompt_tokens = in;
        cj->first_output_tokens = out;
    }
}

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
    /* The baseline: the first answer's tokens on the kind's baseline model, none cached. */
    cj->baseline_pico =
        cost_of_call(&c->cfg->models[c->kind->baseline_model].prices, cj->first_prompt_tokens, 0, cj->first_output_tokens);
}

static void complete(Call *c, char *answer, double score, int tier, int model, const char *reason)
{
    complete_job(c, &c->jobs[0], answer, score, tier, model, reason);
}

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

/* Estimated picodollars of answering on tier t (+ its judge), from what the last answer used. */
static int64_t estimate_tier(const Call *c, int t, const LedgerRow *last)
{
    const TqConfig *cfg = c->cfg;
    const TqModel *m = &cfg->models[c->kind->tiers[t].model];
    int64_t out = last->tokens_out > 0 ? last->tokens_out : 1;
    int64_t est = cost_of_call(&m->prices, last->tokens_in, 0, out);
    if (c->kind->checks.judge_model >= 0)
        est += cost_of_call(&cfg->models[c->kind->checks.judge_model].prices, last->tokens_in + out + 64, 0, 4);
    return est;
}

static int64_t budget_pico_of(const Call *c, const QueueJob *job)
{
    int64_t micro = job->max_budget_micro > 0 ? job->max_budget_micro : c->kind->max_budget_micro;
    return micro > 0 ? micro * 1000000 : 0;
}

static int64_t budget_pico(const Call *c) { return budget_pico_of(c, c->jobs[0].job); }

/* Reset the call to send again (next tier or judge): the body is rebuilt from the new phase. */
static RouteAction send_again(Call *c)
{
    c->tries = 0;
    return ROUTE_SEND;
}

/* The answer of the current tier has its final score: accept, escalate, or stop at the budget. */
static RouteAction decide(Call *c, LedgerRow *answer_row, char *answer, double score)
{
    CallJob *cj = &c->jobs[0];
    const TqTier *tier = &c->kind->tiers[c->tier];
    int model = c->kind->tiers[c->tier].model;
    answer_row->score = score;
    if (c->all_tiers) {
        answer_row->reason = "all_tiers";
        free(answer_row->answer);
        answer_row->answer = strdup(answer);
        if (is_last_tier(c)) {
            complete(c, answer, score, c->tier, model, "all_tiers");
            return ROUTE_FINISH;
        }
    } else if (is_last_tier(c) || score >= tier->accept) {
        /* The last tier's answer is final whatever it scored; say which rule kept it. */
        answer_row->reason = is_last_tier(c) ? "final_tier" : "accepted";
        complete(c, answer, score, c->tier, model, answer_row->reason);
        return ROUTE_FINISH;
    } else {
        keep_best(cj, answer, score, c->tier, model);
        int64_t budget = budget_pico(c);
        if (budget > 0) {
            int64_t left = budget - cj->job->cost_so_far_pico - cj->spent_pico;
            if (estimate_tier(c, c->tier + 1, answer_row) > left) {
                answer_row->reason = "budget";
                free(answer);
                complete(c, cj->best_answer, cj->best_score, cj->best_tier, cj->best_model, "budget");
                cj->best_answer = NULL;
                return ROUTE_FINISH;
            }
        }
        answer_row->reason = "escalated";
    }
    free(answer);
    cj->escalations++;
    c->tier++;
    c->model = c->kind->tiers[c->tier].model;
    c->send_model = c->model;
    c->phase = CALL_PHASE_ANSWER;
    return send_again(c);
}

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
    };
}

static CheckInput check_input(const Call *c, const char *answer, const char *finish, const OaiLogprobs *lp,
                              double judge, const char *sample)
{
    return check_input_job(c, &c->jobs[0], answer, finish, lp, judge, sample);
}

/* Score *answer with in; a matched label replaces the answer by its canonical form. Unscorable
 * input (which cannot happen with a valid config) scores 0, so it escalates. */
static double score_answer(const CheckInput *in, char **answer)
{
    CheckResult res;
    TqErr err = {0};
    if (check_answer(in, &res, &err) != 0)
        return 0;
    double score = res.score;
    if (res.canonical) {
        free(*answer);
        *answer = res.canonical;
        res.canonical = NULL;
    }
    check_result_free(&res);
    return score;
}

static RouteAction score_and_decide(Call *c, LedgerRow *answer_row, char *answer, const char *finish,
                                    const OaiLogprobs *lp, double judge, const char *sample)
{
    CheckInput in = check_input(c, answer, finish, lp, judge, sample);
    double score = score_answer(&in, &answer);
    return decide(c, answer_row, answer, score);
}

/* Verification requests are worth paying for only when the answer could still escalate (or, in an
 * all-tiers run, to record every tier's score). */
static bool may_escalate(const Call *c) { return c->all_tiers || !is_last_tier(c); }
static bool wants_sample(const Call *c) { return c->kind->checks.agreement && may_escalate(c); }
static bool wants_judge(const Call *c) { return c->kind->checks.judge_model >= 0 && may_escalate(c); }

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
    RouteAction a = score_and_decide(c, answer_row, answer, finish ? finish : "stop", &c->pending_logprobs,
                                     c->pending_judge, sample);
    free(finish);
    free(sample);
    return a;
}

/* A batched exchange: tokens and cost go to its jobs by weight (the shared prompt evenly, each item by
 * its size), exactly: the parts always sum to the whole. */
static void account_batch(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body)
{
    row_usage(c, row, resp, request_body);
    int64_t in = row->tokens_in, cached = row->tokens_cached, out = row->tokens_out;
    int n = c->njobs;
    int64_t *w = calloc((size_t)n, sizeof *w);
    int64_t *part = calloc((size_t)n * 4, sizeof *part);
    row->charges = calloc((size_t)n, sizeof *row->charges);
    if (!w || !part || !row->charges) {
        free(w);
        free(part);
        free(row->charges);
        row->charges = NULL;
        return;
    }
    batch_weights(c, w);
    cost_apportion(row->cost_pico, w, part, n);
    cost_apportion(in, w, part + n, n);
    cost_apportion(cached, w, part + 2 * n, n);
    cost_apportion(out, w, part + 3 * n, n);
    int k = 0;
    for (int i = 0; i < n; i++) {
        CallJob *cj = &c->jobs[i];
        if (!cj->job)
            continue;
        row->charges[k++] = (LedgerCharge){cj->job->id, part[i], part[n + i], part[2 * n + i], part[3 * n + i]};
        cj->spent_pico += part[i];
    }
    row->ncharges = k;
    free(w);
    free(part);
}

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

/* Split a batched answer by id and route every item as if it had been asked alone. */
static RouteAction route_batch_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    account_batch(c, row, resp, request_body);
    row->reason = "answered";
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
        return ROUTE_FINISH; /* jobs stay pending: their leases expire and they are retried */
    }
    int live = live_jobs(c, idx);
    int unknown = 0, nalone = 0, nup = 0;
    TqErr err = {0};
    const char *content = resp->content ? resp->content : "";
    c->batch_clean = true;
    if (batch_split_answers(content, strlen(content), n, items, &unknown, &err) != 0) {
        /* Nothing in it can be trusted: re-send each half as its own batch (or alone). */
        row->reason = "batch_unparsable";
        row->error = strdup(err.msg);
        c->batch_clean = false;
        add_fork(c, call_fork(c, idx, live / 2, c->tier));
        add_fork(c, call_fork(c, idx + live / 2, live - live / 2, c->tier));
        goto done;
    }
    const char *sys = c->kind->system_prompt ? c->kind->system_prompt : "";
    int64_t sys_tokens = oai_estimate_tokens(sys, strlen(sys));
    const TqModel *m = &c->cfg->models[c->send_model];
    bool last = is_last_tier(c);
    const TqTier *tier = &c->kind->tiers[c->tier];
    int model = tier->model;
    for (int k = 0; k < live; k++) {
        int i = idx[k];
        CallJob *cj = &c->jobs[i];
        BatchItem *it = &items[i];
        if (it->problem) {
            c->batch_clean = false;
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
        char *answer = it->answer;
        it->answer = NULL;
        double score = score_answer(&in, &answer);
        if (last || score >= tier->accept) {
            complete_job(c, cj, answer, score, c->tier, model, last ? "final_tier" : "accepted");
            continue;
        }
        keep_best(cj, answer, score, c->tier, model);
        int64_t budget = budget_pico_of(c, cj->job);
        if (budget > 0) {
            const TqModel *next = &c->cfg->models[c->kind->tiers[c->tier + 1].model];
            if (cost_of_call(&next->prices, p_in, 0, p_out) > budget - cj->job->cost_so_far_pico - cj->spent_pico) {
                free(answer);
                complete_job(c, cj, cj->best_answer, cj->best_score, cj->best_tier, cj->best_model, "budget");
                cj->best_answer = NULL;
                continue;
            }
        }
        free(answer);
        cj->escalations++;
        up[nup++] = i;
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

RouteAction route_on_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body)
{
    if (c->batched && c->phase == CALL_PHASE_ANSWER)
        return route_batch_response(c, row, resp, request_body);
    account(c, row, resp, request_body);
    if (c->phase == CALL_PHASE_JUDGE) {
        row->reason = "judged";
        double judge = NAN;
        if (check_parse_judge(resp->content, &judge) != 0)
            judge = 0; /* a judge that gives no verdict vouches for nothing: do not accept on it */
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
    CheckInput in = check_input(c, answer, resp->finish_reason, &resp->logprobs, NAN, NULL);
    CheckResult res;
    TqErr err = {0};
    if (check_answer(&in, &res, &err) != 0)
        return decide(c, row, answer, 0);
    double score = res.score;
    bool gate_failed = res.gate_failed;
    if (gate_failed && !row->error)
        row->error = strdup(res.detail); /* why the answer was not good enough, for the ledger */
    if (res.canonical) {
        free(answer);
        answer = res.canonical;
        res.canonical = NULL;
    }
    check_result_free(&res);
    if (gate_failed || (!wants_sample(c) && !wants_judge(c)))
        return decide(c, row, answer, score);
    c->pending_answer = answer;
    c->pending_finish = strdup(resp->finish_reason ? resp->finish_reason : "stop");
    c->pending_logprobs = resp->logprobs;
    c->pending_row = (int)(row - c->rows);
    c->pending_judge = NAN;
    c->pending_sample = NULL;
    return verify_next(c, CALL_PHASE_ANSWER);
}

int route_on_failure(Call *c)
{
    CallJob *cj = &c->jobs[0];
    if (c->batched && c->phase == CALL_PHASE_ANSWER) {
        /* A batch that keeps failing may be too big or hold one poisonous item: send it in halves. */
        int *idx = calloc((size_t)c->njobs, sizeof *idx);
        int live = idx ? live_jobs(c, idx) : 0;
        if (live >= 2) {
            c->batch_clean = false;
            add_fork(c, call_fork(c, idx, live / 2, c->tier));
            add_fork(c, call_fork(c, idx + live / 2, live - live / 2, c->tier));
        }
        free(idx);
        if (c->forks)
            return ROUTE_FORK;
    }
    if (c->phase == CALL_PHASE_JUDGE) {
        /* No verdict: the answer is not vouched for (score 0 on that signal), so it escalates. */
        c->pending_judge = 0;
        return (int)verify_next(c, CALL_PHASE_JUDGE);
    }
    if (c->phase == CALL_PHASE_SAMPLE) {
        /* No second sample: nothing agrees with the answer. */
        free(c->pending_sample);
        c->pending_sample = strdup("");
        return (int)verify_next(c, CALL_PHASE_SAMPLE);
    }
    if (cj->best_answer) {
        complete(c, cj->best_answer, cj->best_score, cj->best_tier, cj->best_model, "escalation_failed");
        cj->best_answer = NULL;
        return ROUTE_FINISH;
    }
    return -1;
}
