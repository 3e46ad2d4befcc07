#include "run.h"

#include "call.h"
#include "clock.h"
#include "cost.h"
#include "db.h"
#include "held.h"
#include "json.h"
#include "log.h"
#include "migrate.h"
#include "migrations.h"
#include "openai.h"
#include "pgarray.h"
#include "pool.h"
#include "queue.h"
#include "waker.h"
#include "writer.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t run_signals;

static void on_signal(int sig)
{
    (void)sig;
    run_signals++;
}

void run_default_options(RunOptions *o)
{
    memset(o, 0, sizeof *o);
    o->max_in_flight = 256;
    o->lease_s = 60;
    o->claim_batch = 500;
    o->poll_ms = 1000;
    o->grace_s = 30;
    o->max_response_bytes = 8L << 20;
    o->max_tries = 4;
}

/* Thousands of sockets in flight need more than the usual 1024 descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* An open group of claimed jobs waiting to fill a batch. */
typedef struct Group {
    const TqKind *kind;
    const char *params;   /* jobs batch together only with identical parameters */
    QueueJob **jobs;
    int n, cap;
    int64_t tokens;
    int64_t deadline_ms;  /* dispatch by then even if not full (the kind's batch.fill_ms) */
} Group;

typedef struct Run {
    const TqConfig *cfg;
    const RunOptions *opt;
    PGconn *conn;
    char owner[160];
    const char **kinds;
    int nkinds;
    HeldSet *held;
    Fifo *done;
    Pool *pool;
    Writer *writer;
    Waker waker;
    int efd;
    int64_t total;           /* jobs to do, for progress */
    int64_t start_ms;
    Group *groups;           /* batches filling up, across claims */
    int ngroups;
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
    r->kinds = calloc((size_t)r->cfg->nkinds, sizeof *r->kinds);
    if (!r->kinds)
        return TQ_ENOMEM;
    for (int i = 0; i < r->cfg->nkinds; i++) {
        const char *name = r->cfg->kinds[i].name;
        if (o->kinds_csv) {
            bool want = false;
            const char *p = o->kinds_csv;
            size_t n = strlen(name);
            while (*p) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len == n && strncmp(p, name, n) == 0)
                    want = true;
                p += len + (e ? 1 : 0);
            }
            if (!want)
                continue;
        }
        r->kinds[r->nkinds++] = name;
    }
    return r->nkinds ? 0 : TQ_EINVAL;
}

/* Jobs left for this process to wait for: queued and due soon, or running anywhere. */
static int64_t remaining_jobs(Run *r, bool due_soon_only, TqErr *err)
{
    Buf karr;
    pgarray_begin(&karr);
    for (int i = 0; i < r->nkinds; i++)
        pgarray_add_text(&karr, r->kinds[i]);
    pgarray_end(&karr);
    const char *p[] = {karr.data, r->opt->run_name, due_soon_only ? "t" : "f"};
    PGresult *res = db_query(r->conn, "count remaining jobs",
                             "SELECT count(*) FROM tierq.jobs WHERE kind = ANY ($1::text[])"
                             " AND ($2::text IS NULL OR run_name = $2)"
                             " AND (state = 'running' OR (state = 'queued'"
                             "      AND (NOT $3::bool OR run_after <= now() + interval '60 seconds')))",
                             3, p, err);
    buf_free(&karr);
    if (!res)
        return -1;
    int64_t n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

/* Jobs that may share a request: the kind batches, nothing per-job changes the shared prefix (own
 * system prompt, private context), and no check needs a request of its own per answer. */
static bool batchable(const Run *r, const TqKind *k, const QueueJob *j)
{
    return k->batch.enabled && !r->opt->all_tiers && k->checks.judge_model < 0 && !k->checks.agreement &&
           !j->system_prompt && !(j->context && *j->context);
}


static void dispatch(Run *r, const TqKind *kind, QueueJob **jobs, int n)
{
    Call *c = n == 1 ? call_new_for_job(r->cfg, kind, jobs[0]) : call_new_batch(r->cfg, kind, jobs, n);
    if (!c) {
        /* Short of memory: the leases expire and the jobs are claimed again. */
        log_msg(LOG_ERROR, "run", "cannot build a call for %d jobs", n);
        for (int i = 0; i < n; i++)
            job_free(jobs[i]);
        return;
    }
    c->all_tiers = r->opt->all_tiers;
    /* A job whose params the kind does not read failed when its call was made: it goes straight to
     * the writer, and a batch goes out without it. */
    int bad[256], nbad = 0;
    for (int i = 0; n > 1 && i < c->njobs && nbad < 256; i++)
        if (c->jobs[i].outcome == CALL_JOB_FAIL)
            bad[nbad++] = i;
    if (nbad > 0 && nbad < c->njobs) {
        Call *failed = call_fork(c, bad, nbad, 0);
        if (failed)
            fifo_push(r->done, failed);
    }
    if (call_is_finished(c))
        fifo_push(r->done, c);
    else
        pool_submit(r->pool, c);
}

static void flush_group(Run *r, Group *g)
{
    if (g->n > 0)
        dispatch(r, g->kind, g->jobs, g->n);
    g->n = 0;
    g->tokens = 0;
    g->params = NULL; /* pointed into a job that has gone to a call */
}

/* Dispatch the groups whose fill window has closed (all of them when force). Returns the earliest
 * deadline still open, or INT64_MAX. */
static int64_t flush_due_groups(Run *r, int64_t now, bool force)
{
    int64_t next = INT64_MAX;
    for (int k = 0; k < r->ngroups; k++) {
        Group *g = &r->groups[k];
        if (g->n == 0)
            continue;
        if (force || now >= g->deadline_ms)
            flush_group(r, g);
        else if (g->deadline_ms < next)
            next = g->deadline_ms;
    }
    return next;
}

/* Stopping: jobs still waiting in a group were never sent; they go back to the queue with the rest. */
static void drop_groups(Run *r)
{
    for (int k = 0; k < r->ngroups; k++) {
        Group *g = &r->groups[k];
        for (int i = 0; i < g->n; i++) {
            held_remove(r->held, g->jobs[i]->id);
            job_free(g->jobs[i]);
        }
        free(g->jobs);
    }
    free(r->groups);
    r->groups = NULL;
    r->ngroups = 0;
}

static int claim_and_dispatch(Run *r, int limit, int *got)
{
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    *got = 0;
    int64_t t0 = clock_mono_ms();
    if (queue_claim(r->conn, r->owner, r->kinds, r->nkinds, r->opt->run_name, limit, r->opt->lease_s, &jobs, &n, &err)) {
        log_msg(LOG_WARN, "run", "claim failed: %s", err.msg);
        return TQ_EDB;
    }
    /* Jobs that can share a request are grouped; a group goes out when full, or when its fill window
     * (the kind's batch.fill_ms, from its first job) closes, so a trickle is held back that long at most. */
    int64_t now = clock_mono_ms();
    for (int i = 0; i < n; i++) {
        QueueJob *j = jobs[i];
        held_add(r->held, j->id, j->attempt);
        const TqKind *kind = config_kind(r->cfg, j->kind);
        if (!kind) {
            log_msg(LOG_ERROR, "run", "job %lld: kind %s is not configured", (long long)j->id, j->kind);
            job_free(j);
            continue;
        }
        if (!batchable(r, kind, j)) {
            dispatch(r, kind, &j, 1);
            continue;
        }
        int size = pool_batch_size(r->pool, (int)(kind - r->cfg->kinds), kind->tiers[0].model);
        int64_t tokens = oai_estimate_tokens(j->prompt, strlen(j->prompt));
        Group *g = NULL;
        for (int k = 0; k < r->ngroups && !g; k++)
            if (r->groups[k].kind == kind && r->groups[k].n > 0 && strcmp(r->groups[k].params, j->params) == 0)
                g = &r->groups[k];
        for (int k = 0; k < r->ngroups && !g; k++)
            if (r->groups[k].kind == kind && r->groups[k].n == 0)
                g = &r->groups[k];
        if (!g) {
            Group *ng = realloc(r->groups, (size_t)(r->ngroups + 1) * sizeof *ng);
            if (!ng) {
                dispatch(r, kind, &j, 1);
                continue;
            }
            r->groups = ng;
            g = &r->groups[r->ngroups];
            memset(g, 0, sizeof *g);
            g->kind = kind;
            g->cap = kind->batch.max_items > 0 ? kind->batch.max_items : 1;
            g->jobs = calloc((size_t)g->cap, sizeof *g->jobs);
            if (!g->jobs) {
                dispatch(r, kind, &j, 1);
                continue;
            }
            r->ngroups++;
        }
        if (g->n > 0 && (g->n >= size || g->tokens + tokens > kind->batch.max_input_tokens))
            flush_group(r, g);
        if (g->n == 0) {
            g->params = j->params;
            g->deadline_ms = now + kind->batch.fill_ms;
        }
        g->jobs[g->n++] = j;
        g->tokens += tokens;
        if (g->n >= size)
            flush_group(r, g);
    }
    flush_due_groups(r, now, false);
    free(jobs);
    *got = n;
    log_msg(LOG_DEBUG, "run", "claimed n=%d of %d ms=%lld", n, limit, (long long)(clock_mono_ms() - t0));
    return 0;
}

/* {"batch_size": {"kind/model": n, ...}} for the kinds that batch: shown by tierq status. */
static void batch_size_info(Run *r, Buf *out)
{
    buf_init(out, 1 << 16);
    int rc = buf_puts(out, "{\"batch_size\": {");
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
                 buf_printf(out, ": %d", pool_batch_size(r->pool, (int)(kind - r->cfg->kinds), model));
        }
    }
    if (!rc)
        rc = buf_puts(out, "}}");
    if (rc)
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

static void hand_back_all(Run *r)
{
    for (int tries = 0; tries < 20; tries++) {
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

int run_main(const TqConfig *cfg, const RunOptions *opt)
{
    Run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.opt = opt;
    r.efd = -1;
    int exit_code = RUN_EXIT_RUNTIME;
    TqErr err = {0};
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (parse_kinds(&r)) {
        fprintf(stderr, "tierq: run: --kinds names no kind defined in %s\n", cfg->dir);
        goto out;
    }
    if (db_connect(NULL, &r.conn, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        goto out;
    }
    int version = migrate_current_version(r.conn, &err);
    int latest = tq_migrations[tq_migration_count - 1].version;
    if (version < latest) {
        fprintf(stderr, "tierq: run: the database schema is at version %d, this tierq needs %d: run `tierq migrate`\n",
                version < 0 ? 0 : version, latest);
        goto out;
    }
    if (!opt->map_overridden && migrate_sync_config(r.conn, cfg, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        goto out;
    }
    if (cfg->nwarnings > 0)
        log_msg(LOG_WARN, "run", "%d setting(s) in %s are accepted but not yet in effect; `tierq config check` lists them",
                cfg->nwarnings, cfg->dir);
    queue_make_worker_id(r.owner, sizeof r.owner);
    if (queue_worker_register(r.conn, r.owner, "{}", &err))
        log_msg(LOG_WARN, "run", "cannot register in tierq.workers: %s", err.msg);
    r.total = remaining_jobs(&r, false, &err);
    if (r.total < 0)
        r.total = 0;

    /* Signals are handled by this thread only: block them while the other threads start. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    r.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r.held = held_new();
    r.done = callq_new();
    PoolOptions po;
    pool_default_options(&po);
    po.threads = opt->threads;
    po.max_in_flight = opt->max_in_flight;
    po.max_tries = opt->max_tries;
    po.max_response_bytes = (size_t)opt->max_response_bytes;
    po.worker_id = r.owner;
    /* The writer wakes the scheduler after each flush (not the workers after each answer: that costs
     * more wake-ups than it gains claims); the poll interval covers the rest. */
    int wrc = writer_start(&r.writer, NULL, r.owner, r.done, r.held, r.efd, &err);
    int prc = wrc ? -1 : pool_start(&r.pool, cfg, &po, r.done, &err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (wrc || prc) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (waker_open(&r.waker, NULL, opt->poll_only, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        goto out;
    }
    log_msg(LOG_INFO, "run", "started worker=%s kinds=%d max_in_flight=%d queued=%lld%s", r.owner, r.nkinds,
            opt->max_in_flight, (long long)r.total, opt->drain ? " drain" : "");

    r.start_ms = clock_mono_ms();
    int64_t next_requeue = 0, next_renew = r.start_ms + opt->lease_s * 1000 / 3, next_beat = r.start_ms;
    int64_t next_progress = r.start_ms + 1000, stop_deadline = 0;
    bool stopping = false;
    bool budget_hit = false;
    int64_t last_drain_check = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (run_signals > 0 && !stopping) {
            stopping = true;
            stop_deadline = now + (int64_t)opt->grace_s * 1000;
            log_msg(LOG_INFO, "run", "stopping: no new claims; %d jobs in flight get %ds to finish", held_count(r.held),
                    opt->grace_s);
        }
        if (stopping && r.ngroups > 0)
            drop_groups(&r);
        if (stopping && (held_count(r.held) == 0 || run_signals > 1 || now >= stop_deadline))
            break;
        if (ensure_conn(&r)) {
            usleep(500000);
            continue;
        }
        if (now >= next_requeue) {
            int rq = 0, dead = 0;
            if (queue_requeue_expired(r.conn, 10000, &rq, &dead, &err) == 0 && (rq || dead))
                log_msg(LOG_INFO, "run", "requeued %d expired leases, %d jobs dead after max_attempts", rq, dead);
            next_requeue = now + (opt->lease_s * 1000) / 2;
        }
        if (now >= next_renew) {
            renew_leases(&r);
            next_renew = now + opt->lease_s * 1000 / 3;
        }
        if (now >= next_beat) {
            Buf info;
            batch_size_info(&r, &info);
            queue_worker_heartbeat(r.conn, r.owner, held_count(r.held), info.data, &err);
            buf_free(&info);
            next_beat = now + 5000;
        }
        if (opt->progress && now >= next_progress) {
            print_progress(&r, false);
            next_progress = now + 1000;
        }
        int got = 0;
        if (!stopping && opt->budget_micro > 0 && !budget_hit) {
            /* Spend is counted when written; in-flight calls may add a little past the ceiling. */
            WriterStats ws;
            writer_get_stats(r.writer, &ws);
            if (ws.cost_pico >= opt->budget_micro * 1000000) {
                budget_hit = true;
                log_msg(LOG_WARN, "run", "run budget reached: no more claims; %d jobs in flight finish", held_count(r.held));
            }
        }
        if (budget_hit && held_count(r.held) == 0)
            break;
        if (!stopping && !budget_hit) {
            /* Keep a little more claimed than can be in flight, so workers never wait for us. Jobs
             * already answered and waiting for the writer do not count against that (a wave of
             * answers must not stall sending), but the total held is bounded to bound memory. */
            int held = held_count(r.held);
            int pending = pool_pending(r.pool);
            int room = opt->max_in_flight + opt->max_in_flight / 2 - pending;
            int cap_left = 2 * opt->max_in_flight - held;
            if (cap_left < room)
                room = cap_left;
            int want = room < opt->claim_batch ? room : opt->claim_batch;
            int min_claim = opt->max_in_flight / 4 > 0 ? opt->max_in_flight / 4 : 1;
            if (want > 0 && (want >= min_claim || held == 0)) {
                if (claim_and_dispatch(&r, want, &got) == 0 && got == want)
                    continue; /* more is probably waiting */
            }
            if (opt->drain && got == 0 && held_count(r.held) == 0 && now - last_drain_check >= 200) {
                last_drain_check = now;
                int64_t left = remaining_jobs(&r, true, &err);
                if (left == 0)
                    break;
            }
        }
        /* batches whose fill window closed go out now; the wait ends when the next one closes */
        int64_t group_due = flush_due_groups(&r, clock_mono_ms(), false);
        int timeout = opt->poll_ms;
        int64_t soonest = next_renew < next_requeue ? next_renew : next_requeue;
        if (opt->progress && next_progress < soonest)
            soonest = next_progress;
        if (group_due < soonest)
            soonest = group_due;
        if (soonest - now < timeout)
            timeout = soonest - now < 0 ? 0 : (int)(soonest - now);
        if (opt->drain && held_count(r.held) == 0 && timeout > 200)
            timeout = 200;
        bool notified = false;
        waker_wait(&r.waker, timeout, r.efd, &notified, &err);
    }

    drop_groups(&r);
    if (opt->progress)
        print_progress(&r, true);
    Call *leftover = NULL;
    Buf sizes;
    batch_size_info(&r, &sizes);
    int pool_peak_in_flight_final = pool_peak_in_flight(r.pool);
    bool pool_quota_final = pool_quota_exhausted(r.pool);
    pool_stop(r.pool, &leftover);
    r.pool = NULL;
    int nleft = 0;
    while (leftover) {
        Call *next = leftover->next;
        for (int j = 0; j < leftover->njobs; j++)
            held_remove(r.held, leftover->jobs[j].job->id);
        call_free(leftover);
        leftover = next;
        nleft++;
    }
    WriterStats st;
    writer_stop(r.writer, &st);
    r.writer = NULL;
    hand_back_all(&r);
    char cost[32], base[32];
    cost_format_usd(cost, sizeof cost, st.cost_pico, 6);
    cost_format_usd(base, sizeof base, st.baseline_pico, 6);
    int64_t jobs = st.jobs_done + st.jobs_failed + st.jobs_retry;
    double secs = (double)(clock_mono_ms() - r.start_ms) / 1000.0;
    printf("run: %lld done, %lld failed, %lld back to the queue, %lld lease_lost, %d handed back in %.1fs\n",
           (long long)st.jobs_done, (long long)st.jobs_failed, (long long)st.jobs_retry, (long long)st.lease_lost,
           nleft, secs);
    printf("run: %lld calls, cost $%s, baseline $%s, %lld write statements (%.4f per job), peak %d in flight\n",
           (long long)st.calls, cost, base, (long long)st.statements,
           jobs ? (double)st.statements / (double)jobs : 0.0, pool_peak_in_flight_final);
    if (sizes.len > 20) /* more than the empty {"batch_size": {}} */
        printf("run: %s\n", sizes.data);
    buf_free(&sizes);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("run: %.0f jobs/s, cpu %.2fs user %.2fs system, peak rss %.1f MB\n", secs > 0 ? (double)jobs / secs : 0.0,
               (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, (double)ru.ru_maxrss / 1024.0);
    for (int i = 0; i < st.nfailures; i++)
        printf("run: %lld jobs not done, reason %s (e.g. %s)\n", (long long)st.failures[i].count,
               st.failures[i].reason, st.failures[i].sample);
    exit_code = pool_quota_final ? RUN_EXIT_QUOTA : RUN_EXIT_OK;
    if (!pool_quota_final && st.jobs_done == 0 && st.jobs_failed + st.jobs_retry > 0) {
        /* Nothing succeeded: a cron job must not read this as a good night. */
        exit_code = RUN_EXIT_NOTHING_DONE;
        fprintf(stderr, "tierq: run: no job succeeded; %lld failed or went back to the queue%s%s\n",
                (long long)(st.jobs_failed + st.jobs_retry), st.nfailures == 1 ? ", all for the same reason: " : "",
                st.nfailures == 1 ? st.failures[0].sample : " (see the reasons above)");
    }
    if (budget_hit) {
        exit_code = RUN_EXIT_BUDGET;
        char b[32];
        cost_format_usd(b, sizeof b, opt->budget_micro * 1000000, 6);
        fprintf(stderr, "tierq: run: the run budget of $%s was reached; unclaimed jobs stay queued\n", b);
    }
    if (pool_quota_final)
        fprintf(stderr, "tierq: run: a provider answered insufficient_quota; its jobs stay queued for a later run\n");
out:
    if (r.pool) {
        pool_stop(r.pool, NULL);
    }
    if (r.writer)
        writer_stop(r.writer, NULL);
    if (r.conn && r.owner[0]) {
        queue_worker_unregister(r.conn, r.owner, &err);
    }
    waker_close(&r.waker);
    if (r.conn)
        PQfinish(r.conn);
    held_free(r.held);
    fifo_free(r.done);
    if (r.efd >= 0)
        close(r.efd);
    free(r.kinds);
    curl_global_cleanup();
    return exit_code;
}
