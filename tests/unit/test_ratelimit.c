/* The rate limiter on a fake clock: what it admits per minute, how usage, headers and 429s move it,
 * how it recovers, how share divides it, and that threads hammering it never get more than the
 * bucket holds. */
#include "../check.h"
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

static RateLimiter *make(int64_t rpm, int64_t tpm, int share)
{
    RateLimitConfig c = {.rpm = rpm, .tpm = tpm, .share = share};
    RateLimiter *rl = NULL;
    TqErr err = {0};
    int rc = ratelimit_new(&c, &rl, &err);
    CHECKF(rc == 0 && rl, "ratelimit_new: %s", err.msg);
    return rl;
}

/* A greedy sender from t0 to t1 on a fake clock: sends whenever admitted, otherwise jumps ahead by
 * exactly the wait it was told. Counts admissions in [from, t1). */
static int send_greedily(RateLimiter *rl, int64_t *now, int64_t t1, int64_t from, int64_t est)
{
    int n = 0;
    RateLimitTicket t;
    int64_t wait;
    while (*now < t1) {
        if (ratelimit_acquire(rl, *now, est, &t, &wait)) {
            CHECK_INT(wait, 0);
            n += *now >= from;
        } else {
            CHECKF(wait >= 1, "wait %lld", (long long)wait);
            *now += wait;
        }
    }
    return n;
}

static bool within_pct(int got, double want, double pct) { return got >= want * (1 - pct / 100) && got <= want * (1 + pct / 100); }

/* A minute after the first: the configured rate, within 1%. The first minute: at most the rate plus
 * the burst (one second's worth), which the buckets start with. */
static void test_admits_the_configured_rate(void)
{
    static const int64_t rpms[] = {600, 6000, 90, 60000};
    for (size_t i = 0; i < sizeof rpms / sizeof rpms[0]; i++) {
        RateLimiter *rl = make(rpms[i], 0, 0);
        int64_t now = 1000;
        int first = send_greedily(rl, &now, 61000, 1000, 0);
        double rpm = (double)rpms[i], burst = rpm / 60 < 1 ? 1 : rpm / 60;
        CHECKF(first >= rpm && first <= rpm + burst + 1, "rpm %lld: first minute %d", (long long)rpms[i], first);
        int second = send_greedily(rl, &now, 121000, 61000, 0);
        CHECKF(within_pct(second, (double)rpms[i], 1), "rpm %lld: second minute %d", (long long)rpms[i], second);
        ratelimit_free(rl);
    }
    /* tokens per minute alone: 90,000 tpm at 1,500 tokens a request is 60 requests a minute */
    RateLimiter *rl = make(0, 90000, 0);
    int64_t now = 0;
    send_greedily(rl, &now, 60000, 0, 1500);
    int n = send_greedily(rl, &now, 120000, 60000, 1500);
    CHECKF(within_pct(n, 60, 1), "tpm: %d requests", n);
    /* both: the tighter one wins (600 rpm, but 60,000 tpm at 1,000 tokens is 60 a minute) */
    RateLimiter *both = make(600, 60000, 0);
    now = 0;
    send_greedily(both, &now, 60000, 0, 1000);
    n = send_greedily(both, &now, 120000, 60000, 1000);
    CHECKF(within_pct(n, 60, 1), "rpm and tpm: %d requests", n);
    ratelimit_free(rl);
    ratelimit_free(both);
}

static void test_unlimited_admits_everything(void)
{
    RateLimiter *rl = make(0, 0, 0);
    RateLimitTicket t;
    int64_t wait = -1;
    int n = 0;
    for (int i = 0; i < 100000; i++)
        n += ratelimit_acquire(rl, 5, 1000000, &t, &wait);
    CHECK_INT(n, 100000);
    CHECK_INT(wait, 0);
    RateLimitSnapshot s;
    ratelimit_snapshot(rl, 5, &s);
    CHECK(s.rpm == 0 && s.tpm == 0 && s.factor == 1.0);
    ratelimit_free(rl);
}

/* 6,000 tpm: 100 tokens a second, a bucket of 100. */
static void test_settle_corrects_tokens(void)
{
    RateLimiter *rl = make(0, 6000, 0);
    RateLimitTicket t1, t2;
    int64_t wait;
    CHECK(ratelimit_acquire(rl, 0, 100, &t1, &wait));
    CHECK(!ratelimit_acquire(rl, 0, 80, &t2, &wait));
    CHECK_INT(wait, 800);
    /* it used 20 of the 100 estimated: 80 come back at once */
    ratelimit_settle(rl, &t1, 20);
    CHECK(ratelimit_acquire(rl, 0, 80, &t2, &wait));
    /* this one used 380: 300 more than reserved, a debt of 300 repaid in 3 s */
    ratelimit_settle(rl, &t2, 380);
    CHECK(!ratelimit_acquire(rl, 0, 0, &t1, &wait));
    CHECK_INT(wait, 3000);
    CHECK(ratelimit_acquire(rl, 3000, 0, &t1, &wait));
    /* no usage reported (-1): the estimate stands */
    RateLimitSnapshot before, after;
    ratelimit_snapshot(rl, 3000, &before);
    ratelimit_settle(rl, &t1, -1);
    ratelimit_snapshot(rl, 3000, &after);
    CHECK(before.tokens_available == after.tokens_available);
    /* a refund never fills the bucket past its size */
    CHECK(ratelimit_acquire(rl, 10000, 100, &t1, &wait));
    ratelimit_settle(rl, &t1, 0);
    ratelimit_settle(rl, &t1, 0);
    ratelimit_snapshot(rl, 10000, &after);
    CHECKF(after.tokens_available <= 100.0 + 1e-9, "%f", after.tokens_available);
    ratelimit_free(rl);
}

/* A request larger than the bucket waits for a full bucket, then goes, leaving a debt. */
static void test_large_request_waits_for_full_bucket(void)
{
    RateLimiter *rl = make(0, 6000, 0);
    RateLimitTicket t;
    int64_t wait;
    CHECK(ratelimit_acquire(rl, 0, 50, &t, &wait));
    CHECK(!ratelimit_acquire(rl, 0, 1000, &t, &wait));
    CHECK_INT(wait, 500);
    CHECK(ratelimit_acquire(rl, 500, 1000, &t, &wait));
    CHECK(!ratelimit_acquire(rl, 500, 1, &t, &wait));
    CHECK_INT(wait, 9010); /* 900 of debt and 1 token at 100 a second */
    ratelimit_free(rl);
}

static void test_cancel_gives_back(void)
{
    RateLimiter *rl = make(60, 6000, 0); /* buckets: 1 request, 100 tokens */
    RateLimitTicket t, u;
    int64_t wait;
    CHECK(ratelimit_acquire(rl, 0, 100, &t, &wait));
    CHECK(!ratelimit_acquire(rl, 0, 100, &u, &wait));
    ratelimit_cancel(rl, &t);
    CHECK(ratelimit_acquire(rl, 0, 100, &u, &wait));
    ratelimit_free(rl);
}

static void test_headers_tighten(void)
{
    RateLimiter *rl = make(600, 0, 0); /* a bucket of 10 */
    RateLimitTicket t;
    int64_t wait, now = 0;
    ratelimit_on_headers(rl, now, 2, -1, -1, -1);
    CHECK(ratelimit_acquire(rl, now, 0, &t, &wait));
    CHECK(ratelimit_acquire(rl, now, 0, &t, &wait));
    CHECK(!ratelimit_acquire(rl, now, 0, &t, &wait));
    CHECK_INT(wait, 100);
    /* more remaining than the bucket holds never loosens it */
    now = 200;
    ratelimit_on_headers(rl, now, 100000, -1, -1, -1);
    RateLimitSnapshot s;
    ratelimit_snapshot(rl, now, &s);
    CHECKF(s.requests_available > 1.99 && s.requests_available < 2.01, "%f", s.requests_available);
    /* nothing left: the bucket is emptied and the next request waits for our refill (100 ms), not
     * for the reset, which is when the provider's bucket is full again */
    ratelimit_on_headers(rl, now, 0, -1, ratelimit_parse_duration_ms("1.5s"), -1);
    CHECK(!ratelimit_acquire(rl, now, 0, &t, &wait));
    CHECK_INT(wait, 100);
    CHECK(ratelimit_acquire(rl, now + 100, 0, &t, &wait));
    CHECK(!ratelimit_acquire(rl, now + 100, 0, &t, &wait));
    /* tokens: 60,000 tpm, nothing left, full again in "6m0s": 10 tokens wait 10 ms of refill */
    RateLimiter *tk = make(0, 60000, 0);
    ratelimit_on_headers(tk, 0, -1, 0, -1, ratelimit_parse_duration_ms("6m0s"));
    CHECK(!ratelimit_acquire(tk, 0, 10, &t, &wait));
    CHECK_INT(wait, 10);
    /* a model without limits honours "nothing left until the reset", a minute at most */
    RateLimiter *un = make(0, 0, 0);
    ratelimit_on_headers(un, 0, 0, -1, 20, -1);
    CHECK(!ratelimit_acquire(un, 0, 0, &t, &wait));
    CHECK_INT(wait, 20);
    CHECK(ratelimit_acquire(un, 20, 0, &t, &wait));
    ratelimit_on_headers(un, 100, -1, 0, -1, ratelimit_parse_duration_ms("6m0s"));
    CHECK(!ratelimit_acquire(un, 100, 0, &t, &wait));
    CHECK_INT(wait, RATELIMIT_HEADER_PAUSE_CAP_MS);
    /* remaining above 0 on a model without limits changes nothing */
    ratelimit_on_headers(un, 100000, 3, 5, 1000, 1000);
    CHECK(ratelimit_acquire(un, 100000, 1000, &t, &wait));
    ratelimit_free(rl);
    ratelimit_free(tk);
    ratelimit_free(un);
}

/* A model without a configured rpm learns the account's from x-ratelimit-limit-requests and paces at
 * it (its share of it); a configured rpm is never replaced; set_share divides a learned one too. */
static void test_learns_limits_from_headers(void)
{
    RateLimiter *un = make(0, 0, 0);
    RateLimitTicket t;
    int64_t wait;
    ratelimit_learn_limits(un, 0, 600, -1); /* 10 a second: a bucket of 10 */
    ratelimit_on_headers(un, 0, 599, -1, -1, -1);
    int n = 0;
    while (ratelimit_acquire(un, 0, 0, &t, &wait))
        n++;
    CHECK_INT(n, 10);
    CHECK_INT(wait, 100);
    RateLimitSnapshot s;
    ratelimit_snapshot(un, 0, &s);
    CHECKF(s.rpm > 599.9 && s.rpm < 600.1, "%f", s.rpm);
    ratelimit_set_share(un, 0, 2); /* two processes: 5 a second here */
    ratelimit_snapshot(un, 0, &s);
    CHECKF(s.rpm > 299.9 && s.rpm < 300.1, "%f", s.rpm);
    /* tokens, learned alone */
    ratelimit_learn_limits(un, 0, -1, 60000);
    ratelimit_snapshot(un, 0, &s);
    CHECKF(s.tpm > 29999 && s.tpm < 30001, "%f", s.tpm);
    /* a 429 for a request admitted before the limit was learned pauses, and does not halve it */
    RateLimiter *burst = make(0, 0, 0);
    RateLimitTicket early;
    CHECK(ratelimit_acquire(burst, 0, 0, &early, &wait));
    ratelimit_learn_limits(burst, 5, 600, -1);
    ratelimit_on_429(burst, 5, 1000, &early);
    ratelimit_snapshot(burst, 5, &s);
    CHECKF(s.factor > 0.99 && s.decreases == 0, "factor %f, %llu decreases", s.factor, (unsigned long long)s.decreases);
    CHECK(!ratelimit_acquire(burst, 500, 0, &t, &wait)); /* paused until the retry-after */
    ratelimit_free(burst);
    /* a configured limit stays what the user wrote */
    RateLimiter *rl = make(120, 0, 0);
    ratelimit_learn_limits(rl, 0, 6000, -1);
    ratelimit_snapshot(rl, 0, &s);
    CHECKF(s.rpm > 119.9 && s.rpm < 120.1, "%f", s.rpm);
    ratelimit_free(un);
    ratelimit_free(rl);
}

/* Processes sharing an account see its remaining count; each takes its share of it. */
static void test_headers_divided_by_share(void)
{
    RateLimiter *rl = make(6000, 0, 4); /* 1,500 a minute here: a bucket of 25 */
    RateLimitTicket t;
    int64_t wait;
    ratelimit_on_headers(rl, 0, 40, -1, -1, -1);
    int n = 0;
    while (ratelimit_acquire(rl, 0, 0, &t, &wait))
        n++;
    CHECK_INT(n, 10);
    ratelimit_free(rl);
}

static void test_429_pauses_and_halves(void)
{
    RateLimiter *rl = make(600, 0, 0);
    RateLimitTicket old, t;
    int64_t wait, now = 0;
    CHECK(ratelimit_acquire(rl, now, 0, &old, &wait));
    ratelimit_on_429(rl, now, 2000, &old);
    CHECK(!ratelimit_acquire(rl, now, 0, &t, &wait));
    CHECKF(wait >= 2000, "wait %lld", (long long)wait);
    CHECK(!ratelimit_acquire(rl, 1999, 0, &t, &wait));
    RateLimitSnapshot s;
    ratelimit_snapshot(rl, now, &s);
    CHECK(s.factor == 0.5 && s.rpm == 300 && s.decreases == 1);
    CHECK_INT(s.paused_until_ms, 2000);
    /* the pause ends with an empty bucket: the first request after it waits for one refill */
    CHECK(!ratelimit_acquire(rl, 2000, 0, &t, &wait));
    CHECK_INT(wait, 200);
    /* from then on, 300 a minute */
    now = 2000;
    send_greedily(rl, &now, 62000, 2000, 0);
    int n = send_greedily(rl, &now, 122000, 62000, 0);
    CHECKF(within_pct(n, 300, 1), "%d", n);
    /* another 429 from a request admitted before the halving: pause, but no second halving */
    ratelimit_on_429(rl, now, -1, &old);
    ratelimit_snapshot(rl, now, &s);
    CHECK(s.factor == 0.5 && s.decreases == 1);
    CHECK_INT(s.paused_until_ms, now + RATELIMIT_429_DEFAULT_PAUSE_MS);
    /* a pause is never shortened by a later, shorter retry-after */
    ratelimit_on_429(rl, now, 10, &old);
    ratelimit_snapshot(rl, now, &s);
    CHECK_INT(s.paused_until_ms, now + RATELIMIT_429_DEFAULT_PAUSE_MS);
    /* one admitted at the halved rate halves again */
    now += 5000;
    CHECK(ratelimit_acquire(rl, now, 0, &t, &wait));
    ratelimit_on_429(rl, now, 0, &t);
    ratelimit_snapshot(rl, now, &s);
    CHECK(s.factor == 0.25 && s.decreases == 2);
    /* a storm never goes below the floor */
    for (int i = 0; i < 20; i++)
        ratelimit_on_429(rl, now, 0, NULL);
    ratelimit_snapshot(rl, now, &s);
    CHECK(s.factor == RATELIMIT_AIMD_FLOOR);
    CHECK(s.rpm == 600 * RATELIMIT_AIMD_FLOOR);
    ratelimit_free(rl);
}

/* Fifty requests in flight answered 429 together halve the rate once. */
static void test_429_burst_halves_once(void)
{
    RateLimiter *rl = make(60000, 0, 0);
    RateLimitTicket t[50];
    int64_t wait;
    for (int i = 0; i < 50; i++)
        CHECK(ratelimit_acquire(rl, 0, 0, &t[i], &wait));
    for (int i = 0; i < 50; i++)
        ratelimit_on_429(rl, 100, 500, &t[i]);
    RateLimitSnapshot s;
    ratelimit_snapshot(rl, 100, &s);
    CHECK(s.factor == 0.5 && s.decreases == 1);
    ratelimit_free(rl);
}

/* Successes raise the factor by a step per 6 s: from 0.5 back to 1 in a minute, never past 1. */
static void test_recovery_slow_and_capped(void)
{
    RateLimiter *rl = make(600, 0, 0);
    ratelimit_on_429(rl, 0, 0, NULL);
    RateLimitSnapshot s;
    int64_t now = 0;
    for (; now < 5900; now += 100)
        ratelimit_on_success(rl, now);
    ratelimit_snapshot(rl, now, &s);
    CHECKF(s.factor == 0.5, "after 5.9 s of successes: %f", s.factor);
    ratelimit_on_success(rl, 6000);
    ratelimit_snapshot(rl, 6000, &s);
    CHECKF(s.factor > 0.549 && s.factor < 0.551, "after 6 s: %f", s.factor);
    for (now = 6000; now <= 59000; now += 100)
        ratelimit_on_success(rl, now);
    ratelimit_snapshot(rl, now, &s);
    CHECKF(s.factor < 1.0, "not yet whole before a minute: %f", s.factor);
    for (; now <= 600000; now += 100)
        ratelimit_on_success(rl, now);
    ratelimit_snapshot(rl, now, &s);
    CHECKF(s.factor == 1.0 && s.rpm == 600, "capped: factor %f rpm %f", s.factor, s.rpm);
    /* and the admitted rate is the configured one again, not more */
    send_greedily(rl, &now, now + 60000, now, 0);
    int64_t from = now;
    int n = send_greedily(rl, &now, from + 60000, from, 0);
    CHECKF(within_pct(n, 600, 1), "%d", n);
    ratelimit_free(rl);
}

static void test_share_divides(void)
{
    RateLimiter *rl = make(600, 60000, 3);
    RateLimitSnapshot s;
    ratelimit_snapshot(rl, 0, &s);
    CHECK(s.rpm == 200 && s.tpm == 20000);
    int64_t now = 0;
    send_greedily(rl, &now, 60000, 0, 10);
    int n = send_greedily(rl, &now, 120000, 60000, 10);
    CHECKF(within_pct(n, 200, 1), "%d", n);
    ratelimit_free(rl);
    /* share 0 and 1 both mean the whole limit */
    RateLimiter *one = make(600, 0, 1);
    ratelimit_snapshot(one, 0, &s);
    CHECK(s.rpm == 600);
    ratelimit_free(one);
}

static void test_bad_config_refused(void)
{
    RateLimiter *rl = NULL;
    TqErr err = {0};
    RateLimitConfig c = {.rpm = -1};
    CHECK_INT(ratelimit_new(&c, &rl, &err), TQ_EINVAL);
    CHECK(rl == NULL && strstr(err.msg, "rpm") != NULL);
    c = (RateLimitConfig){.tpm = -5};
    CHECK_INT(ratelimit_new(&c, &rl, &err), TQ_EINVAL);
    CHECK(strstr(err.msg, "tpm") != NULL);
    c = (RateLimitConfig){.rpm = 10, .share = -2};
    CHECK_INT(ratelimit_new(&c, &rl, &err), TQ_EINVAL);
    CHECK(strstr(err.msg, "share") != NULL);
    ratelimit_free(NULL);
}

/* Time that another thread read a little earlier never earns a refill twice or runs backwards. */
static void test_clock_lag_between_threads(void)
{
    RateLimiter *rl = make(60, 0, 0);
    RateLimitTicket t;
    int64_t wait;
    CHECK(ratelimit_acquire(rl, 1000, 0, &t, &wait));
    CHECK(!ratelimit_acquire(rl, 1500, 0, &t, &wait));
    CHECK_INT(wait, 500);
    CHECK(!ratelimit_acquire(rl, 1400, 0, &t, &wait)); /* read before the other thread's 1500 */
    CHECK_INT(wait, 500);
    CHECK(ratelimit_acquire(rl, 2000, 0, &t, &wait));
    ratelimit_free(rl);
}

static void test_duration_parser(void)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"6m0s", 360000}, {"1s", 1000}, {"120ms", 120}, {"1m30.5s", 90500}, {"0s", 0}, {"2h", 7200000},
        {"1.5s", 1500}, {"999us", 1}, {"0.0001s", 1}, {" 20ms\r\n", 20}, {"17", 17000},
        {"", -1}, {NULL, -1}, {"ms", -1}, {"1m30", -1}, {"-1s", -1}, {"1d", -1}, {"1s1", -1},
        {"1 s", -1}, {"s1", -1}, {"1..5s", -1}, {"1e3ms", -1}, {"abc", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = ratelimit_parse_duration_ms(cases[i].in);
        CHECKF(got == cases[i].ms, "\"%s\": got %lld, want %lld", cases[i].in ? cases[i].in : "(null)",
               (long long)got, (long long)cases[i].ms);
    }
}

/* ---- threads ---------------------------------------------------------------------------------- */

enum { NTHREADS = 8, TRIES = 20000 };

typedef struct Hammer {
    RateLimiter *rl;
    atomic_llong *clock;   /* NULL: time stands still */
    int64_t est;
    long admitted;
    long long tokens;
} Hammer;

static void *hammer(void *arg)
{
    Hammer *h = arg;
    RateLimitTicket t;
    int64_t wait;
    for (int i = 0; i < TRIES; i++) {
        int64_t now = h->clock ? atomic_fetch_add(h->clock, 1) : 0;
        if (ratelimit_acquire(h->rl, now, h->est, &t, &wait)) {
            h->admitted++;
            h->tokens += t.tokens;
        }
    }
    return NULL;
}

static long run_hammers(RateLimiter *rl, atomic_llong *clock, int64_t est, long long *tokens)
{
    Hammer h[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        h[i] = (Hammer){.rl = rl, .clock = clock, .est = est};
        CHECK(pthread_create(&th[i], NULL, hammer, &h[i]) == 0);
    }
    long n = 0;
    *tokens = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        n += h[i].admitted;
        *tokens += h[i].tokens;
    }
    return n;
}

/* Frozen time: the threads together get exactly what the bucket holds. Moving time (each try one
 * ms later): never more than the bucket plus the refill. */
static void test_threads_never_over_admit(void)
{
    long long tokens;
    RateLimiter *rl = make(60000, 0, 0); /* a bucket of 1,000 */
    CHECK_INT(run_hammers(rl, NULL, 0, &tokens), 1000);
    ratelimit_free(rl);

    rl = make(0, 600000, 0); /* 10,000 tokens a second, a bucket of 10,000 */
    run_hammers(rl, NULL, 7, &tokens);
    CHECKF(tokens > 10000 - 7 && tokens <= 10000, "tokens %lld", tokens);
    ratelimit_free(rl);

    rl = make(6000, 0, 0); /* 0.1 a ms, a bucket of 100 */
    atomic_llong clock = 0;
    long n = run_hammers(rl, &clock, 0, &tokens);
    long long elapsed = atomic_load(&clock); /* NTHREADS x TRIES ms of fake time */
    double most = 100 + 0.1 * (double)elapsed;
    CHECKF(n <= (long)most && n >= (long)(0.1 * (double)elapsed) - NTHREADS, "admitted %ld of at most %.0f", n, most);
    ratelimit_free(rl);
}

int main(void)
{
    RUN(test_admits_the_configured_rate);
    RUN(test_unlimited_admits_everything);
    RUN(test_settle_corrects_tokens);
    RUN(test_large_request_waits_for_full_bucket);
    RUN(test_cancel_gives_back);
    RUN(test_headers_tighten);
    RUN(test_learns_limits_from_headers);
    RUN(test_headers_divided_by_share);
    RUN(test_429_pauses_and_halves);
    RUN(test_429_burst_halves_once);
    RUN(test_recovery_slow_and_capped);
    RUN(test_share_divides);
    RUN(test_bad_config_refused);
    RUN(test_clock_lag_between_threads);
    RUN(test_duration_parser);
    RUN(test_threads_never_over_admit);
    return check_done();
}
