/* ratelimit.c — per-model token buckets with AIMD; see ratelimit.h for the contract. */
#include "ratelimit.h"

#include "openai.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* Levels are doubles: refills are fractions of a request. EPS absorbs the binary noise of
 * rate x dt (0.01 x 100 = 1.0000000000000002 or 0.9999999999999999), which would otherwise turn an
 * exact wait into one more millisecond — a 1% error at 10 requests a second. */
#define EPS 1e-6

typedef struct Bucket {
    double per_min; /* this process's configured rate (limit / share); 0 = unlimited */
    double min_cap; /* the bucket never holds less than this when full (1 request) */
    double level;
} Bucket;

struct RateLimiter {
    pthread_mutex_t mu;
    Bucket req, tok;
    int share;
    double rpm, tpm;         /* the account's limits, before share: configured, or learned */
    bool rpm_set, tpm_set;   /* ... configured (jobs/models.json): never replaced by a header */
    double factor;           /* AIMD: effective rate = per_min x factor */
    bool started;            /* last_ms is set */
    int64_t last_ms;         /* time of the last refill; never goes backwards */
    int64_t paused_until_ms; /* no admission, and no refill, before this */
    int64_t last_change_ms;  /* last AIMD change */
    uint64_t generation;     /* bumped by every decrease */
    uint64_t decreases;
};

static bool limited(const Bucket *b) { return b->per_min > 0; }

static double rate_per_ms(const RateLimiter *rl, const Bucket *b) { return b->per_min * rl->factor / 60000.0; }

/* One second's worth at the effective rate, at least min_cap. */
static double cap_of(const RateLimiter *rl, const Bucket *b)
{
    double c = rate_per_ms(rl, b) * 1000.0;
    return c < b->min_cap ? b->min_cap : c;
}

static void add_level(const RateLimiter *rl, Bucket *b, double d)
{
    if (!limited(b))
        return;
    double cap = cap_of(rl, b);
    b->level += d;
    if (b->level > cap)
        b->level = cap;
}

/* Bring the buckets to t. Paused time earns nothing: a pause after a 429 ends with the buckets
 * where the 429 left them (empty), so sending resumes at the rate instead of in a burst. */
static int64_t refill(RateLimiter *rl, int64_t now_ms)
{
    if (!rl->started) {
        rl->started = true;
        rl->last_ms = now_ms;
        return now_ms;
    }
    if (now_ms <= rl->last_ms)
        return rl->last_ms;
    int64_t from = rl->last_ms > rl->paused_until_ms ? rl->last_ms : rl->paused_until_ms;
    if (now_ms > from) {
        double dt = (double)(now_ms - from);
        add_level(rl, &rl->req, rate_per_ms(rl, &rl->req) * dt);
        add_level(rl, &rl->tok, rate_per_ms(rl, &rl->tok) * dt);
    }
    rl->last_ms = now_ms;
    return now_ms;
}

/* Milliseconds of refill until b holds need (0 when it does). */
static int64_t refill_wait(const RateLimiter *rl, const Bucket *b, double need)
{
    if (!limited(b))
        return 0;
    double cap = cap_of(rl, b);
    if (need > cap)
        need = cap; /* larger than the bucket: admitted once it is full, into debt */
    if (b->level >= need - EPS)
        return 0;
    double ms = ceil((need - b->level) / rate_per_ms(rl, b) - EPS);
    return ms < 1 ? 1 : ms > 1e15 ? (int64_t)1e15 : (int64_t)ms;
}

int ratelimit_new(const RateLimitConfig *cfg, RateLimiter **out, TqErr *err)
{
    if (!cfg || !out)
        return tq_err(err, TQ_EINVAL, "ratelimit: no config");
    if (cfg->rpm < 0)
        return tq_err(err, TQ_EINVAL, "ratelimit: rpm %lld is negative (0 = unlimited)", (long long)cfg->rpm);
    if (cfg->tpm < 0)
        return tq_err(err, TQ_EINVAL, "ratelimit: tpm %lld is negative (0 = unlimited)", (long long)cfg->tpm);
    if (cfg->share < 0)
        return tq_err(err, TQ_EINVAL, "ratelimit: share %d is negative (the number of processes, 0 or 1 = one)",
                      cfg->share);
    RateLimiter *rl = calloc(1, sizeof *rl);
    if (!rl)
        return tq_err(err, TQ_ENOMEM, "ratelimit: out of memory");
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return tq_err(err, TQ_ENOMEM, "ratelimit: cannot create a mutex");
    }
    rl->share = cfg->share > 1 ? cfg->share : 1;
    rl->rpm = (double)cfg->rpm;
    rl->tpm = (double)cfg->tpm;
    rl->rpm_set = cfg->rpm > 0;
    rl->tpm_set = cfg->tpm > 0;
    rl->factor = 1.0;
    rl->req.per_min = (double)cfg->rpm / rl->share;
    rl->req.min_cap = 1.0;
    rl->tok.per_min = (double)cfg->tpm / rl->share;
    rl->tok.min_cap = 1.0;
    rl->req.level = limited(&rl->req) ? cap_of(rl, &rl->req) : 0;
    rl->tok.level = limited(&rl->tok) ? cap_of(rl, &rl->tok) : 0;
    *out = rl;
    return 0;
}

void ratelimit_set_share(RateLimiter *rl, int64_t now_ms, int share)
{
    if (share < 1)
        share = 1;
    pthread_mutex_lock(&rl->mu);
    if (share != rl->share) {
        refill(rl, now_ms); /* what was earned so far was earned at the old rate */
        rl->share = share;
        rl->req.per_min = rl->rpm / share;
        rl->tok.per_min = rl->tpm / share;
        /* a smaller share of the account: the buckets hold no more than its second's worth */
        if (limited(&rl->req) && rl->req.level > cap_of(rl, &rl->req))
            rl->req.level = cap_of(rl, &rl->req);
        if (limited(&rl->tok) && rl->tok.level > cap_of(rl, &rl->tok))
            rl->tok.level = cap_of(rl, &rl->tok);
    }
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_free(RateLimiter *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

bool ratelimit_acquire(RateLimiter *rl, int64_t now_ms, int64_t est_tokens, RateLimitTicket *ticket, int64_t *wait_ms)
{
    if (est_tokens < 0)
        est_tokens = 0;
    pthread_mutex_lock(&rl->mu);
    int64_t now = refill(rl, now_ms);
    int64_t paused = rl->paused_until_ms > now ? rl->paused_until_ms - now : 0;
    int64_t wr = refill_wait(rl, &rl->req, 1.0);
    int64_t wt = refill_wait(rl, &rl->tok, (double)est_tokens);
    int64_t wait = paused + (wr > wt ? wr : wt);
    if (wait == 0) {
        if (limited(&rl->req))
            rl->req.level -= 1.0;
        if (limited(&rl->tok))
            rl->tok.level -= (double)est_tokens;
        ticket->tokens = est_tokens;
        ticket->generation = rl->generation;
    }
    pthread_mutex_unlock(&rl->mu);
    *wait_ms = wait;
    return wait == 0;
}

void ratelimit_settle(RateLimiter *rl, const RateLimitTicket *ticket, int64_t actual_tokens)
{
    if (actual_tokens < 0)
        return;
    pthread_mutex_lock(&rl->mu);
    add_level(rl, &rl->tok, (double)ticket->tokens - (double)actual_tokens);
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_cancel(RateLimiter *rl, const RateLimitTicket *ticket)
{
    pthread_mutex_lock(&rl->mu);
    add_level(rl, &rl->req, 1.0);
    add_level(rl, &rl->tok, (double)ticket->tokens);
    pthread_mutex_unlock(&rl->mu);
}

static void pause_until(RateLimiter *rl, int64_t until)
{
    if (until > rl->paused_until_ms)
        rl->paused_until_ms = until;
}

/* What the provider says is left, tightening one bucket; with no bucket (no limit configured), a
 * pause until the reset when nothing is left (see ratelimit.h for why only then). */
static void tighten(RateLimiter *rl, Bucket *b, int64_t now, int64_t remaining, int64_t reset_ms)
{
    if (remaining < 0)
        return;
    double mine = (double)remaining / rl->share;
    if (limited(b)) {
        if (b->level > mine)
            b->level = mine;
    } else if (remaining == 0 && reset_ms >= 0) {
        pause_until(rl, now + (reset_ms < RATELIMIT_HEADER_PAUSE_CAP_MS ? reset_ms : RATELIMIT_HEADER_PAUSE_CAP_MS));
    }
}

void ratelimit_on_headers(RateLimiter *rl, int64_t now_ms, int64_t remaining_requests, int64_t remaining_tokens,
                          int64_t reset_requests_ms, int64_t reset_tokens_ms)
{
    pthread_mutex_lock(&rl->mu);
    int64_t now = refill(rl, now_ms);
    tighten(rl, &rl->req, now, remaining_requests, reset_requests_ms);
    tighten(rl, &rl->tok, now, remaining_tokens, reset_tokens_ms);
    pthread_mutex_unlock(&rl->mu);
}

/* A dimension without a configured limit takes the account's from the header: limit / share per
 * minute, the bucket at most a second's worth (tighten then lowers it to what is left). */
static void learn(RateLimiter *rl, Bucket *b, double *account, bool set, int64_t limit)
{
    if (set || limit <= 0 || (double)limit == *account)
        return;
    bool was = limited(b);
    *account = (double)limit;
    b->per_min = *account / rl->share;
    double cap = cap_of(rl, b);
    if (!was || b->level > cap)
        b->level = cap;
    /* requests admitted before the limit was known report on a rate that is gone: their 429s pause,
     * they do not halve the one just learned (measured: the first burst's 429s halved it, 0.71 of
     * the limit over the run) */
    rl->generation++;
}

void ratelimit_learn_limits(RateLimiter *rl, int64_t now_ms, int64_t limit_requests, int64_t limit_tokens)
{
    pthread_mutex_lock(&rl->mu);
    refill(rl, now_ms); /* what was earned so far was earned at the old rate */
    learn(rl, &rl->req, &rl->rpm, rl->rpm_set, limit_requests);
    learn(rl, &rl->tok, &rl->tpm, rl->tpm_set, limit_tokens);
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_on_429(RateLimiter *rl, int64_t now_ms, int64_t retry_after_ms, const RateLimitTicket *ticket)
{
    pthread_mutex_lock(&rl->mu);
    int64_t now = refill(rl, now_ms);
    int64_t pause = retry_after_ms >= 0 ? retry_after_ms : RATELIMIT_429_DEFAULT_PAUSE_MS;
    pause_until(rl, pause > INT64_MAX - now ? INT64_MAX : now + pause);
    if (rl->req.level > 0)
        rl->req.level = 0;
    if (rl->tok.level > 0)
        rl->tok.level = 0;
    bool current = !ticket || ticket->generation == rl->generation;
    if (current && (limited(&rl->req) || limited(&rl->tok))) {
        rl->factor *= RATELIMIT_AIMD_DECREASE;
        if (rl->factor < RATELIMIT_AIMD_FLOOR)
            rl->factor = RATELIMIT_AIMD_FLOOR;
        rl->generation++;
        rl->decreases++;
        rl->last_change_ms = now;
    }
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_on_success(RateLimiter *rl, int64_t now_ms)
{
    pthread_mutex_lock(&rl->mu);
    int64_t now = refill(rl, now_ms);
    if (rl->factor < 1.0 && now - rl->last_change_ms >= RATELIMIT_AIMD_STEP_MS) {
        rl->factor += RATELIMIT_AIMD_STEP;
        if (rl->factor > 1.0 - EPS)
            rl->factor = 1.0;
        rl->last_change_ms = now;
    }
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_snapshot(RateLimiter *rl, int64_t now_ms, RateLimitSnapshot *out)
{
    pthread_mutex_lock(&rl->mu);
    int64_t now = refill(rl, now_ms);
    out->factor = rl->factor;
    out->rpm = rl->req.per_min * rl->factor;
    out->tpm = rl->tok.per_min * rl->factor;
    out->requests_available = rl->req.level;
    out->tokens_available = rl->tok.level;
    out->paused_until_ms = rl->paused_until_ms > now ? rl->paused_until_ms : 0;
    out->decreases = rl->decreases;
    pthread_mutex_unlock(&rl->mu);
}

int64_t ratelimit_parse_duration_ms(const char *s) { return oai_duration_ms(s); }
