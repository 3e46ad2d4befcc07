#include "plan.h"

#include "hash.h"
#include "json.h"
#include "log.h"
#include "openai.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Jobs filling one batch: same kind, same run, identical params. */
typedef struct Group {
    struct Group *next_in_bucket;
    const TqKind *kind;
    char *params;           /* owned copy of the key's params text */
    char *run;              /* owned copy of the key's run_name ("" for none or across runs) */
    uint64_t hash;
    QueueJob **jobs;        /* up to kind->batch.max_items */
    int n;
    int64_t tokens;         /* estimated prompt tokens of the jobs */
    int64_t deadline_ms;    /* goes out by then even if not full */
} Group;

struct Plan {
    const TqConfig *cfg;
    bool all_tiers;
    Group **buckets;        /* chained hash table of open groups */
    int nbuckets;           /* a power of two */
    int ngroups;
    int waiting;
    atomic_int *batch_size; /* [kind * nmodels + model] */
};

static uint64_t group_hash(const TqKind *kind, const char *run, const char *params)
{
    uint64_t h = hash_fnv1a64_more(HASH_FNV_INIT, kind->name, strlen(kind->name));
    h = hash_fnv1a64_more(h ^ 0xff, run, strlen(run));
    return hash_fnv1a64_more(h ^ 0xff, params, strlen(params));
}

/* The run a job batches within: one producer's items never share a request with another's (they
 * could steer each other's answers or read each other's text back), unless the kind says its jobs
 * may (batch.across_runs). */
static const char *group_run(const TqKind *kind, const QueueJob *job)
{
    return kind->batch.across_runs || !job->run_name ? "" : job->run_name;
}

int plan_new(Plan **out, const TqConfig *cfg, bool all_tiers, TqErr *err)
{
    Plan *p = calloc(1, sizeof *p);
    if (!p)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    p->cfg = cfg;
    p->all_tiers = all_tiers;
    p->nbuckets = 64;
    p->buckets = calloc((size_t)p->nbuckets, sizeof *p->buckets);
    p->batch_size = calloc((size_t)(cfg->nkinds * cfg->nmodels + 1), sizeof *p->batch_size);
    if (!p->buckets || !p->batch_size) {
        free(p->buckets);
        free(p->batch_size);
        free(p);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    for (int k = 0; k < cfg->nkinds; k++)
        for (int m = 0; m < cfg->nmodels; m++)
            atomic_init(&p->batch_size[k * cfg->nmodels + m], cfg->kinds[k].batch.max_items);
    *out = p;
    return 0;
}

static void group_free(Group *g)
{
    for (int i = 0; i < g->n; i++)
        job_free(g->jobs[i]);
    free(g->jobs);
    free(g->params);
    free(g->run);
    free(g);
}

void plan_free(Plan *p)
{
    if (!p)
        return;
    for (int b = 0; b < p->nbuckets; b++) {
        Group *g = p->buckets[b];
        while (g) {
            Group *next = g->next_in_bucket;
            group_free(g);
            g = next;
        }
    }
    free(p->buckets);
    free(p->batch_size);
    free(p);
}

int plan_waiting(const Plan *p) { return p->waiting; }

static atomic_int *size_slot(const Plan *p, const TqKind *kind, int model)
{
    return &p->batch_size[(int)(kind->base - p->cfg->kinds) * p->cfg->nmodels + model];
}

int plan_batch_size(const Plan *p, const TqKind *kind, int model) { return atomic_load(size_slot(p, kind, model)); }

void plan_learn(Plan *p, const Call *c)
{
    if (!c->batched || c->batch_verdict == CALL_BATCH_NEUTRAL)
        return;
    atomic_int *slot = size_slot(p, c->kind, c->model);
    int cur = atomic_load(slot), next;
    do {
        next = c->batch_verdict == CALL_BATCH_CLEAN ? cur + 1 : cur / 2;
        if (next > c->kind->batch.max_items)
            next = c->kind->batch.max_items;
        if (next < 1)
            next = 1;
    } while (!atomic_compare_exchange_weak(slot, &cur, next));
}

/* Jobs that may share a request (see plan.h). */
static bool batchable(const Plan *p, const TqKind *k, const QueueJob *j)
{
    return k->batch.enabled && !p->all_tiers && k->checks.judge_model < 0 && !k->checks.agreement && !j->system_prompt &&
           !(j->context && *j->context);
}

static void push(Call **ready, Call *c)
{
    c->next = *ready;
    *ready = c;
}

/* A call for n jobs (n >= 1); a job whose params failed goes out on its own, already finished. */
static int make_calls(Plan *p, const TqKind *kind, QueueJob **jobs, int n, Call **ready)
{
    Call *c = n == 1 ? call_new_for_job(p->cfg, kind, jobs[0]) : call_new_batch(p->cfg, kind, jobs, n);
    if (!c) {
        log_msg(LOG_ERROR, "plan", "cannot build a call for %d jobs: out of memory (their leases will expire)", n);
        for (int i = 0; i < n; i++)
            job_free(jobs[i]);
        return TQ_ENOMEM;
    }
    c->all_tiers = p->all_tiers;
    int bad[128], nbad = 0;
    for (int i = 0; n > 1 && i < c->njobs && nbad < 128; i++)
        if (c->jobs[i].outcome == CALL_JOB_FAIL)
            bad[nbad++] = i;
    if (nbad > 0 && nbad < c->njobs) {
        Call *failed = call_fork(c, bad, nbad, 0);
        if (failed)
            push(ready, failed);
    }
    push(ready, c);
    return 0;
}

static Group **find_slot(Plan *p, const TqKind *kind, const char *run, const char *params, uint64_t h)
{
    Group **slot = &p->buckets[h & (uint64_t)(p->nbuckets - 1)];
    while (*slot && !((*slot)->hash == h && (*slot)->kind == kind && strcmp((*slot)->params, params) == 0 &&
                      strcmp((*slot)->run, run) == 0))
        slot = &(*slot)->next_in_bucket;
    return slot;
}

static void grow(Plan *p)
{
    int n = p->nbuckets * 2;
    Group **b = calloc((size_t)n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (int i = 0; i < p->nbuckets; i++) {
        Group *g = p->buckets[i];
        while (g) {
            Group *next = g->next_in_bucket;
            Group **slot = &b[g->hash & (uint64_t)(n - 1)];
            g->next_in_bucket = *slot;
            *slot = g;
            g = next;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
}

/* The group goes out: its jobs become a call, the group is unlinked and freed. */
static int send_group(Plan *p, Group **slot, Call **ready)
{
    Group *g = *slot;
    *slot = g->next_in_bucket;
    p->ngroups--;
    p->waiting -= g->n;
    int rc = make_calls(p, g->kind, g->jobs, g->n, ready);
    g->n = 0; /* the jobs went to the call */
    group_free(g);
    return rc;
}

/* The kind a job is answered under: its pinned variant when params.model names a model (config.h
 * TqKind.pinned), else the kind. A name that matches no model leaves the kind, whose call fails the
 * job (unknown_model, worker/call.c). Parses only params that mention "model". */
static const TqKind *job_kind(const TqConfig *cfg, const TqKind *kind, const char *params)
{
    if (!params || !strstr(params, "\"model\""))
        return kind;
    JsonDoc d;
    TqErr err = {0};
    if (json_parse(&d, params, strlen(params), 4096, &err) != 0)
        return kind;
    int v = json_type(&d, 0) == JSON_OBJECT ? json_get(&d, 0, "model") : -1;
    char *name = v >= 0 && json_type(&d, v) == JSON_STRING ? json_strdup(&d, v) : NULL;
    const TqKind *pinned = config_kind_pinned(cfg, kind, name);
    free(name);
    json_doc_free(&d);
    return pinned ? pinned : kind;
}

int plan_add(Plan *p, QueueJob *job, int64_t now_ms, Call **ready)
{
    const TqKind *kind = config_kind(p->cfg, job->kind);
    if (!kind) {
        log_msg(LOG_ERROR, "plan", "job %lld: kind %s is not configured", (long long)job->id, job->kind);
        job_free(job);
        return 0;
    }
    /* a pinned job's group key holds its params, so jobs pinned to different models never share a
     * request (nor with unpinned ones) */
    kind = job_kind(p->cfg, kind, job->params);
    int64_t tokens = oai_estimate_tokens(job->prompt, strlen(job->prompt));
    /* a prompt too long for the first tier goes alone: its call starts on a tier that holds it */
    if (!batchable(p, kind, job) || !call_model_fits(&p->cfg->models[kind->tiers[0].model], tokens))
        return make_calls(p, kind, &job, 1, ready);
    int size = plan_batch_size(p, kind, kind->tiers[0].model);
    const char *run = group_run(kind, job);
    uint64_t h = group_hash(kind, run, job->params);
    Group **slot = find_slot(p, kind, run, job->params, h);
    int rc = 0;
    if (*slot && (*slot)->tokens + tokens > kind->batch.max_input_tokens)
        rc = send_group(p, slot, ready); /* this job would push it over the kind's token budget */
    if (!*slot) {
        Group *g = calloc(1, sizeof *g);
        int cap = kind->batch.max_items > 0 ? kind->batch.max_items : 1;
        if (g && (g->jobs = calloc((size_t)cap, sizeof *g->jobs)) != NULL && (g->params = strdup(job->params)) != NULL &&
            (g->run = strdup(run)) != NULL) {
            g->kind = kind;
            g->hash = h;
            g->deadline_ms = now_ms + kind->batch.fill_ms;
            *slot = g;
            p->ngroups++;
        } else {
            if (g) {
                free(g->jobs);
                free(g->params);
                free(g);
            }
            return make_calls(p, kind, &job, 1, ready); /* short of memory: alone */
        }
    }
    Group *g = *slot;
    g->jobs[g->n++] = job;
    g->tokens += tokens;
    p->waiting++;
    if (g->n >= size || g->n >= kind->batch.max_items)
        rc = send_group(p, slot, ready);
    if (p->ngroups > p->nbuckets)
        grow(p);
    return rc;
}

int64_t plan_take_due(Plan *p, int64_t now_ms, bool force, Call **ready)
{
    int64_t next = INT64_MAX;
    for (int b = 0; b < p->nbuckets; b++) {
        Group **slot = &p->buckets[b];
        while (*slot) {
            if (force || now_ms >= (*slot)->deadline_ms) {
                send_group(p, slot, ready); /* unlinks: *slot is now the next group */
                continue;
            }
            if ((*slot)->deadline_ms < next)
                next = (*slot)->deadline_ms;
            slot = &(*slot)->next_in_bucket;
        }
    }
    return next;
}

void plan_drop(Plan *p, void (*fn)(void *ud, const QueueJob *job), void *ud)
{
    for (int b = 0; b < p->nbuckets; b++) {
        Group *g = p->buckets[b];
        while (g) {
            Group *next = g->next_in_bucket;
            for (int i = 0; i < g->n && fn; i++)
                fn(ud, g->jobs[i]);
            group_free(g);
            g = next;
        }
        p->buckets[b] = NULL;
    }
    p->ngroups = 0;
    p->waiting = 0;
}
