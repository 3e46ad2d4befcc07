/* The circuit breaker on a fake clock: when it opens and when it does not, what goes while it is
 * open, exactly one probe across threads, and how probes close or reopen it. */
#include "../check.h"
#include "breaker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* 5 failures and 50% in 60 s (slots of 5 s); cooldown 10 s doubling to 80 s; probes time out at 30 s. */
static Breaker *make(void)
{
    BreakerConfig c = {.failures = 5, .failure_pct = 50, .window_ms = 60000, .cooldown_ms = 10000,
                       .cooldown_cap_ms = 80000, .probe_timeout_ms = 30000};
    Breaker *b = NULL;
    TqErr err = {0};
    CHECKF(breaker_new(&c, &b, &err) == 0 && b, "breaker_new: %s", err.msg);
    return b;
}

static BreakerState state_at(Breaker *b, int64_t now)
{
    BreakerSnapshot s;
    breaker_state(b, now, &s);
    return s.state;
}

static void fail_n(Breaker *b, int64_t now, int n, BreakerOutcome o)
{
    for (int i = 0; i < n; i++)
        breaker_record(b, now, o, false);
}

static void test_opens_after_failures_in_window(void)
{
    /* each failure kind on its own, spread over the window */
    static const BreakerOutcome kinds[] = {BREAKER_TIMEOUT, BREAKER_SERVER_ERROR, BREAKER_CONNECTION};
    for (size_t k = 0; k < 3; k++) {
        Breaker *b = make();
        int64_t now = 100000;
        for (int i = 0; i < 4; i++, now += 10000) {
            CHECK_INT(breaker_allow(b, now), BREAKER_ALLOW);
            breaker_record(b, now, kinds[k], false);
        }
        CHECK_INT(state_at(b, now), BREAKER_CLOSED);
        breaker_record(b, now, kinds[k], false); /* the fifth, 40 s after the first */
        BreakerSnapshot s;
        breaker_state(b, now, &s);
        CHECKF(s.state == BREAKER_OPEN, "%s: %s", breaker_outcome_name(kinds[k]), breaker_state_name(s.state));
        CHECK_STR(s.reason, "failures_in_window");
        CHECK_INT(s.opened_at_ms, now);
        CHECK_INT(s.next_probe_ms, now + 10000);
        CHECK_INT(s.opens, 1);
        CHECK_INT(breaker_allow(b, now), BREAKER_DENY);
        CHECK_INT(breaker_allow(b, now + 9999), BREAKER_DENY);
        breaker_free(b);
    }
}

static void test_old_failures_outside_window_ignored(void)
{
    Breaker *b = make();
    fail_n(b, 0, 4, BREAKER_SERVER_ERROR);
    BreakerSnapshot s;
    breaker_state(b, 54999, &s);
    CHECK_INT(s.failures, 4); /* still inside: 11/12 of the window */
    breaker_state(b, 60000, &s);
    CHECK_INT(s.failures, 0); /* a whole window later: gone */
    breaker_record(b, 60000, BREAKER_SERVER_ERROR, false);
    CHECK_INT(state_at(b, 60000), BREAKER_CLOSED);
    /* a steady trickle, one failure every 15 s, never has five in a window */
    for (int64_t t = 75000; t < 1000000; t += 15000)
        breaker_record(b, t, BREAKER_TIMEOUT, false);
    CHECK_INT(state_at(b, 1000000), BREAKER_CLOSED);
    /* five in a burst do */
    fail_n(b, 1000000, 5, BREAKER_TIMEOUT);
    CHECK_INT(state_at(b, 1000000), BREAKER_OPEN);
    breaker_free(b);
}

/* Failures that are a small part of a busy model's answers, never five running, are noise, not an
 * outage. */
static void test_failure_rate_needed(void)
{
    Breaker *b = make();
    for (int i = 0; i < 100; i++)
        breaker_record(b, 1000, BREAKER_SUCCESS, false);
    for (int g = 0; g < 32; g++) { /* four failures, then an answer */
        fail_n(b, 2000, 4, BREAKER_SERVER_ERROR);
        breaker_record(b, 2000, BREAKER_SUCCESS, false);
    }
    fail_n(b, 2000, 3, BREAKER_SERVER_ERROR);
    CHECK_INT(state_at(b, 2000), BREAKER_CLOSED); /* 131 of 263: under half, never five in a row */
    breaker_record(b, 2000, BREAKER_SERVER_ERROR, false);
    BreakerSnapshot s;
    breaker_state(b, 2000, &s);
    CHECK_INT(s.state, BREAKER_OPEN); /* 132 of 264, the fourth in a row */
    CHECK_STR(s.reason, "failures_in_window");
    breaker_free(b);
}

/* A model that answered a whole window fails all at once (an outage under load): five failures in
 * a row open it although the window still holds far more successes. A success between them starts
 * the count again. */
static void test_failures_in_a_row_open_it(void)
{
    Breaker *b = make();
    for (int i = 0; i < 100; i++)
        breaker_record(b, 1000, BREAKER_SUCCESS, false);
    fail_n(b, 2000, 4, BREAKER_TIMEOUT);
    breaker_record(b, 2000, BREAKER_SUCCESS, false);
    breaker_record(b, 2000, BREAKER_NEUTRAL, false); /* a 429 neither breaks nor extends a run */
    fail_n(b, 2000, 4, BREAKER_SERVER_ERROR);
    CHECK_INT(state_at(b, 2000), BREAKER_CLOSED);
    breaker_record(b, 2000, BREAKER_NEUTRAL, false);
    breaker_record(b, 2001, BREAKER_CONNECTION, false);
    BreakerSnapshot s;
    breaker_state(b, 2001, &s);
    CHECK_INT(s.state, BREAKER_OPEN);
    CHECK_STR(s.reason, "failures_in_a_row");
    CHECK_INT(s.next_probe_ms, 2001 + 10000);
    /* closed again by a probe, it needs a new run of five */
    CHECK_INT(breaker_allow(b, 12001), BREAKER_PROBE);
    breaker_record(b, 12001, BREAKER_SUCCESS, true);
    fail_n(b, 12002, 4, BREAKER_SERVER_ERROR);
    CHECK_INT(state_at(b, 12002), BREAKER_CLOSED);
    breaker_free(b);
}

/* 4xx, 429 and our own errors are not failures, and a 4xx is even a sign of life. */
static void test_non_failures_ignored(void)
{
    CHECK_INT(breaker_outcome_http(200), BREAKER_SUCCESS);
    CHECK_INT(breaker_outcome_http(400), BREAKER_SUCCESS);
    CHECK_INT(breaker_outcome_http(401), BREAKER_SUCCESS);
    CHECK_INT(breaker_outcome_http(404), BREAKER_SUCCESS);
    CHECK_INT(breaker_outcome_http(422), BREAKER_SUCCESS);
    CHECK_INT(breaker_outcome_http(429), BREAKER_NEUTRAL);
    CHECK_INT(breaker_outcome_http(408), BREAKER_TIMEOUT);
    CHECK_INT(breaker_outcome_http(500), BREAKER_SERVER_ERROR);
    CHECK_INT(breaker_outcome_http(503), BREAKER_SERVER_ERROR);
    CHECK_INT(breaker_outcome_http(302), BREAKER_NEUTRAL);
    CHECK_INT(breaker_outcome_http(0), BREAKER_CONNECTION);
    CHECK_INT(breaker_outcome_transport(OAI_NET_TIMEOUT), BREAKER_TIMEOUT);
    CHECK_INT(breaker_outcome_transport(OAI_NET_CONNECT), BREAKER_CONNECTION);
    CHECK_INT(breaker_outcome_transport(OAI_NET_RESET), BREAKER_CONNECTION);
    CHECK_INT(breaker_outcome_transport(OAI_NET_TLS), BREAKER_CONNECTION);
    CHECK_INT(breaker_outcome_transport(OAI_NET_BAD_BODY), BREAKER_CONNECTION);
    CHECK_INT(breaker_outcome_transport(OAI_NET_TOO_LARGE), BREAKER_NEUTRAL);
    CHECK_INT(breaker_outcome_transport(OAI_NET_INVALID), BREAKER_NEUTRAL);

    Breaker *b = make();
    static const int statuses[] = {400, 401, 403, 404, 409, 422, 429, 429, 429, 429, 429, 429};
    for (int round = 0; round < 10; round++)
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
            breaker_record(b, 1000, breaker_outcome_http(statuses[i]), false);
    fail_n(b, 1000, 100, BREAKER_NEUTRAL);
    BreakerSnapshot s;
    breaker_state(b, 1000, &s);
    CHECK_INT(s.state, BREAKER_CLOSED);
    CHECK_INT(s.failures, 0);
    CHECK_INT(s.successes, 60); /* the 4xx other than 429 */
    breaker_free(b);
}

static Breaker *opened_at(int64_t now)
{
    Breaker *b = make();
    fail_n(b, now, 5, BREAKER_CONNECTION);
    CHECK_INT(state_at(b, now), BREAKER_OPEN);
    return b;
}

static void test_probe_success_closes(void)
{
    Breaker *b = opened_at(0);
    CHECK_INT(breaker_allow(b, 9999), BREAKER_DENY);
    CHECK_INT(breaker_allow(b, 10000), BREAKER_PROBE);
    CHECK_INT(state_at(b, 10000), BREAKER_HALF_OPEN);
    CHECK_INT(breaker_allow(b, 10001), BREAKER_DENY); /* one probe at a time */
    /* an answer to a request sent before the opening decides nothing */
    breaker_record(b, 10500, BREAKER_SUCCESS, false);
    CHECK_INT(state_at(b, 10500), BREAKER_HALF_OPEN);
    breaker_record(b, 11000, BREAKER_SUCCESS, true);
    BreakerSnapshot s;
    breaker_state(b, 11000, &s);
    CHECK_INT(s.state, BREAKER_CLOSED);
    CHECK_STR(s.reason, "probe_succeeded");
    CHECK_INT(s.opened_at_ms, -1);
    CHECK_INT(s.next_probe_ms, -1);
    CHECK_INT(s.failures, 0); /* the window starts afresh */
    CHECK_INT(breaker_allow(b, 11000), BREAKER_ALLOW);
    /* it takes five new failures to open again, and the cooldown is the first one again */
    fail_n(b, 12000, 4, BREAKER_TIMEOUT);
    CHECK_INT(state_at(b, 12000), BREAKER_CLOSED);
    breaker_record(b, 12000, BREAKER_TIMEOUT, false);
    breaker_state(b, 12000, &s);
    CHECK_INT(s.state, BREAKER_OPEN);
    CHECK_INT(s.next_probe_ms, 22000);
    CHECK_INT(s.opens, 2);
    breaker_free(b);
}

/* Each failed probe doubles the cooldown: 10, 20, 40, 80, then 80 (the cap). */
static void test_probe_failure_reopens_longer_capped(void)
{
    Breaker *b = opened_at(0);
    static const int64_t want[] = {20000, 40000, 80000, 80000, 80000};
    int64_t now = 10000;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK_INT(breaker_allow(b, now), BREAKER_PROBE);
        breaker_record(b, now + 500, BREAKER_SERVER_ERROR, true);
        BreakerSnapshot s;
        breaker_state(b, now + 500, &s);
        CHECK_INT(s.state, BREAKER_OPEN);
        CHECK_STR(s.reason, "probe_failed");
        CHECK_INT(s.cooldown_ms, want[i]);
        CHECK_INT(s.next_probe_ms, now + 500 + want[i]);
        CHECK_INT(s.opened_at_ms, 0); /* the outage began at the first opening */
        CHECK_INT(s.opens, 1);
        CHECK_INT(breaker_allow(b, now + 500 + want[i] - 1), BREAKER_DENY);
        now += 500 + want[i];
    }
    CHECK_INT(breaker_allow(b, now), BREAKER_PROBE);
    breaker_record(b, now, BREAKER_SUCCESS, true);
    CHECK_INT(state_at(b, now), BREAKER_CLOSED);
    fail_n(b, now, 5, BREAKER_SERVER_ERROR);
    BreakerSnapshot s;
    breaker_state(b, now, &s);
    CHECK_INT(s.cooldown_ms, 10000); /* closing forgot the long cooldown */
    breaker_free(b);
}

/* A probe that never left (rate limiter, shutdown) or whose answer says nothing frees the slot; a
 * probe lost without a word stops blocking after probe_timeout_ms. */
static void test_probe_slot_released(void)
{
    Breaker *b = opened_at(0);
    CHECK_INT(breaker_allow(b, 10000), BREAKER_PROBE);
    breaker_record(b, 10100, BREAKER_NEUTRAL, true);
    CHECK_INT(state_at(b, 10100), BREAKER_HALF_OPEN);
    CHECK_INT(breaker_allow(b, 10100), BREAKER_PROBE);
    CHECK_INT(breaker_allow(b, 10100 + 29999), BREAKER_DENY);
    CHECK_INT(breaker_allow(b, 10100 + 30000), BREAKER_PROBE);
    CHECK_INT(breaker_allow(b, 10100 + 30001), BREAKER_DENY);
    /* the late answer of the lost probe still counts as the probe's */
    breaker_record(b, 10100 + 30002, BREAKER_TIMEOUT, true);
    CHECK_INT(state_at(b, 10100 + 30002), BREAKER_OPEN);
    /* and the second probe's, arriving while open, is ignored */
    breaker_record(b, 10100 + 30003, BREAKER_SUCCESS, true);
    CHECK_INT(state_at(b, 10100 + 30003), BREAKER_OPEN);
    breaker_free(b);
}

/* Failures of requests sent before the opening, arriving while open, do not move anything. */
static void test_open_ignores_stragglers(void)
{
    Breaker *b = opened_at(0);
    fail_n(b, 5000, 50, BREAKER_TIMEOUT);
    BreakerSnapshot s;
    breaker_state(b, 5000, &s);
    CHECK_INT(s.next_probe_ms, 10000);
    CHECK_INT(s.cooldown_ms, 10000);
    CHECK_INT(s.failures, 0);
    breaker_free(b);
}

static void test_bad_config_refused(void)
{
    static const struct {
        BreakerConfig c;
        const char *field;
    } bad[] = {
        {{0, 50, 60000, 10000, 80000, 30000}, "failures"},
        {{5, 101, 60000, 10000, 80000, 30000}, "failure_pct"},
        {{5, 50, 11, 10000, 80000, 30000}, "window_ms"},
        {{5, 50, 60000, 0, 80000, 30000}, "cooldown_ms"},
        {{5, 50, 60000, 10000, 9999, 30000}, "cooldown_cap_ms"},
        {{5, 50, 60000, 10000, 80000, 0}, "probe_timeout_ms"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Breaker *b = NULL;
        TqErr err = {0};
        CHECK_INT(breaker_new(&bad[i].c, &b, &err), TQ_EINVAL);
        CHECKF(b == NULL && strstr(err.msg, bad[i].field), "%s: %s", bad[i].field, err.msg);
    }
    Breaker *b = NULL;
    CHECK_INT(breaker_new(NULL, &b, NULL), 0); /* the defaults */
    BreakerSnapshot s;
    breaker_state(b, 0, &s);
    CHECK(s.state == BREAKER_CLOSED && s.cooldown_ms == 10000 && s.opens == 0);
    CHECK_STR(s.reason, "");
    breaker_free(b);
    breaker_free(NULL);
}

/* ---- threads ---------------------------------------------------------------------------------- */

enum { NTHREADS = 8, TRIES = 20000 };

typedef struct Racer {
    Breaker *b;
    int64_t now;
    atomic_int *go;
    int probes, allows;
} Racer;

static void *race(void *arg)
{
    Racer *r = arg;
    while (!atomic_load(r->go)) {
    }
    for (int i = 0; i < TRIES; i++) {
        BreakerVerdict v = breaker_allow(r->b, r->now);
        r->probes += v == BREAKER_PROBE;
        r->allows += v == BREAKER_ALLOW;
    }
    return NULL;
}

/* Many threads asking at once after the cooldown: one probe among them, the rest denied. Again
 * after a failed probe and the longer cooldown. */
static void test_one_probe_across_threads(void)
{
    Breaker *b = opened_at(0);
    int64_t at[] = {10000, 10000 + 20000};
    for (int round = 0; round < 2; round++) {
        atomic_int go = 0;
        Racer r[NTHREADS];
        pthread_t th[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            r[i] = (Racer){.b = b, .now = at[round] + i % 3, .go = &go};
            CHECK(pthread_create(&th[i], NULL, race, &r[i]) == 0);
        }
        atomic_store(&go, 1);
        int probes = 0, allows = 0;
        for (int i = 0; i < NTHREADS; i++) {
            pthread_join(th[i], NULL);
            probes += r[i].probes;
            allows += r[i].allows;
        }
        CHECKF(probes == 1 && allows == 0, "round %d: %d probes, %d allowed", round, probes, allows);
        breaker_record(b, at[round], BREAKER_CONNECTION, true);
    }
    breaker_free(b);
}

int main(void)
{
    RUN(test_opens_after_failures_in_window);
    RUN(test_failures_in_a_row_open_it);
    RUN(test_old_failures_outside_window_ignored);
    RUN(test_failure_rate_needed);
    RUN(test_non_failures_ignored);
    RUN(test_probe_success_closes);
    RUN(test_probe_failure_reopens_longer_capped);
    RUN(test_probe_slot_released);
    RUN(test_open_ignores_stragglers);
    RUN(test_bad_config_refused);
    RUN(test_one_probe_across_threads);
    return check_done();
}
