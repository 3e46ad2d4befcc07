#include "call.h"

#include "json.h"
#include "openai.h"
#include "prompt.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "it reads max_tokens, temperature, labels, target_language" for an unknown-parameter message. */
static void known_params(const TqKind *kind, char *out, size_t cap)
{
    size_t at = (size_t)snprintf(out, cap, "max_tokens, temperature, cache, model%s", kind->reads_labels ? ", labels" : "");
    for (int i = 0; i < kind->nparams && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, ", %s", kind->params[i].name);
}

/* Read the job's params: max_tokens and temperature (else the kind's defaults), labels (kinds with a
 * label gate), and the kind's declared template parameters. The INSERT trigger refuses anything
 * else, but a kind can change between INSERT and claim: a parameter the kind does not read, or of
 * the wrong type, fails the job (reason unknown_param) rather than being dropped silently. */
static void job_params(const TqKind *kind, const QueueJob *job, CallJob *cj)
{
    cj->max_tokens = kind->max_tokens;
    cj->temperature = kind->temperature;
    if (!job->params || strcmp(job->params, "{}") == 0)
        return;
    JsonDoc d;
    char msg[800] = "";
    const char *reason = "unknown_param";
    TqErr perr = {0};
    if (json_parse(&d, job->params, strlen(job->params), 100000, &perr) || json_type(&d, 0) != JSON_OBJECT) {
        snprintf(msg, sizeof msg, "params could not be read (%s)", perr.msg[0] ? perr.msg : "not a JSON object");
        goto out;
    }
    int k = 1;
    for (int i = 0; i < json_size(&d, 0) && !msg[0]; i++, k = json_skip(&d, k + 1)) {
        int v = k + 1;
        char *name = json_strdup(&d, k);
        if (!name)
            break;
        int64_t mt;
        double t;
        const TqParam *pm = config_kind_param(kind, name, strlen(name));
        if (strcmp(name, "max_tokens") == 0) {
            if (json_int64(&d, v, &mt) == 0 && mt > 0)
                cj->max_tokens = mt;
            else
                snprintf(msg, sizeof msg, "params.max_tokens must be a positive integer");
        } else if (strcmp(name, "temperature") == 0) {
            if (json_double(&d, v, &t) == 0 && t >= 0 && t <= 2)
                cj->temperature = t;
            else
                snprintf(msg, sizeof msg, "params.temperature must be a number from 0 to 2");
        } else if (strcmp(name, "cache") == 0) {
            /* read by the scheduler (cache_job_policy); here only its type is checked */
            bool on;
            if (json_bool(&d, v, &on) != 0)
                snprintf(msg, sizeof msg, "params.cache must be true or false");
        } else if (strcmp(name, "model") == 0) {
            /* read by the planner (plan_add answers the job under kind->pinned[model]); a kind that
             * is no pinned variant here means the name matched no model of this configuration */
            if (kind->pinned_model < 0) {
                char *m = json_type(&d, v) == JSON_STRING ? json_strdup(&d, v) : NULL;
                char shown[128];
                utf8_copy_cut(shown, sizeof shown, m ? m : "?", m ? strlen(m) : 1);
                snprintf(msg, sizeof msg, "params.model %s is not a model of jobs/models.json (nor \"baseline\")", shown);
                reason = "unknown_model";
                free(m);
            }
        } else if (strcmp(name, "labels") == 0 && kind->reads_labels) {
            int n = json_type(&d, v) == JSON_ARRAY ? json_size(&d, v) : 0;
            if (n > 0 && (cj->labels = calloc((size_t)n, sizeof *cj->labels)) != NULL)
                for (int j = 0; j < n; j++) {
                    char *l = json_strdup(&d, json_at(&d, v, j));
                    if (l)
                        cj->labels[cj->nlabels++] = l;
                }
            if (cj->nlabels == 0)
                snprintf(msg, sizeof msg, "params.labels must be a non-empty array of strings");
        } else if (pm) {
            char *val = json_type(&d, v) == JSON_STRING ? json_strdup(&d, v) : NULL;
            if (val && !val[strspn(val, " \t\r\n")]) {
                free(val);
                val = NULL;
            }
            char shown[64];
            utf8_copy_cut(shown, sizeof shown, name, strlen(name));
            if (!val)
                snprintf(msg, sizeof msg, "params.%s must be a non-empty string", shown);
            else if (cj->params || (cj->params = calloc((size_t)kind->nparams, sizeof *cj->params)) != NULL) {
                free(cj->params[pm - kind->params]);
                cj->params[pm - kind->params] = val;
            } else {
                free(val);
            }
        } else {
            char known[300], shown[64];
            known_params(kind, known, sizeof known);
            utf8_copy_cut(shown, sizeof shown, name, strlen(name));
            snprintf(msg, sizeof msg, "params.%s is not a parameter of kind %s (it reads %s)", shown, kind->name, known);
        }
        free(name);
    }
out:
    json_doc_free(&d);
    if (msg[0]) {
        cj->outcome = CALL_JOB_FAIL;
        cj->reason = reason;
        cj->error = strdup(msg);
        cj->retryable = false;
    }
}

bool call_is_finished(const Call *c)
{
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job && c->jobs[i].outcome == CALL_JOB_PENDING)
            return false;
    return true;
}

static Call *call_alloc(const TqConfig *cfg, const TqKind *kind, int tier, int n)
{
    Call *c = calloc(1, sizeof *c);
    CallJob *cjs = calloc((size_t)n, sizeof *cjs);
    if (!c || !cjs) {
        free(c);
        free(cjs);
        return NULL;
    }
    c->cfg = cfg;
    c->kind = kind;
    c->tier = tier;
    c->model = kind->tiers[tier].model;
    c->send_model = c->model;
    c->jobs = cjs;
    c->njobs = n;
    c->batched = n > 1;
    c->intent_row = -1;
    return c;
}

static void call_job_init(const TqKind *kind, QueueJob *job, CallJob *cj)
{
    cj->job = job;
    cj->quality = NAN;
    cj->best_score = -1;
    cj->best_tier = cj->best_model = -1;
    job_params(kind, job, cj);
}

int64_t call_job_input_tokens(const TqKind *kind, const CallJob *cj)
{
    const QueueJob *j = cj->job;
    int64_t n = oai_estimate_tokens(j->prompt, strlen(j->prompt)) + prompt_system_tokens(kind, cj);
    if (j->context && *j->context)
        n += oai_estimate_tokens(j->context, strlen(j->context));
    return n;
}

bool call_model_fits(const TqModel *m, int64_t input_tokens)
{
    return m->context_tokens <= 0 || input_tokens + PROMPT_MIN_OUTPUT_TOKENS <= m->context_tokens;
}

/* Start the call on the first tier whose model holds the job; fail the job when none does. */
static void start_on_fitting_tier(Call *c)
{
    CallJob *cj = &c->jobs[0];
    if (cj->outcome != CALL_JOB_PENDING)
        return;
    int64_t input = call_job_input_tokens(c->kind, cj);
    int t = 0;
    while (t < c->kind->ntiers && !call_model_fits(&c->cfg->models[c->kind->tiers[t].model], input))
        t++;
    if (t < c->kind->ntiers) {
        c->tier = t;
        c->model = c->send_model = c->kind->tiers[t].model;
        return;
    }
    int64_t largest = 0;
    const char *name = "";
    for (int k = 0; k < c->kind->ntiers; k++) {
        const TqModel *m = &c->cfg->models[c->kind->tiers[k].model];
        if (m->context_tokens > largest) {
            largest = m->context_tokens;
            name = m->name;
        }
    }
    char msg[400];
    snprintf(msg, sizeof msg,
             "context_too_long: the input is about %lld tokens (prompt, context and system prompt, estimated);"
             " no tier of kind %s holds it with room for an answer (the largest, model %s, holds %lld);"
             " shorten the input or give the kind a tier with a larger model",
             (long long)input, c->kind->name, name, (long long)largest);
    cj->outcome = CALL_JOB_FAIL;
    cj->reason = "context_too_long";
    cj->error = strdup(msg);
    cj->retryable = false;
}

Call *call_new_for_job(const TqConfig *cfg, const TqKind *kind, QueueJob *job)
{
    Call *c = call_alloc(cfg, kind, 0, 1);
    if (c) {
        call_job_init(kind, job, &c->jobs[0]);
        start_on_fitting_tier(c);
    }
    return c;
}

Call *call_new_compress(const TqConfig *cfg, const TqKind *kind, QueueJob **jobs, int n, const char *key, char *input,
                        char *question, int tokens_before, bool prompt)
{
    Call *c = call_alloc(cfg, kind, 0, n);
    if (!c) {
        free(input);
        free(question);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        call_job_init(kind, jobs[i], &c->jobs[i]);
    c->phase = CALL_PHASE_COMPRESS;
    c->batched = false; /* one request for all: they share the context, not a batch of items */
    c->model = c->send_model = kind->compress.model;
    snprintf(c->compress_key, sizeof c->compress_key, "%s", key);
    c->compress_input = input;
    c->compress_question = question;
    c->compress_tokens_before = tokens_before;
    c->compress_prompt = prompt;
    return c;
}

Call *call_new_answered(const TqConfig *cfg, const TqKind *kind, QueueJob *job)
{
    Call *c = call_alloc(cfg, kind, 0, 1);
    if (c)
        call_job_init(kind, job, &c->jobs[0]);
    return c;
}

bool call_shadow_sampled(double rate, int64_t job_id)
{
    if (!(rate > 0))
        return false;
    uint64_t x = (uint64_t)job_id + 0x9e3779b97f4a7c15ULL; /* splitmix64: ids are sequential, the sample must not be */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (double)(x >> 11) / 9007199254740992.0 < rate;
}

static char **strv_dup(char *const *v, int n)
{
    char **out = calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    for (int i = 0; out && i < n; i++)
        if (v[i] && !(out[i] = strdup(v[i]))) {
            for (int k = 0; k < i; k++)
                free(out[k]);
            free(out);
            return NULL;
        }
    return out;
}

Call *call_new_shadow(const Call *c, const CallJob *src)
{
    QueueJob *job = job_dup(src->job);
    Call *s = job ? call_alloc(c->cfg, c->kind, src->answer_tier, 1) : NULL;
    if (!s) {
        job_free(job);
        return NULL;
    }
    CallJob *cj = &s->jobs[0];
    cj->job = job;
    cj->outcome = CALL_JOB_SHADOW;
    cj->quality = NAN;
    cj->best_score = -1;
    cj->max_tokens = src->max_tokens;
    cj->temperature = src->temperature;
    cj->result = src->result ? strdup(src->result) : NULL;
    cj->nlabels = src->nlabels;
    cj->labels = src->nlabels ? strv_dup(src->labels, src->nlabels) : NULL;
    cj->params = src->params ? strv_dup(src->params, c->kind->nparams) : NULL;
    if ((src->result && !cj->result) || (src->nlabels && !cj->labels) || (src->params && !cj->params)) {
        call_free(s);
        return NULL;
    }
    s->phase = CALL_PHASE_SHADOW;
    s->model = s->send_model = c->kind->baseline_model;
    return s;
}

Call *call_new_batch(const TqConfig *cfg, const TqKind *kind, QueueJob **jobs, int n)
{
    Call *c = call_alloc(cfg, kind, 0, n);
    for (int i = 0; c && i < n; i++)
        call_job_init(kind, jobs[i], &c->jobs[i]);
    return c;
}

Call *call_fork(Call *c, const int *idx, int n, int tier)
{
    Call *f = call_alloc(c->cfg, c->kind, tier, n);
    if (!f)
        return NULL;
    f->all_tiers = c->all_tiers;
    for (int i = 0; i < n; i++) {
        CallJob *from = &c->jobs[idx[i]];
        f->jobs[i] = *from; /* moves the job and everything it owns */
        memset(from, 0, sizeof *from);
        from->outcome = CALL_JOB_PENDING;
    }
    return f;
}

void call_free(Call *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->njobs; i++) {
        job_free(c->jobs[i].job);
        free(c->jobs[i].result);
        free(c->jobs[i].error);
        free(c->jobs[i].best_answer);
        for (int k = 0; k < c->jobs[i].nlabels; k++)
            free(c->jobs[i].labels[k]);
        free(c->jobs[i].labels);
        for (int k = 0; c->jobs[i].params && k < c->kind->nparams; k++)
            free(c->jobs[i].params[k]);
        free(c->jobs[i].params);
    }
    free(c->pending_answer);
    free(c->pending_sample);
    free(c->pending_finish);
    free(c->compress_input);
    free(c->compress_question);
    free(c->compress_output);
    free(c->jobs);
    for (int i = 0; i < c->nrows; i++) {
        free(c->rows[i].error);
        free(c->rows[i].answer);
        free(c->rows[i].job_ids);
        free(c->rows[i].run_name);
        free(c->rows[i].charges);
    }
    free(c->rows);
    free(c);
}

Call *call_take_rows(Call *c)
{
    if (c->nrows == 0 || c->phase != CALL_PHASE_ANSWER || c->intent_row >= 0)
        return NULL;
    Call *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->intent_row = -1;
    r->cfg = c->cfg;
    r->kind = c->kind;
    r->tier = c->tier;
    r->model = r->send_model = c->model;
    r->rows = c->rows;
    r->nrows = c->nrows;
    r->caprows = c->caprows;
    c->rows = NULL;
    c->nrows = c->caprows = 0;
    return r;
}

Call *call_intent_carrier(Call *c)
{
    if (c->intent_row < 0)
        return NULL;
    const LedgerRow *from = &c->rows[c->intent_row];
    Call *r = calloc(1, sizeof *r);
    LedgerRow *row = calloc(1, sizeof *row);
    char *ids = from->job_ids ? strdup(from->job_ids) : NULL;
    char *run = from->run_name ? strdup(from->run_name) : NULL;
    if (!r || !row || (from->job_ids && !ids) || (from->run_name && !run)) {
        free(r);
        free(row);
        free(ids);
        free(run);
        return NULL;
    }
    *row = *from;
    row->job_ids = ids;
    row->run_name = run;
    row->answer = row->error = NULL;
    row->charges = NULL;
    row->ncharges = 0;
    r->cfg = c->cfg;
    r->kind = c->kind;
    r->tier = c->tier;
    r->model = r->send_model = c->model;
    r->rows = row;
    r->nrows = r->caprows = 1;
    r->intent_row = -1;
    r->parked = c;
    return r;
}

void call_cancel_intent(Call *c)
{
    if (c->intent_row < 0)
        return;
    LedgerRow *row = &c->rows[c->intent_row];
    row->status = "cancelled";
    row->reason = "not_sent";
    row->tokens_in = row->tokens_cached = row->tokens_out = row->tokens_reasoning = 0;
    row->estimated = false;
    row->cost_pico = 0;
    c->intent_row = -1;
    c->intent_durable = false;
}

LedgerRow *call_add_row(Call *c, const char *key_prefix, uint64_t seq)
{
    if (c->nrows == c->caprows) {
        int cap = c->caprows ? c->caprows * 2 : 2;
        LedgerRow *r = realloc(c->rows, (size_t)cap * sizeof *r);
        if (!r)
            return NULL;
        c->rows = r;
        c->caprows = cap;
    }
    LedgerRow *row = &c->rows[c->nrows++];
    memset(row, 0, sizeof *row);
    row->score = NAN;
    row->tier = c->tier;
    row->model = c->send_model;
    row->purpose = c->phase == CALL_PHASE_JUDGE      ? "judge"
                   : c->phase == CALL_PHASE_SAMPLE   ? "sample"
                   : c->phase == CALL_PHASE_SHADOW   ? "shadow"
                   : c->phase == CALL_PHASE_COMPRESS ? "compress"
                                                     : "answer";
    /* Which jobs this exchange served, fixed now: a batch may later hand its jobs to other calls. */
    size_t cap = (size_t)c->njobs * 21 + 1, off = 0;
    row->job_ids = malloc(cap);
    if (row->job_ids) {
        row->job_ids[0] = '\0';
        for (int i = 0; i < c->njobs; i++)
            if (c->jobs[i].job)
                off += (size_t)snprintf(row->job_ids + off, cap - off, "%s%lld", off ? "," : "",
                                        (long long)c->jobs[i].job->id);
    }
    const char *run = NULL;
    bool first = true;
    for (int i = 0; i < c->njobs; i++) {
        const QueueJob *j = c->jobs[i].job;
        if (!j)
            continue;
        if (first) {
            run = j->run_name;
            row->attempt = j->attempt;
            first = false;
        } else if (!run || !j->run_name || strcmp(run, j->run_name) != 0) {
            run = NULL;
        }
    }
    row->run_name = run ? strdup(run) : NULL;
    snprintf(row->key, sizeof row->key, "%s:%llu", key_prefix, (unsigned long long)seq);
    return row;
}

void call_fail_all(Call *c, const char *reason, const char *error, bool retryable, int64_t retry_after_ms)
{
    for (int i = 0; i < c->njobs; i++) {
        CallJob *cj = &c->jobs[i];
        if (cj->outcome != CALL_JOB_PENDING)
            continue;
        cj->outcome = CALL_JOB_FAIL;
        cj->reason = reason;
        free(cj->error);
        cj->error = strdup(error ? error : reason);
        cj->retryable = retryable;
        cj->retry_after_ms = retry_after_ms;
        /* an account out of quota, a refused key or a model in an outage (its breaker open) is no
         * fault of the job: it waits without spending an attempt */
        cj->keep_attempt = retryable && (strcmp(reason, "provider_quota_exhausted") == 0 ||
                                         strcmp(reason, "provider_unauthorized") == 0 ||
                                         strcmp(reason, "model_unavailable") == 0);
    }
}
