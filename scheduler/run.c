#include "run.h"

#include "cache.h"
#include "call.h"
#include "clock.h"
#include "compress.h"
#include "cost.h"
#include "db.h"
#include "firer.h"
#include "flight.h"
#include "held.h"
#include "json.h"
#include "log.h"
#include "plan.h"
#include "pool.h"
#include "queue.h"
#include "spill.h"
#include "waker.h"
#include "writer.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t run_signals;
/* The eventfd the loop sleeps on (the writer's): a signal that lands while the loop is busy, not
 * inside its wait, must still end the wait at once, not after the poll interval. */
static volatile sig_atomic_t run_wake_fd = -1;

static void on_signal(int sig)
{
    (void)sig;
    run_signals++;
    int fd = run_wake_fd;
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(fd, &one, sizeof one); /* async-signal-safe; a full counter is awake anyway */
        (void)w;
    }
}

void run_default_options(RunOptions *o)
{
    memset(o, 0, sizeof *o);
    pool_default_options(&o->pool);
    o->lease_s = 60;
    o->claim_batch = 500;
    o->max_held_bytes = (int64_t)64 << 20;
    o->poll_ms = 1000;
    o->grace_s = 30;
}

/* The process holds API keys in memory: no core file may carry them off, and no other process of
 * the same user may attach to read them (PR_SET_DUMPABLE also closes ptrace and /proc/PID/mem). */
static void no_core_dumps(void)
{
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Large buffers (a job's context, its request body: megabytes) come from mmap and go back to the
 * system when freed. glibc's default threshold rises after the first such free, so later ones land
 * in the per-thread heaps and the memory stays with the process. */
static void large_allocations_returned(void) { mallopt(M_MMAP_THRESHOLD, 1 << 20); }

/* Thousands of sockets in flight need more than the usual 1024 descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* After the grace period, how long the writer may wait for an unreachable database before it
 * spills what it holds. */
#define RUN_FINAL_WRITE_MS 2000
/* Heartbeats every RUN_HEARTBEAT_MS; a process silent for RUN_ORPHAN_AFTER_S is dead, and the
 * requests it left in flight are settled by whoever notices. */
#define RUN_HEARTBEAT_MS 5000
#define RUN_ORPHAN_AFTER_S 15
/* How often the shadow estimates are read while shadow calls come in. */
#define RUN_SHADOW_CHECK_MS 5000
/* ... or after this many finished jobs, but not more often than RUN_SHADOW_CHECK_MIN_MS: a fast run
 * finishes thousands of jobs in 5 s, and the first tier's shift is seen within a few hundred. */
#define RUN_SHADOW_CHECK_JOBS 250
#define RUN_SHADOW_CHECK_MIN_MS 500
/* A shift's boost lasts until the first tier has this many shadow comparisons after it (or the kind 20
 * windows' worth): held to its past from the change point (tierq.shadow_tier_drift, sql/016), 300
 * against up to 1,000 before resolve a fall of 0.85 -> 0.68 at z about -6, where the latest 30 gave
 * -2.4; a 10-point fall needs about 1,000. */
#define RUN_SHIFT_CONFIRM 300
/* Cache upkeep (expiry, eviction): how often, and at most how many entries per statement, so one
 * pass never holds the scheduler for long. */
#define RUN_CACHE_UPKEEP_MS 60000
#define RUN_CACHE_UPKEEP_LIMIT 1000

typedef struct Run {
    const TqConfig *cfg;
    const RunOptions *opt;
    PGconn *conn;
    char owner[160];
    const char **kinds;
    int nkinds;
    HeldSet *held;
    Fifo *done;              /* finished calls, to the writer */
    Pool *pool;
    int rate_share;          /* processes the providers' limits are split between (heartbeat) */
    Writer *writer;
    Plan *plan;              /* claimed jobs waiting to fill a batch */
    Waker waker;
    int efd;                 /* the writer signals it after each write-back */
    int64_t total;           /* jobs to do, for progress */
    int64_t start_ms;
    /* the loop's clocks and state */
    int64_t next_requeue, next_renew, next_beat, next_progress, stop_deadline, last_drain_check;
    bool stopping, budget_hit;
    char spill_dir[1024];    /* "" when none can be named */
    bool shadowing;          /* some kind claimed here samples shadow calls */
    bool *drifted;           /* per cfg kind: its shadow estimate is below its bar (warned once) */
    uint64_t *model_closes;  /* per cfg model: pool_model_closes when last looked at */
    bool *shifted;           /* per cfg kind: its first tier's share of jobs moved (warned once, shadows boosted) */
    int64_t *boost_mark;     /* per cfg kind: boosting since the shadow call with this id (0 = not boosting) */
    bool *tier_dropped;      /* per cfg kind x 8 tiers: the tier's agreement fell against its past (warned once) */
    int64_t next_shadow_check;
    int64_t last_shadow_check, jobs_at_shadow_check;
    pthread_mutex_t pool_mu; /* the writer resumes parked calls while the scheduler may stop the pool */
    Flight *flight;          /* identical jobs waiting on one call (single flight) */
    Flight *cflight;         /* jobs waiting on a compression of their context in flight */
    pthread_mutex_t ready_mu; /* the writer hands compressed jobs to the scheduler through ready */
    QueueJob **ready;
    int nready, capready;
    int64_t next_cache_upkeep;
    /* jobs answered from the cache and what their answers had cost; from_flight: by an identical job
     * of this process in flight (the scheduler and the writer both count) */
    _Atomic int64_t cache_hits, cache_saved_pico, cache_from_flight;
    Firer *firer;            /* fires due schedules (NULL with --no-schedules) */
    FirerCounts drain_fires; /* --drain: the one pass at start */
} Run;

static int ensure_conn(Run *r)
{
    if (r->conn && !db_is_broken(r->conn))
        return 0;
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
    TqErr err = {0};
    if (db_connect(NULL, &r->conn, &err)) {
        r->conn = NULL;
        log_msg(LOG_WARN, "run", "database unreachable, retrying: %s", err.msg);
        return TQ_EDB;
    }
    return 0;
}

static int parse_kinds(Run *r)
{
    const RunOptions *o = r->opt;
    const TqConfig *cfg = r->cfg;
    r->kinds = calloc((size_t)cfg->nkinds, sizeof *r->kinds);
    const TqKind **listed = calloc((size_t)cfg->nkinds, sizeof *listed);
    int n = 0, rc = 0;
    if (!r->kinds || !listed)
        rc = TQ_ENOMEM;
    else if (o->kinds_csv)
        rc = config_kind_list(cfg, o->kinds_csv, listed, cfg->nkinds, &n, NULL, 0);
    for (int i = 0; !rc && i < (o->kinds_csv ? n : cfg->nkinds); i++)
        r->kinds[r->nkinds++] = o->kinds_csv ? listed[i]->name : cfg->kinds[i].name;
    free(listed);
    return rc ? rc : r->nkinds ? 0 : TQ_EINVAL;
}

/* Jobs left for this process to wait for: queued and due soon, or running anywhere. */
static int64_t remaining_jobs(Run *r, bool due_soon_only, TqErr *err)
{
    return queue_count_remaining(r->conn, r->kinds, r->nkinds, r->opt->run_name, due_soon_only, err);
}

/* Calls the plan made ready: to the pool, or straight to the writer when every job already has an
 * outcome (a parameter the kind does not read failed it: nothing to send). */
static void send_ready(Run *r, Call *ready)
{
    while (ready) {
        Call *next = ready->next;
        if (call_is_finished(ready))
            fifo_push(r->done, ready);
        else
            pool_submit(r->pool, ready);
        ready = next;
    }
}

/* A held job this process gives up on without writing it back (no memory): it leaves the held set so
 * its lease expires and another claim runs it, and the identical jobs waiting on it go out
 * themselves. Call with what was read from the job before it was freed. Any thread. */
static void abandon_job(Run *r, int64_t id, unsigned cache_flags, const char *cache_key)
{
    held_remove(r->held, id);
    if (cache_flags & JOB_CACHE_LEADS) {
        QueueJob **none = NULL;
        int n = 0;
        flight_land(r->flight, cache_key, false, &none, &n);
    }
}

/* Complete a job from a cached answer; its call goes straight to the writer. False (the job still
 * the caller's) when out of memory. */
static bool complete_from_cache(Run *r, QueueJob *job, CacheHit *h, bool from_flight)
{
    Call *c = call_new_answered(r->cfg, config_kind(r->cfg, job->kind), job);
    if (!c)
        return false;
    /* a job whose params cannot be read failed already: that stands, as it would have on a miss */
    if (c->jobs[0].outcome == CALL_JOB_PENDING) {
        int64_t saved = h->cost_pico;
        cache_complete_job(&c->jobs[0], h);
        atomic_fetch_add(&r->cache_hits, 1);
        atomic_fetch_add(&r->cache_saved_pico, saved);
        if (from_flight)
            atomic_fetch_add(&r->cache_from_flight, 1);
    }
    fifo_push(r->done, c);
    return true;
}

/* One lookup for the whole claim: each hit is completed and leaves jobs (set to NULL). A lookup that
 * fails leaves every job a miss: it is answered by a model, as with no cache. */
static void serve_from_cache(Run *r, QueueJob **jobs, int n)
{
    int asking = 0;
    for (int i = 0; i < n; i++)
        asking += (jobs[i]->cache_flags & JOB_CACHE_LOOKUP) != 0;
    if (asking == 0)
        return;
    CacheHit *hits = calloc((size_t)n, sizeof *hits);
    int nhits = 0;
    TqErr err = {0};
    if (!hits || cache_lookup(r->conn, r->cfg, jobs, n, hits, &nhits, &err) != 0) {
        log_msg(LOG_WARN, "run", "cache lookup failed, the claim's jobs go to their models: %s",
                hits ? err.msg : "out of memory");
        free(hits);
        return;
    }
    for (int i = 0; i < n && nhits > 0; i++) {
        if (hits[i].answer && complete_from_cache(r, jobs[i], &hits[i], false))
            jobs[i] = NULL;
        cache_hit_free(&hits[i]);
    }
    free(hits);
}

/* Whether job leads its answer's single flight (it goes out) or now waits for an identical one. */
static bool lead_flight(Run *r, QueueJob *job)
{
    if (!flight_join(r->flight, job->cache_key, job))
        return false;
    job->cache_flags |= JOB_CACHE_LEADS;
    return true;
}

/* Into the plan; a job it could not take (out of memory: freed) releases the jobs waiting on it. */
static void plan_job(Run *r, QueueJob *job, int64_t now, Call **ready)
{
    char key[sizeof job->cache_key];
    bool leads = (job->cache_flags & JOB_CACHE_LEADS) != 0;
    if (leads)
        memcpy(key, job->cache_key, sizeof key);
    if (plan_add(r->plan, job, now, ready) != 0 && leads) {
        QueueJob **w = NULL;
        int nw = 0;
        flight_land(r->flight, key, false, &w, &nw);
    }
}

static void compress_stage(Run *r, QueueJob **jobs, int n);

/* Jobs that waited on an identical job whose answer could not be shared go out themselves now (the
 * first of each key leads again), through compression like any claimed job; when stopping they are
 * dropped and handed back with the rest. */
static void replan_released(Run *r, int64_t now)
{
    QueueJob **jobs = NULL;
    int n = 0;
    flight_take_released(r->flight, &jobs, &n);
    Call *ready = NULL;
    for (int i = 0; i < n; i++) {
        if (r->stopping) {
            held_remove(r->held, jobs[i]->id);
            job_free(jobs[i]);
            jobs[i] = NULL;
        } else if (!lead_flight(r, jobs[i])) {
            jobs[i] = NULL; /* waits on the new leader */
        }
    }
    if (!r->stopping)
        compress_stage(r, jobs, n);
    for (int i = 0; i < n; i++)
        if (jobs[i])
            plan_job(r, jobs[i], now, &ready);
    free(jobs);
    send_ready(r, ready);
}

/* No call will come for key: jobs that came to wait for it go out themselves. */
static void abandon_flight(Flight *f, const char *key)
{
    QueueJob **none = NULL;
    int n = 0;
    flight_land(f, key, false, &none, &n);
}

/* The claim's jobs whose context is too long for their kind: cleaned for free (enough, or not), a
 * stored compression reused (one lookup for the claim), or one compression call per key for all the
 * claim's jobs with it — a key already being compressed for an earlier claim is waited for. Jobs
 * taken care of here leave jobs (set to NULL). */
static void push_compressed(Run *r, QueueJob *job);

static void compress_stage(Run *r, QueueJob **jobs, int n)
{
    CompressNeed *needs = n > 0 ? calloc((size_t)n, sizeof *needs) : NULL;
    if (!needs)
        return; /* nothing claimed, or no memory: the contexts are sent as they are */
    int any = 0;
    for (int i = 0; i < n; i++)
        if (jobs[i] && compress_prepare(r->cfg, config_kind(r->cfg, jobs[i]->kind), &jobs[i], &needs[i]) == 0)
            any += needs[i].needed;
    char **texts = any ? calloc((size_t)n, sizeof *texts) : NULL;
    int *after = any ? calloc((size_t)n, sizeof *after) : NULL;
    TqErr err = {0};
    if (any && texts && after && compress_lookup(r->conn, r->cfg, jobs, needs, n, texts, after, &err) != 0)
        log_msg(LOG_WARN, "run", "compressed context lookup failed, the claim's long contexts are compressed again: %s",
                err.msg);
    Call *calls = NULL;
    for (int i = 0; any && i < n; i++) {
        if (!needs[i].needed || !jobs[i])
            continue;
        if (texts && texts[i]) {
            int64_t id = jobs[i]->id;
            unsigned flags = jobs[i]->cache_flags;
            char key[sizeof jobs[i]->cache_key];
            memcpy(key, jobs[i]->cache_key, sizeof key);
            jobs[i] = compress_apply(jobs[i], texts[i], needs[i].prompt, JOB_COMPRESSION_REUSED, needs[i].tokens_before,
                                     after[i], 0);
            if (!jobs[i])
                abandon_job(r, id, flags, key);
            continue;
        }
        if (!flight_join(r->cflight, needs[i].key, jobs[i])) {
            jobs[i] = NULL; /* its key is being compressed for an earlier claim: it waits */
            continue;
        }
        /* one call for every job of this claim with the key */
        QueueJob **group = calloc((size_t)n, sizeof *group);
        int k = 0;
        for (int j = i; group && j < n; j++)
            if (jobs[j] && needs[j].needed && !(texts && texts[j]) && strcmp(needs[j].key, needs[i].key) == 0) {
                group[k++] = jobs[j];
                jobs[j] = NULL;
                if (j != i)
                    needs[j].needed = false;
            }
        if (!group) {
            abandon_flight(r->cflight, needs[i].key);
            continue; /* no memory: the job is sent with its context as it is */
        }
        const TqKind *kd = config_kind(r->cfg, group[0]->kind);
        char *question = kd->compress.question_aware && !needs[i].prompt ? strdup(group[0]->prompt) : NULL;
        Call *c = call_new_compress(r->cfg, kd, group, k, needs[i].key, needs[i].cleaned, question,
                                    needs[i].tokens_before, needs[i].prompt);
        needs[i].cleaned = NULL; /* the call's now */
        if (!c) {
            /* no memory: the jobs go on with their context as it is (planned with the next turn) */
            abandon_flight(r->cflight, needs[i].key);
            for (int g = 0; g < k; g++)
                push_compressed(r, group[g]);
            free(group);
            continue;
        }
        free(group);
        c->next = calls;
        calls = c;
    }
    send_ready(r, calls);
    for (int i = 0; i < n; i++) {
        compress_need_free(&needs[i]);
        if (texts)
            free(texts[i]);
    }
    free(needs);
    free(texts);
    free(after);
}

/* Jobs whose compressed context is ready (release_compressed) go to the plan; when stopping they are
 * dropped and handed back with the rest. */
static void take_compressed(Run *r, int64_t now)
{
    pthread_mutex_lock(&r->ready_mu);
    QueueJob **jobs = r->ready;
    int n = r->nready;
    r->ready = NULL;
    r->nready = r->capready = 0;
    pthread_mutex_unlock(&r->ready_mu);
    /* and jobs whose compression was abandoned (no memory): out with their context as it is */
    QueueJob **gave_up = NULL;
    int ngave = 0;
    flight_take_released(r->cflight, &gave_up, &ngave);
    Call *ready = NULL;
    for (int i = 0; i < n + ngave; i++) {
        QueueJob *job = i < n ? jobs[i] : gave_up[i - n];
        if (r->stopping) {
            held_remove(r->held, job->id);
            job_free(job);
        } else {
            plan_job(r, job, now, &ready);
        }
    }
    free(jobs);
    free(gave_up);
    send_ready(r, ready);
}

static int claim_and_dispatch(Run *r, int limit, int *got)
{
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    *got = 0;
    int64_t t0 = clock_mono_ms();
    int64_t bytes_left = r->opt->max_held_bytes - held_bytes(r->held);
    if (r->opt->max_held_bytes > 0 && bytes_left < 1)
        bytes_left = 1; /* the caller only claims then when nothing is held: one job, whatever its size */
    if (queue_claim(r->conn, r->owner, r->kinds, r->nkinds, r->opt->run_name, limit, r->opt->lease_s,
                    r->opt->max_held_bytes > 0 ? bytes_left : 0, &jobs, &n, &err)) {
        log_msg(LOG_WARN, "run", "claim failed: %s", err.msg);
        return TQ_EDB;
    }
    for (int i = 0; i < n; i++) {
        held_add(r->held, jobs[i]->id, jobs[i]->attempt, job_input_bytes(jobs[i]));
        cache_prepare_job(r->cfg, config_kind(r->cfg, jobs[i]->kind), jobs[i], r->opt->no_cache,
                          r->opt->cache_read_only, r->opt->all_tiers);
    }
    serve_from_cache(r, jobs, n);
    /* A job identical to one in flight waits for its answer; the others go on. */
    for (int i = 0; i < n; i++)
        if (jobs[i] && (jobs[i]->cache_flags & JOB_CACHE_LOOKUP) && !lead_flight(r, jobs[i]))
            jobs[i] = NULL;
    /* Long contexts are compressed first: those jobs come back through the writer (release_compressed). */
    compress_stage(r, jobs, n);
    /* Jobs that can share a request wait in the plan for their batch (at most the kind's
     * batch.fill_ms); the rest go out at once. */
    int64_t now = clock_mono_ms();
    Call *ready = NULL;
    for (int i = 0; i < n; i++)
        if (jobs[i])
            plan_job(r, jobs[i], now, &ready);
    plan_take_due(r->plan, now, false, &ready);
    send_ready(r, ready);
    free(jobs);
    *got = n;
    log_msg(LOG_DEBUG, "run", "claimed n=%d of %d ms=%lld", n, limit, (long long)(clock_mono_ms() - t0));
    return 0;
}

/* Stopping: jobs still waiting for a batch were never sent; they go back with the rest. */
static void forget_held(void *ud, const QueueJob *job) { held_remove(ud, job->id); }

static int hand_back_call(Run *r, Call *c);

/* The writer wrote a call's ledger intent: the request may leave. When the pool is stopping the
 * request never leaves: its jobs go back to the queue. */
static void intent_written(void *ud, Call *parked)
{
    Run *r = ud;
    pthread_mutex_lock(&r->pool_mu);
    bool resumed = r->pool && pool_resume(r->pool, parked);
    pthread_mutex_unlock(&r->pool_mu);
    if (!resumed) {
        call_cancel_intent(parked);
        hand_back_call(r, parked);
    }
}

/* The writer hands every finished call here before freeing it: batch sizes learn from answers, and
 * jobs waiting on a finished leader get its answer (cache hits, through the writer) or go out
 * themselves. Runs on the writer thread. */
/* A job whose context is ready goes to the scheduler, which plans it (run_step, take_compressed). */
static void push_compressed(Run *r, QueueJob *job)
{
    pthread_mutex_lock(&r->ready_mu);
    if (r->nready == r->capready) {
        int cap = r->capready ? r->capready * 2 : 64;
        QueueJob **a = realloc(r->ready, (size_t)cap * sizeof *a);
        if (a) {
            r->ready = a;
            r->capready = cap;
        }
    }
    bool kept = r->nready < r->capready;
    if (kept)
        r->ready[r->nready++] = job;
    pthread_mutex_unlock(&r->ready_mu);
    if (!kept) { /* no memory: its lease expires and it runs again */
        abandon_job(r, job->id, job->cache_flags, job->cache_key);
        job_free(job);
    }
}

/* A compression call was written (its ledger row, its stored text): its jobs, and the jobs of later
 * claims that waited for the same key, go on with the compressed context — or, when the compressor's
 * output was not usable, with the cleaned original. Writer thread. */
static void release_compressed(Run *r, Call *c)
{
    const char *text = c->compress_output ? c->compress_output : c->compress_input;
    int after = c->compress_output ? c->compress_tokens_after : c->compress_tokens_before;
    for (int j = 0; j < c->njobs; j++) {
        CallJob *cj = &c->jobs[j];
        if (!cj->job || cj->outcome != CALL_JOB_PENDING)
            continue; /* failed already (a parameter, the provider's quota): written as such */
        int64_t id = cj->job->id;
        unsigned flags = cj->job->cache_flags;
        char key[sizeof cj->job->cache_key];
        memcpy(key, cj->job->cache_key, sizeof key);
        QueueJob *nj = compress_apply(cj->job, text ? text : "", c->compress_prompt,
                                      c->compress_output ? JOB_COMPRESSION_COMPRESSED : JOB_COMPRESSION_FAILED,
                                      c->compress_tokens_before, after, cj->spent_pico);
        cj->job = NULL; /* moved (or freed): it stays held */
        if (nj)
            push_compressed(r, nj);
        else
            abandon_job(r, id, flags, key);
    }
    QueueJob **waiters = NULL;
    int nw = 0;
    flight_land(r->cflight, c->compress_key, true, &waiters, &nw);
    for (int k = 0; k < nw; k++) {
        int64_t id = waiters[k]->id;
        unsigned flags = waiters[k]->cache_flags;
        char key[sizeof waiters[k]->cache_key];
        memcpy(key, waiters[k]->cache_key, sizeof key);
        QueueJob *nj = compress_apply(waiters[k], text ? text : "", c->compress_prompt,
                                      c->compress_output ? JOB_COMPRESSION_REUSED : JOB_COMPRESSION_FAILED,
                                      c->compress_tokens_before, after, 0);
        if (nj)
            push_compressed(r, nj);
        else
            abandon_job(r, id, flags, key);
    }
    free(waiters);
}

static void on_written_call(void *ud, Call *c)
{
    Run *r = ud;
    /* a compression call's jobs go on to be answered; those that failed in it (a parameter, the
     * provider's quota) land their answer flights below like any finished job */
    if (c->phase == CALL_PHASE_COMPRESS)
        release_compressed(r, c);
    plan_learn(r->plan, c);
    for (int j = 0; j < c->njobs; j++) {
        const CallJob *cj = &c->jobs[j];
        if (!cj->job || !(cj->job->cache_flags & JOB_CACHE_LEADS) || cj->outcome == CALL_JOB_PENDING ||
            cj->outcome == CALL_JOB_SHADOW)
            continue;
        bool shared = cache_answer_reusable(cj);
        QueueJob **waiters = NULL;
        int nw = 0;
        flight_land(r->flight, cj->job->cache_key, shared, &waiters, &nw);
        for (int k = 0; k < nw; k++) {
            CacheHit h = {.answer = strdup(cj->result), .model = cj->answer_model, .tier = cj->answer_tier,
                          .quality = cj->quality, .cost_pico = cj->spent_pico, .baseline_pico = cj->baseline_pico};
            if (!h.answer || !complete_from_cache(r, waiters[k], &h, true)) {
                held_remove(r->held, waiters[k]->id); /* no memory: its lease expires, it runs again */
                job_free(waiters[k]);
            }
            cache_hit_free(&h);
        }
        free(waiters);
    }
}

/* Appends "batch_size": {"kind/model": n, ...} for the kinds that batch. */
static int batch_size_field(Run *r, Buf *out)
{
    int rc = buf_puts(out, "\"batch_size\": {");
    int k = 0;
    for (int i = 0; i < r->nkinds && !rc; i++) {
        const TqKind *kind = config_kind(r->cfg, r->kinds[i]);
        if (!kind || !kind->batch.enabled)
            continue;
        for (int t = 0; t < kind->ntiers && !rc; t++) {
            int model = kind->tiers[t].model;
            char key[200];
            snprintf(key, sizeof key, "%s/%s", kind->name, r->cfg->models[model].name);
            rc = buf_puts(out, k++ ? ", " : "") || json_put_cstr(out, key) ||
                 buf_printf(out, ": %d", plan_batch_size(r->plan, kind, model));
        }
    }
    return rc || buf_puts(out, "}");
}

/* {"batch_size": {...}}: printed at the end of a run. */
static void batch_size_info(Run *r, Buf *out)
{
    buf_init(out, 1 << 16);
    if (buf_puts(out, "{") || batch_size_field(r, out) || buf_puts(out, "}"))
        buf_reset(out);
}

/* The heartbeat's info, for tierq status: the batch sizes, the models' health (breakers, limiters)
 * and the share of the rate limits this process takes. */
static void heartbeat_info(Run *r, Buf *out)
{
    buf_init(out, 1 << 16);
    if (buf_puts(out, "{") || batch_size_field(r, out) || buf_puts(out, ", \"models\": ") ||
        (r->pool ? pool_health_json(r->pool, out) : buf_puts(out, "{}")) ||
        buf_printf(out, ", \"rate_share\": %d}", r->rate_share))
        buf_reset(out);
}

static void renew_leases(Run *r)
{
    int64_t *ids = NULL;
    int *atts = NULL;
    int n = held_snapshot(r->held, &ids, &atts);
    if (n > 0) {
        TqErr err = {0};
        int renewed = 0;
        /* In slices, so one statement stays small even with many thousands in flight. */
        for (int off = 0; off < n; off += 5000) {
            int k = n - off < 5000 ? n - off : 5000;
            int got = 0;
            if (queue_renew(r->conn, r->owner, ids + off, atts + off, k, r->opt->lease_s, NULL, &got, &err)) {
                log_msg(LOG_WARN, "run", "lease renewal failed: %s", err.msg);
                break;
            }
            renewed += got;
        }
        if (renewed < n)
            log_msg(LOG_DEBUG, "run", "renewed %d of %d leases (the rest finished or were lost)", renewed, n);
    }
    free(ids);
    free(atts);
}

static void print_progress(Run *r, bool final)
{
    WriterStats st;
    writer_get_stats(r->writer, &st);
    int64_t finished = st.jobs_done + st.jobs_failed;
    double secs = (double)(clock_mono_ms() - r->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)finished / secs : 0;
    char usd[32];
    cost_format_usd(usd, sizeof usd, st.cost_pico, 6);
    int64_t left = r->total - finished;
    char eta[32] = "-";
    if (rate > 0 && left > 0)
        snprintf(eta, sizeof eta, "%.0fs", (double)left / rate);
    else if (left <= 0)
        snprintf(eta, sizeof eta, "0s");
    bool tty = isatty(STDERR_FILENO);
    fprintf(stderr, "%sprogress: %lld/%lld done, %.0f jobs/s, $%s so far, %d in flight, ETA %s%s", tty ? "\r" : "",
            (long long)finished, (long long)r->total, rate, usd, held_count(r->held), eta,
            tty && !final ? "   " : "\n");
    fflush(stderr);
}

/* A call cut short by the stop: its jobs go back to the queue without spending an attempt, through
 * the writer, so the ledger rows of exchanges it already paid for are written with them. Returns
 * the number of jobs handed back. */
static int hand_back_call(Run *r, Call *c)
{
    int n = 0;
    for (int j = 0; j < c->njobs; j++) {
        CallJob *cj = &c->jobs[j];
        if (!cj->job || cj->outcome != CALL_JOB_PENDING)
            continue;
        free(cj->result);
        cj->result = NULL;
        free(cj->error);
        cj->error = strdup("handed_back: the run stopped before this job finished; it goes back to the queue");
        cj->outcome = CALL_JOB_FAIL;
        cj->reason = "handed_back";
        cj->retryable = true;
        cj->keep_attempt = true;
        cj->retry_after_ms = 0;
        n++;
    }
    fifo_push(r->done, c);
    return n;
}

static void hand_back_all(Run *r)
{
    /* two tries only: with the database away, the leases expire instead */
    for (int tries = 0; tries < 2; tries++) {
        if (ensure_conn(r) == 0) {
            TqErr err = {0};
            int handed = 0;
            if (queue_hand_back(r->conn, r->owner, NULL, 0, &handed, &err) == 0) {
                if (handed)
                    log_msg(LOG_INFO, "run", "handed back %d unfinished jobs", handed);
                return;
            }
            log_msg(LOG_WARN, "run", "hand back failed: %s", err.msg);
        }
        usleep(250000);
    }
    log_msg(LOG_WARN, "run", "could not hand jobs back; their leases expire and another run takes them");
}

/* Results an earlier run on this machine could not write (the database was away when it stopped)
 * are written now, before anything is claimed: their jobs are still leased to that run. */
static void replay_spilled(Run *r)
{
    const char *dir = r->opt->spill_dir;
    if (!dir)
        dir = spill_default_dir(r->spill_dir, sizeof r->spill_dir);
    if (!dir) {
        log_msg(LOG_WARN, "run", "no spill directory (neither --spill-dir, TIERQ_SPILL_DIR nor HOME is set): results"
                " that cannot be written at shutdown are left to lease expiry");
        r->spill_dir[0] = '\0';
        return;
    }
    if (dir != r->spill_dir)
        snprintf(r->spill_dir, sizeof r->spill_dir, "%s", dir);
    SpillReplay sr;
    TqErr err = {0};
    int rc = spill_replay(r->conn, r->spill_dir, &sr, &err);
    if (sr.files || sr.refused)
        log_msg(LOG_INFO, "run", "replayed %d spilled write-backs from %s: %lld done, %lld back to the queue, %lld failed%s",
                sr.files, r->spill_dir, (long long)sr.done, (long long)sr.retry, (long long)sr.failed,
                sr.refused ? "; some were refused and kept as *.refused" : "");
    if (rc)
        log_msg(LOG_WARN, "run", "spill replay stopped: %s (the rest is replayed by a later run)", err.msg);
}

/* ---- setup, loop, shutdown ------------------------------------------------------------------- */

/* Connect, register, start the writer and the pool (with SIGINT and
 * SIGTERM blocked, so only this thread receives them), install the handlers, LISTEN. Returns 0,
 * or RUN_EXIT_RUNTIME after printing why. */
static int run_setup(Run *r)
{
    const TqConfig *cfg = r->cfg;
    const RunOptions *opt = r->opt;
    TqErr err = {0};
    raise_fd_limit();
    no_core_dumps();
    large_allocations_returned();
    signal(SIGPIPE, SIG_IGN);
    if (parse_kinds(r)) {
        fprintf(stderr, "tierq: run: --kinds names no kind defined in %s\n", cfg->dir);
        return RUN_EXIT_RUNTIME;
    }
    if (db_connect(NULL, &r->conn, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        return RUN_EXIT_RUNTIME;
    }
    if (cfg->nwarnings > 0)
        log_msg(LOG_WARN, "run", "%d setting(s) in %s are accepted but not yet in effect; `tierq config check` lists them",
                cfg->nwarnings, cfg->dir);
    queue_make_worker_id(r->owner, sizeof r->owner);
    if (queue_worker_register(r->conn, r->owner, "{}", &err))
        log_msg(LOG_WARN, "run", "cannot register in tierq.workers: %s", err.msg);
    replay_spilled(r);
    /* a drain run limited to a run or kinds is a targeted job: it fires nothing into other runs */
    bool fires = !opt->no_schedules && !(opt->drain && (opt->run_name || opt->kinds_csv));
    if (!opt->drain) {
        PGresult *su = db_query(r->conn, "role check", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", 0,
                                NULL, &err);
        if (su && PQntuples(su) == 1 && PQgetvalue(su, 0, 0)[0] == 't')
            log_msg(LOG_WARN, "run", "this daemon connects as a superuser; run it as a role in tierq_daemon that is not"
                    " one (README, Schedules: whose rights a schedule runs with)");
        PQclear(su);
    }
    if (fires && opt->drain) {
        /* a drain run fires what is due once, at start, and then drains it: a nightly cron line
         * `tierq run --drain` serves the schedules too */
        /* on a connection of its own: a source runs there (whatever it leaves is discarded with it) */
        PGconn *fc = NULL;
        if (db_connect(NULL, &fc, &err) || firer_pass(fc, r->owner, 1, 1, &r->drain_fires, &err))
            log_msg(LOG_WARN, "run", "firing due schedules: %s", err.msg);
        if (fc)
            PQfinish(fc);
    }
    r->total = remaining_jobs(r, false, &err);
    if (r->total < 0)
        r->total = 0;

    r->drifted = calloc((size_t)cfg->nkinds, sizeof *r->drifted);
    r->model_closes = calloc((size_t)(cfg->nmodels > 0 ? cfg->nmodels : 1), sizeof *r->model_closes);
    r->shifted = calloc((size_t)cfg->nkinds, sizeof *r->shifted);
    r->boost_mark = calloc((size_t)cfg->nkinds, sizeof *r->boost_mark);
    r->tier_dropped = calloc((size_t)cfg->nkinds * 8, sizeof *r->tier_dropped);
    for (int i = 0; i < r->nkinds; i++) {
        const TqKind *kd = config_kind(cfg, r->kinds[i]);
        r->shadowing |= kd && kd->shadow.rate > 0 && !opt->all_tiers;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    run_wake_fd = r->efd;
    r->held = held_new();
    r->done = callq_new();
    r->flight = flight_new();
    r->cflight = flight_new();
    r->next_cache_upkeep = clock_mono_ms(); /* at start: a nightly --drain may end before a minute */
    if (r->efd < 0 || !r->held || !r->done || !r->flight || !r->cflight || !r->drifted || !r->shifted || !r->boost_mark || !r->tier_dropped || plan_new(&r->plan, cfg, opt->all_tiers, &err)) {
        fprintf(stderr, "tierq: run: cannot set up: %s\n", r->efd < 0 ? strerror(errno) : "out of memory");
        return RUN_EXIT_RUNTIME;
    }
    /* Signals are handled by this thread only: block them while the other threads start. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    /* The writer wakes the scheduler after each flush (not the workers after each answer: that costs
     * more wake-ups than it gains claims); the poll interval covers the rest. */
    WriterOptions wopt = {.on_call = on_written_call, .ud = r, .spill_dir = r->spill_dir[0] ? r->spill_dir : NULL,
                          .on_intent = intent_written};
    int wrc = writer_start(&r->writer, NULL, r->owner, r->done, r->held, r->efd, &wopt, &err);
    int prc = wrc ? -1 : pool_start(&r->pool, cfg, &opt->pool, r->owner, r->done, &err);
    /* --drain too: due times that come while it drains fire, and budgeted runs are checked */
    /* with --no-schedules too: it still stops claims of runs whose per-fire budget is spent */
    int frc = wrc || prc ? 0 : firer_start(r->owner, fires, &r->firer, &err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (wrc || prc || frc) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        return RUN_EXIT_RUNTIME;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    /* HUP (a closed terminal) and QUIT stop the run like TERM: claimed jobs are handed back, not
     * left to lease expiry, and QUIT dumps no core */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    if (waker_open(&r->waker, NULL, opt->poll_only, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        return RUN_EXIT_RUNTIME;
    }
    log_msg(LOG_INFO, "run", "started worker=%s kinds=%d max_in_flight=%d queued=%lld%s", r->owner, r->nkinds,
            opt->pool.max_in_flight, (long long)r->total, opt->drain ? " drain" : "");
    r->start_ms = clock_mono_ms();
    r->next_renew = r->start_ms + opt->lease_s * 1000 / 3;
    r->next_beat = r->start_ms;
    r->next_progress = r->start_ms + 1000;
    return 0;
}

/* Index in cfg of a kind claimed here, or -1. */
static int claimed_kind(const Run *r, const char *kind)
{
    int k = 0;
    while (k < r->cfg->nkinds && strcmp(r->cfg->kinds[k].name, kind) != 0)
        k++;
    for (int j = 0; j < r->nkinds && k < r->cfg->nkinds; j++)
        if (strcmp(r->kinds[j], kind) == 0)
            return k;
    return -1;
}

static void set_boost(Run *r, int k, double factor)
{
    pthread_mutex_lock(&r->pool_mu);
    pool_set_shadow_boost(r->pool, k, factor);
    pthread_mutex_unlock(&r->pool_mu);
}

/* The free early warning: a kind whose first tier now answers a different share of its jobs than
 * before (tierq.first_tier_shift_windows) is said once, the shift is recorded with its change point
 * (tierq.tier_shifts: from there each tier is held to its past), and its shadow calls are sampled at
 * shadow.boost x the rate until the kind's shadow window is made only of comparisons after the shift
 * and the first tier has RUN_SHIFT_CONFIRM of them — so the estimates confirm or clear it within a
 * few hundred to two thousand jobs rather than tens of thousands. (Not until the share settles: the
 * share settles once the 1,000 jobs before are themselves after the change, often before the window
 * has filled.) */
static void check_tier_shift(Run *r)
{
    QueueTierShift sh[64];
    int n = 0;
    TqErr err = {0};
    if (queue_first_tier_shift(r->conn, r->opt->run_name, sh, 64, &n, &err)) {
        log_msg(LOG_WARN, "run", "cannot read the first tiers' shares: %s", err.msg);
        return;
    }
    for (int i = 0; i < n; i++) {
        int k = claimed_kind(r, sh[i].kind);
        if (k < 0)
            continue;
        const TqKind *kd = &r->cfg->kinds[k];
        double now = sh[i].recent_jobs ? 100.0 * (double)sh[i].recent_first / (double)sh[i].recent_jobs : 0;
        double before = sh[i].reference_jobs ? 100.0 * (double)sh[i].reference_first / (double)sh[i].reference_jobs : 0;
        if (sh[i].shifted && !r->shifted[k])
            log_msg(LOG_WARN, "run",
                    "kind %s: its first tier now answers %.0f%% of the jobs (last %lld) against %.0f%% of the %lld before"
                    " (z %.1f): its model's answers or the jobs changed; shadow calls sampled at %gx the rate to tell",
                    sh[i].kind, now, (long long)sh[i].recent_jobs, before, (long long)sh[i].reference_jobs, sh[i].z,
                    kd->shadow.boost);
        if (sh[i].shifted && (!r->boost_mark[k] || !r->shifted[k])) {
            /* the change point, for every tier's test against its past (tierq.shadow_tier_drift) and for
             * the end of the boost: the kind's last shadow call now. A new shift while the boost of an
             * earlier one lasts (a model that recovered, then fell) moves it: the comparisons since the
             * earlier point would mix the two. */
            int64_t mark = 0;
            if (queue_shadow_mark(r->conn, kd->name, &mark, &err) == 0) {
                r->boost_mark[k] = mark > 0 ? mark : 1;
                if (kd->shadow.boost > 1)
                    set_boost(r, k, kd->shadow.boost);
                /* not recorded, the tiers are held to their past by their latest comparisons only */
                if (queue_record_tier_shift(r->conn, &sh[i], r->opt->run_name, r->owner, mark, &err))
                    log_msg(LOG_WARN, "run", "kind %s: cannot record its first tier's shift: %s", kd->name, err.msg);
            }
        } else if (!sh[i].shifted && r->boost_mark[k]) {
            /* until the kind's window is after the shift and the first tier has RUN_SHIFT_CONFIRM
             * comparisons after it — enough for its test against its past to resolve a fall of 15 points
             * (or far more were made: the first tier may answer almost nothing now) */
            int64_t since = 0, first = 0;
            if (queue_shadow_since(r->conn, kd->name, 0, r->boost_mark[k], 20 * kd->shadow.window, &since, &err) == 0 &&
                queue_shadow_since(r->conn, kd->name, 1, r->boost_mark[k], RUN_SHIFT_CONFIRM, &first, &err) == 0 &&
                since >= kd->shadow.window && (first >= RUN_SHIFT_CONFIRM || since >= 20 * kd->shadow.window)) {
                if (kd->shadow.boost > 1)
                    log_msg(LOG_INFO, "run",
                            "kind %s: its first tier's share settled (%.0f%%) and its shadow window is all after the"
                            " shift; shadow rate back to %g",
                            sh[i].kind, now, kd->shadow.rate);
                r->boost_mark[k] = 0;
                set_boost(r, k, 1);
            }
        }
        r->shifted[k] = sh[i].shifted;
    }
}

/* The live shadow estimates of the kinds claimed here: a kind whose answers stopped agreeing with its
 * baseline model's (the 95% interval below its min_agreement) is said once, loudly, and again when it
 * recovers. Returns the number of kinds below their bar, -1 when the estimate could not be read. */
static int check_shadow(Run *r)
{
    QueueShadowEstimate est[64];
    int n = 0, below = 0;
    TqErr err = {0};
    if (queue_shadow_estimates(r->conn, r->opt->run_name, est, 64, &n, &err)) {
        log_msg(LOG_WARN, "run", "cannot read the shadow estimates: %s", err.msg);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int k = claimed_kind(r, est[i].kind);
        if (k < 0)
            continue;
        below += est[i].below;
        if (est[i].below && !r->drifted[k])
            log_msg(LOG_WARN, "run",
                    "kind %s: its answers agree with the baseline model's only %.0f%% of the time (%lld of the last %lld"
                    " shadow comparisons, 95%% interval %.0f-%.0f%%), below its shadow.min_agreement %.0f%%: the cheaper"
                    " tiers have drifted; recalibrate or raise their bars",
                    est[i].kind, 100 * est[i].agreement, (long long)est[i].agreed, (long long)est[i].compared,
                    100 * est[i].low, 100 * est[i].high, 100 * est[i].min_agreement);
        else if (!est[i].below && r->drifted[k])
            log_msg(LOG_INFO, "run",
                    "kind %s: shadow agreement %.0f%% (95%% interval up to %.0f%%) no longer wholly below its"
                    " min_agreement %.0f%%",
                    est[i].kind, 100 * est[i].agreement, 100 * est[i].high, 100 * est[i].min_agreement);
        r->drifted[k] = est[i].below;
    }
    return below;
}

/* Each tier against its own past (tierq.shadow_tier_drift): a tier whose agreement with the baseline
 * fell far beyond chance is said once, loudly. Returns how many (kind, tier) of the kinds claimed here
 * have dropped, -1 when it could not be read. */
static int check_tier_drift(Run *r)
{
    QueueTierDrift dr[256];
    int n = 0, dropped = 0;
    TqErr err = {0};
    if (queue_shadow_tier_drift(r->conn, r->opt->run_name, dr, 256, &n, &err)) {
        log_msg(LOG_WARN, "run", "cannot read the shadow drift per tier: %s", err.msg);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int k = claimed_kind(r, dr[i].kind);
        if (k < 0 || dr[i].tier < 1 || dr[i].tier > 8)
            continue;
        bool *was = &r->tier_dropped[k * 8 + dr[i].tier - 1];
        /* once said, it stays said until the tier is back near its past (z above -2), not the moment the
         * latest 30 happen to sit at -3.4: one warning per fall, not one per wobble */
        bool now_dropped = dr[i].dropped || (*was && !(dr[i].z > -2.0));
        dropped += now_dropped;
        double now = 100.0 * (double)dr[i].recent_agreed / (double)(dr[i].recent_compared ? dr[i].recent_compared : 1);
        double before =
            100.0 * (double)dr[i].reference_agreed / (double)(dr[i].reference_compared ? dr[i].reference_compared : 1);
        if (now_dropped && !*was)
            log_msg(LOG_WARN, "run",
                    "kind %s: tier %d's answers agree with the baseline model's %.0f%% of the time (last %lld shadow"
                    " comparisons) against %.0f%% before (%lld; z %.1f): that tier has drifted; recalibrate or raise its bar",
                    dr[i].kind, dr[i].tier, now, (long long)dr[i].recent_compared, before,
                    (long long)dr[i].reference_compared, dr[i].z);
        else if (!now_dropped && *was)
            log_msg(LOG_INFO, "run", "kind %s: tier %d's agreement with the baseline model back to %.0f%%", dr[i].kind,
                    dr[i].tier, now);
        *was = now_dropped;
    }
    return dropped;
}

/* A model whose breaker closed: the jobs that went back to the queue to wait for it are due now, not
 * at the probe times they were given (a cooldown each, up to minutes after the model came back). */
static void wake_recovered(Run *r)
{
    for (int m = 0; r->pool && r->model_closes && m < r->cfg->nmodels; m++) {
        uint64_t closes = pool_model_closes(r->pool, m);
        if (closes == r->model_closes[m])
            continue;
        r->model_closes[m] = closes;
        int64_t woken = 0;
        TqErr err = {0};
        if (queue_wake_waiting(r->conn, r->cfg->models[m].name, &woken, &err) != 0)
            log_msg(LOG_WARN, "run", "model %s is back, but its waiting jobs could not be called back (they come"
                    " at their run_after): %s", r->cfg->models[m].name, err.msg);
        else if (woken > 0)
            log_msg(LOG_INFO, "run", "model %s is back: %lld jobs waiting for it are due now", r->cfg->models[m].name,
                    (long long)woken);
    }
}

/* Housekeeping due by now: call back jobs whose model recovered, requeue expired leases (any
 * process's), renew ours, heartbeat, progress. */
static void run_housekeeping(Run *r, int64_t now)
{
    const RunOptions *opt = r->opt;
    TqErr err = {0};
    wake_recovered(r);
    if (now >= r->next_requeue) {
        int rq = 0, dead = 0, settled = 0;
        if (queue_settle_orphans(r->conn, RUN_ORPHAN_AFTER_S, 10000, &settled, &err) == 0 && settled)
            log_msg(LOG_WARN, "run", "settled %d requests of a process that died with them in flight (status unknown,"
                    " estimated cost charged to their jobs)", settled);
        if (queue_requeue_expired(r->conn, 10000, &rq, &dead, &err) == 0 && (rq || dead))
            log_msg(LOG_INFO, "run", "requeued %d expired leases, %d jobs dead after max_attempts", rq, dead);
        r->next_requeue = now + (opt->lease_s * 1000) / 2;
    }
    if (now >= r->next_renew) {
        renew_leases(r);
        r->next_renew = now + opt->lease_s * 1000 / 3;
    }
    int64_t finished = 0;
    if (r->shadowing) {
        WriterStats ws;
        writer_get_stats(r->writer, &ws);
        finished = ws.jobs_done + ws.jobs_failed;
    }
    if (r->shadowing && (now >= r->next_shadow_check ||
                         (finished - r->jobs_at_shadow_check >= RUN_SHADOW_CHECK_JOBS &&
                          now - r->last_shadow_check >= RUN_SHADOW_CHECK_MIN_MS))) {
        check_tier_shift(r);
        check_shadow(r);
        check_tier_drift(r);
        r->next_shadow_check = now + RUN_SHADOW_CHECK_MS;
        r->last_shadow_check = now;
        r->jobs_at_shadow_check = finished;
    }
    if (now >= r->next_cache_upkeep) {
        CacheUpkeep cu;
        if (cache_upkeep(r->conn, r->cfg, RUN_CACHE_UPKEEP_LIMIT, &cu, &err) != 0)
            log_msg(LOG_WARN, "run", "cache upkeep failed: %s", err.msg);
        else if (cu.expired || cu.evicted)
            log_msg(LOG_INFO, "run", "cache: %lld expired entries deleted, %lld evicted (%lld bytes) to stay within"
                    " cache.max_entries and cache.max_mb", (long long)cu.expired, (long long)cu.evicted,
                    (long long)cu.evicted_bytes);
        int64_t gone = 0;
        if (compress_upkeep(r->conn, RUN_CACHE_UPKEEP_LIMIT, &gone, &err) != 0)
            log_msg(LOG_WARN, "run", "compressed context upkeep failed: %s", err.msg);
        else if (gone)
            log_msg(LOG_INFO, "run", "%lld expired compressed contexts deleted", (long long)gone);
        r->next_cache_upkeep = now + RUN_CACHE_UPKEEP_MS;
    }
    if (now >= r->next_beat) {
        Buf info;
        heartbeat_info(r, &info);
        int live = 1;
        if (queue_worker_heartbeat(r->conn, r->owner, held_count(r->held), info.data, &live, &err) == 0 && r->pool &&
            live != r->rate_share) {
            /* the account limits are split between the live processes (README "Rate limits and outages") */
            log_msg(LOG_INFO, "run", "rate limits: %d tierq processes are live; this one takes 1/%d of each limit", live,
                    live);
            pool_set_rate_share(r->pool, live);
            r->rate_share = live;
        }
        buf_free(&info);
        r->next_beat = now + RUN_HEARTBEAT_MS;
    }
    if (opt->progress && now >= r->next_progress) {
        print_progress(r, false);
        r->next_progress = now + 1000;
    }
}

/* With --budget-usd: how many more jobs the budget can pay for, at what a job has cost so far in
 * this run, counting the jobs already held as spent. Before anything has finished, a small first
 * claim measures the price. Keeps a ceiling from being overshot by whole claims (hundreds of jobs
 * at once): what goes past it is what the last few jobs in flight spend. */
static int budget_room(Run *r, int held)
{
    WriterStats ws;
    writer_get_stats(r->writer, &ws);
    int64_t finished = ws.jobs_done + ws.jobs_failed + ws.jobs_retry;
    int64_t left = r->opt->budget_micro * 1000000 - ws.cost_pico;
    if (left <= 0)
        return 0;
    if (finished == 0 || ws.cost_pico == 0)
        return held == 0 ? 16 : 0;
    /* Only a quarter of what is left per round: jobs differ in price (a run's cheap kinds may come
     * first), so claims shrink as the ceiling nears and the average has time to catch up. */
    int64_t per_job = ws.cost_pico / finished + 1;
    int64_t afford = left / 4 / per_job - held;
    return afford <= 0 ? 0 : afford > INT32_MAX ? INT32_MAX : (int)afford;
}

/* Claim as much as there is room for. Returns true when the loop should go round again at once
 * (a full claim: more is probably waiting). Sets *drained when --drain finds nothing left. */
static bool run_claim(Run *r, int64_t now, bool *drained)
{
    const RunOptions *opt = r->opt;
    int max_in_flight = opt->pool.max_in_flight;
    /* Keep a little more claimed than can be in flight, so workers never wait for us. Jobs already
     * answered and waiting for the writer do not count against that (a wave of answers must not
     * stall sending), but the total held is bounded to bound memory. */
    int held = held_count(r->held);
    int room = max_in_flight + max_in_flight / 2 - pool_pending(r->pool);
    int cap_left = 2 * max_in_flight - held;
    if (cap_left < room)
        room = cap_left;
    int want = room < opt->claim_batch ? room : opt->claim_batch;
    int min_claim = max_in_flight / 4 > 0 ? max_in_flight / 4 : 1;
    if (opt->max_held_bytes > 0 && held > 0 && held_bytes(r->held) >= opt->max_held_bytes)
        want = 0; /* the input text held is at its bound: wait for jobs to finish */
    if (opt->budget_micro > 0) {
        int afford = budget_room(r, held);
        if (afford == 0 && held == 0) {
            /* what is left cannot pay for one more job at this run's prices: the ceiling is reached */
            r->budget_hit = true;
            log_msg(LOG_WARN, "run", "budget reached: what is left would not pay for another job; no more claims");
            return false;
        }
        if (afford < want)
            want = afford;
        min_claim = 1; /* near the ceiling, small claims are the point */
    }
    int got = 0;
    if (want > 0 && (want >= min_claim || held == 0)) {
        if (claim_and_dispatch(r, want, &got) == 0 && got == want)
            return true;
    }
    /* pool_pending: shadow calls hold no job, yet a drained run waits for them too */
    if (opt->drain && got == 0 && held_count(r->held) == 0 && pool_pending(r->pool) == 0 &&
        now - r->last_drain_check >= 200) {
        r->last_drain_check = now;
        TqErr err = {0};
        *drained = remaining_jobs(r, true, &err) == 0;
    }
    return false;
}

/* Sleep until the next thing is due: a NOTIFY, a write-back, a batch's fill window, housekeeping. */
static void run_wait(Run *r, int64_t now)
{
    const RunOptions *opt = r->opt;
    Call *ready = NULL;
    int64_t group_due = plan_take_due(r->plan, clock_mono_ms(), false, &ready);
    send_ready(r, ready);
    int timeout = opt->poll_ms;
    int64_t soonest = r->next_renew < r->next_requeue ? r->next_renew : r->next_requeue;
    if (opt->progress && r->next_progress < soonest)
        soonest = r->next_progress;
    if (group_due < soonest)
        soonest = group_due;
    if (soonest - now < timeout)
        timeout = soonest - now < 0 ? 0 : (int)(soonest - now);
    if (opt->drain && held_count(r->held) == 0 && timeout > 200)
        timeout = 200;
    bool notified = false;
    TqErr err = {0};
    waker_wait(&r->waker, timeout, r->efd, &notified, &err);
}

/* One pass of the loop. Returns false when the run is over. */
static bool run_step(Run *r)
{
    const RunOptions *opt = r->opt;
    int64_t now = clock_mono_ms();
    if (run_signals > 0 && !r->stopping) {
        r->stopping = true;
        r->stop_deadline = now + (int64_t)opt->grace_s * 1000;
        log_msg(LOG_INFO, "run", "stopping: no new claims; %d jobs in flight get %ds to finish", held_count(r->held),
                opt->grace_s);
    }
    if (r->stopping && plan_waiting(r->plan) > 0)
        plan_drop(r->plan, forget_held, r->held);
    if (r->stopping && flight_waiting(r->flight) > 0)
        flight_drop(r->flight, forget_held, r->held);
    if (r->stopping && flight_waiting(r->cflight) > 0)
        flight_drop(r->cflight, forget_held, r->held);
    replan_released(r, now);
    take_compressed(r, now);
    /* what is left may be only escalations waiting for a model's probe: they would not finish in the
     * grace period of an outage; handed back now (their jobs keep their attempts) */
    if (r->stopping && (held_count(r->held) <= pool_outage_held_jobs(r->pool) || run_signals > 1 ||
                        now >= r->stop_deadline))
        return false;
    if (ensure_conn(r)) {
        usleep(r->stopping ? 100000 : 500000); /* stopping: keep the deadline to a tenth of a second */
        return true;
    }
    run_housekeeping(r, now);
    if (!r->stopping && opt->budget_micro > 0 && !r->budget_hit) {
        /* Spend is counted when written; in-flight calls may add a little past the ceiling. */
        WriterStats ws;
        writer_get_stats(r->writer, &ws);
        if (ws.cost_pico >= opt->budget_micro * 1000000) {
            r->budget_hit = true;
            log_msg(LOG_WARN, "run", "budget reached: no more claims; %d jobs in flight finish", held_count(r->held));
        }
    }
    if (r->budget_hit && held_count(r->held) == 0)
        return false;
    if (!r->stopping && !r->budget_hit) {
        bool drained = false;
        if (run_claim(r, now, &drained))
            return true;
        if (drained)
            return false;
    }
    run_wait(r, now);
    return true;
}

/* Stop the pool (in-flight calls come back and their jobs are handed back), flush the writer, hand
 * everything else back, print the summary. Returns the exit code. */
static int run_shutdown(Run *r)
{
    const RunOptions *opt = r->opt;
    plan_drop(r->plan, forget_held, r->held);
    flight_drop(r->flight, forget_held, r->held);
    flight_drop(r->cflight, forget_held, r->held);
    if (opt->progress)
        print_progress(r, true);
    Buf sizes;
    batch_size_info(r, &sizes);
    int peak = pool_peak_in_flight(r->pool);
    bool quota = pool_provider_stopped(r->pool);
    Call *leftover = NULL;
    pthread_mutex_lock(&r->pool_mu);
    pool_stop(r->pool, &leftover);
    r->pool = NULL;
    pthread_mutex_unlock(&r->pool_mu);
    int nleft = 0;
    while (leftover) {
        Call *next = leftover->next;
        nleft += hand_back_call(r, leftover);
        leftover = next;
    }
    /* The database gets a few seconds past the grace period; then what is left is spilled. */
    int64_t now = clock_mono_ms();
    int64_t give_up = (r->stopping && r->stop_deadline > now ? r->stop_deadline : now) + RUN_FINAL_WRITE_MS;
    WriterStats st;
    writer_stop_by(r->writer, give_up, &st);
    r->writer = NULL;
    if (st.spilled_calls == 0 && st.unwritten_calls == 0)
        hand_back_all(r); /* else the database was just found away: the leases expire instead */
    else
        log_msg(LOG_WARN, "run", "the database is out of reach: claimed jobs go back to the queue when their leases expire");
    char cost[32], base[32];
    cost_format_usd(cost, sizeof cost, st.cost_pico, 6);
    cost_format_usd(base, sizeof base, st.baseline_pico, 6);
    int64_t jobs = st.jobs_done + st.jobs_failed + st.jobs_retry;
    double secs = (double)(clock_mono_ms() - r->start_ms) / 1000.0;
    FirerCounts fc = {0};
    if (r->firer)
        firer_counts(r->firer, &fc);
    fc.fires += r->drain_fires.fires;
    fc.jobs += r->drain_fires.jobs;
    fc.errors += r->drain_fires.errors;
    fc.skipped += r->drain_fires.skipped;
    fc.pruned += r->drain_fires.pruned;
    if (fc.fires > 0 || fc.skipped > 0)
        printf("run: schedules: %lld fires, %lld jobs enqueued, %lld fires whose source failed, %lld due times skipped,"
               " %lld jobs pruned\n", (long long)fc.fires, (long long)fc.jobs, (long long)fc.errors,
               (long long)fc.skipped, (long long)fc.pruned);
    printf("run: %lld done, %lld failed or dead, %lld attempts back to the queue, %lld lease_lost, %d handed back in %.1fs\n",
           (long long)st.jobs_done, (long long)st.jobs_failed, (long long)st.jobs_retry, (long long)st.lease_lost,
           nleft, secs);
    printf("run: %lld calls, cost $%s, baseline $%s, %lld write statements (%.4f per job), peak %d in flight\n",
           (long long)st.calls, cost, base, (long long)st.statements,
           jobs ? (double)st.statements / (double)jobs : 0.0, peak);
    int64_t hits = atomic_load(&r->cache_hits);
    if (hits > 0) {
        char saved[32];
        cost_format_usd(saved, sizeof saved, atomic_load(&r->cache_saved_pico), 6);
        printf("run: cache: %lld jobs answered from the cache at $0 (%lld by an identical job in flight), $%s saved\n",
               (long long)hits, (long long)atomic_load(&r->cache_from_flight), saved);
    }
    if (sizes.len > 20) /* more than the empty {"batch_size": {}} */
        printf("run: %s\n", sizes.data);
    buf_free(&sizes);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("run: %.0f jobs/s, cpu %.2fs user %.2fs system, peak rss %.1f MB\n", secs > 0 ? (double)jobs / secs : 0.0,
               (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, (double)ru.ru_maxrss / 1024.0);
    for (int i = 0; i < st.nfailures; i++)
        printf("run: %lld attempts without an answer, reason %s (e.g. %s)\n", (long long)st.failures[i].count,
               st.failures[i].reason, st.failures[i].sample);
    if (st.spilled_calls)
        printf("run: %lld calls could not be written (the database was out of reach) and were spilled to %s;"
               " the next tierq run on this machine writes them back\n",
               (long long)st.spilled_calls, r->spill_dir);
    if (st.unwritten_calls) {
        char lost[32];
        cost_format_usd(lost, sizeof lost, st.unwritten_pico, 6);
        fprintf(stderr, "tierq: run: %lld calls could be neither written nor spilled; their jobs run again after their"
                " leases expire, and $%s they cost is not in the ledger\n", (long long)st.unwritten_calls, lost);
    }
    int drifting = r->shadowing && ensure_conn(r) == 0 ? check_shadow(r) : 0;
    int tiers_dropped = r->shadowing && ensure_conn(r) == 0 ? check_tier_drift(r) : 0;
    if (drifting > 0)
        printf("run: %d kind(s) below their shadow.min_agreement: their answers have drifted from the baseline"
               " model's (tierq report, shadow evaluation)\n", drifting);
    if (tiers_dropped > 0)
        printf("run: %d tier(s) agree with the baseline model far less than before: they have drifted (tierq report,"
               " shadow evaluation)\n", tiers_dropped);
    if (tiers_dropped > 0 && drifting >= 0)
        drifting += tiers_dropped;
    int exit_code = quota ? RUN_EXIT_QUOTA : RUN_EXIT_OK;
    if (!quota && st.jobs_done == 0 && st.jobs_failed + st.jobs_retry > 0) {
        /* Nothing succeeded: a cron job must not read this as a good night. */
        exit_code = RUN_EXIT_NOTHING_DONE;
        fprintf(stderr, "tierq: run: no job succeeded; %lld attempts failed or went back to the queue%s%s\n",
                (long long)(st.jobs_failed + st.jobs_retry), st.nfailures == 1 ? ", all for the same reason: " : "",
                st.nfailures == 1 ? st.failures[0].sample : " (see the reasons above)");
    }
    if (r->budget_hit) {
        exit_code = RUN_EXIT_BUDGET;
        char b[32];
        cost_format_usd(b, sizeof b, opt->budget_micro * 1000000, 6);
        fprintf(stderr, "tierq: run: the run budget of $%s was reached; unclaimed jobs stay queued\n", b);
    }
    if (drifting > 0 && opt->fail_on_drift && exit_code == RUN_EXIT_OK)
        exit_code = RUN_EXIT_DRIFT;
    if (quota)
        fprintf(stderr, "tierq: run: a provider refused this account (insufficient_quota, or the API key with a 401); "
                        "its jobs stay queued for a later run\n");
    return exit_code;
}

/* Whatever setup got to, undone in reverse. */
static void run_free(Run *r)
{
    firer_stop(r->firer);
    r->firer = NULL;
    pthread_mutex_lock(&r->pool_mu);
    if (r->pool)
        pool_stop(r->pool, NULL);
    r->pool = NULL;
    pthread_mutex_unlock(&r->pool_mu);
    if (r->writer)
        writer_stop(r->writer, NULL);
    TqErr err = {0};
    if (r->conn && r->owner[0])
        queue_worker_unregister(r->conn, r->owner, &err);
    waker_close(&r->waker);
    if (r->conn)
        PQfinish(r->conn);
    plan_free(r->plan);
    flight_free(r->flight);
    flight_free(r->cflight);
    for (int i = 0; i < r->nready; i++)
        job_free(r->ready[i]);
    free(r->ready);
    free(r->drifted);
    free(r->model_closes);
    free(r->shifted);
    free(r->boost_mark);
    free(r->tier_dropped);
    held_free(r->held);
    fifo_free(r->done);
    run_wake_fd = -1;
    if (r->efd >= 0)
        close(r->efd);
    free(r->kinds);
}

int run_main(const TqConfig *cfg, const RunOptions *opt)
{
    Run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.opt = opt;
    r.efd = -1;
    r.rate_share = 1;
    pthread_mutex_init(&r.pool_mu, NULL);
    pthread_mutex_init(&r.ready_mu, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int exit_code = run_setup(&r);
    if (exit_code == 0) {
        while (run_step(&r)) {
        }
        exit_code = run_shutdown(&r);
    }
    run_free(&r);
    pthread_mutex_destroy(&r.pool_mu);
    pthread_mutex_destroy(&r.ready_mu);
    curl_global_cleanup();
    return exit_code;
}
