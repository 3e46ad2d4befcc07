/* breaker.c — closed / open / half-open per model; see breaker.h for the contract. */
#include "breaker.h"

#include <pthread.h>
#include <stdlib.h>

#define NSLOTS 12

/* Outcomes of one slice of the window. index = now / slot_ms; EMPTY_SLOT never counts. */
typedef struct Slot {
    int64_t index;
    int failures, successes;
} Slot;

#define EMPTY_SLOT INT64_MIN

struct Breaker {
    pthread_mutex_t mu;
    BreakerConfig cfg;
    int64_t slot_ms;
    Slot slots[NSLOTS];
    BreakerState state;
    int64_t opened_at_ms;
    int64_t next_probe_ms;
    int64_t cooldown_ms;
    bool probe_in_flight;
    int64_t probe_sent_ms;
    uint64_t opens;
    const char *reason;
    int streak;               /* failures since the last success (closed state) ... */
    int64_t streak_from_ms;   /* ... the first of them; a run counts within one window only */
};

void breaker_default_config(BreakerConfig *c)
{
    c->failures = 5;
    c->failure_pct = 50;
    c->window_ms = 60000;
    c->cooldown_ms = 10000;
    c->cooldown_cap_ms = 5 * 60000;
    c->probe_timeout_ms = 10 * 60000;
}

static void clear_window(Breaker *b)
{
    for (int i = 0; i < NSLOTS; i++)
        b->slots[i] = (Slot){.index = EMPTY_SLOT};
}

static void count_window(const Breaker *b, int64_t now_ms, int *failures, int *successes)
{
    int64_t cur = (now_ms < 0 ? 0 : now_ms) / b->slot_ms;
    *failures = *successes = 0;
    for (int i = 0; i < NSLOTS; i++) {
        const Slot *s = &b->slots[i];
        if (s->index != EMPTY_SLOT && s->index > cur - NSLOTS) {
            *failures += s->failures;
            *successes += s->successes;
        }
    }
}

static void add_to_window(Breaker *b, int64_t now_ms, bool failure)
{
    int64_t idx = (now_ms < 0 ? 0 : now_ms) / b->slot_ms;
    Slot *s = &b->slots[idx % NSLOTS];
    /* A slot from an older lap is reused; an outcome a thread timed a little before the slot's
     * current lap (its clock read lags) is counted in the newer lap: late, never lost. */
    if (s->index == EMPTY_SLOT || s->index < idx)
        *s = (Slot){.index = idx};
    if (failure)
        s->failures++;
    else
        s->successes++;
}

int breaker_new(const BreakerConfig *cfg, Breaker **out, TqErr *err)
{
    BreakerConfig c;
    if (cfg)
        c = *cfg;
    else
        breaker_default_config(&c);
    if (!out)
        return tq_err(err, TQ_EINVAL, "breaker: nowhere to put it");
    if (c.failures < 1)
        return tq_err(err, TQ_EINVAL, "breaker: failures %d must be at least 1", c.failures);
    if (c.failure_pct < 0 || c.failure_pct > 100)
        return tq_err(err, TQ_EINVAL, "breaker: failure_pct %d must be 0..100", c.failure_pct);
    if (c.window_ms < NSLOTS)
        return tq_err(err, TQ_EINVAL, "breaker: window_ms %lld must be at least %d", (long long)c.window_ms, NSLOTS);
    if (c.cooldown_ms < 1)
        return tq_err(err, TQ_EINVAL, "breaker: cooldown_ms %lld must be at least 1", (long long)c.cooldown_ms);
    if (c.cooldown_cap_ms < c.cooldown_ms)
        return tq_err(err, TQ_EINVAL, "breaker: cooldown_cap_ms %lld is below cooldown_ms %lld",
                      (long long)c.cooldown_cap_ms, (long long)c.cooldown_ms);
    if (c.probe_timeout_ms < 1)
        return tq_err(err, TQ_EINVAL, "breaker: probe_timeout_ms %lld must be at least 1", (long long)c.probe_timeout_ms);
    Breaker *b = calloc(1, sizeof *b);
    if (!b)
        return tq_err(err, TQ_ENOMEM, "breaker: out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return tq_err(err, TQ_ENOMEM, "breaker: cannot create a mutex");
    }
    b->cfg = c;
    b->slot_ms = c.window_ms / NSLOTS; /* rounded down: a failure never counts longer than the window */
    clear_window(b);
    b->state = BREAKER_CLOSED;
    b->opened_at_ms = -1;
    b->cooldown_ms = c.cooldown_ms;
    b->reason = "";
    *out = b;
    return 0;
}

void breaker_free(Breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void open_for(Breaker *b, int64_t now_ms, const char *reason)
{
    if (b->state == BREAKER_CLOSED) {
        b->opened_at_ms = now_ms;
        b->opens++;
    }
    b->state = BREAKER_OPEN;
    b->next_probe_ms = now_ms > INT64_MAX - b->cooldown_ms ? INT64_MAX : now_ms + b->cooldown_ms;
    b->probe_in_flight = false;
    b->reason = reason;
    b->streak = 0;
    clear_window(b);
}

BreakerVerdict breaker_allow(Breaker *b, int64_t now_ms)
{
    BreakerVerdict v = BREAKER_DENY;
    pthread_mutex_lock(&b->mu);
    switch (b->state) {
    case BREAKER_CLOSED:
        v = BREAKER_ALLOW;
        break;
    case BREAKER_OPEN:
        if (now_ms < b->next_probe_ms)
            break;
        /* the first caller after the cooldown is the probe */
        b->state = BREAKER_HALF_OPEN;
        /* fall through */
    case BREAKER_HALF_OPEN:
        if (b->probe_in_flight && now_ms - b->probe_sent_ms < b->cfg.probe_timeout_ms)
            break;
        b->probe_in_flight = true;
        b->probe_sent_ms = now_ms;
        v = BREAKER_PROBE;
        break;
    }
    pthread_mutex_unlock(&b->mu);
    return v;
}

static bool is_failure(BreakerOutcome o) { return o == BREAKER_TIMEOUT || o == BREAKER_SERVER_ERROR || o == BREAKER_CONNECTION; }

static void record_closed(Breaker *b, int64_t now_ms, BreakerOutcome o)
{
    if (o == BREAKER_NEUTRAL)
        return;
    add_to_window(b, now_ms, is_failure(o));
    if (!is_failure(o)) {
        b->streak = 0;
        return;
    }
    if (b->streak == 0 || now_ms - b->streak_from_ms >= b->cfg.window_ms) {
        b->streak = 0;
        b->streak_from_ms = now_ms;
    }
    b->streak++;
    int f, s;
    count_window(b, now_ms, &f, &s);
    if (f >= b->cfg.failures && (int64_t)f * 100 >= (int64_t)b->cfg.failure_pct * (f + s))
        open_for(b, now_ms, "failures_in_window");
    else if (b->streak >= b->cfg.failures)
        open_for(b, now_ms, "failures_in_a_row");
}

static void record_probe(Breaker *b, int64_t now_ms, BreakerOutcome o)
{
    if (o == BREAKER_NEUTRAL) {
        b->probe_in_flight = false;
    } else if (is_failure(o)) {
        b->cooldown_ms = b->cooldown_ms > b->cfg.cooldown_cap_ms / 2 ? b->cfg.cooldown_cap_ms : b->cooldown_ms * 2;
        open_for(b, now_ms, "probe_failed");
    } else {
        b->state = BREAKER_CLOSED;
        b->opened_at_ms = -1;
        b->cooldown_ms = b->cfg.cooldown_ms;
        b->probe_in_flight = false;
        b->reason = "probe_succeeded";
        clear_window(b);
    }
}

void breaker_record(Breaker *b, int64_t now_ms, BreakerOutcome outcome, bool probe)
{
    pthread_mutex_lock(&b->mu);
    if (b->state == BREAKER_CLOSED)
        record_closed(b, now_ms, outcome);
    else if (b->state == BREAKER_HALF_OPEN && probe)
        record_probe(b, now_ms, outcome);
    /* otherwise: a request from before the opening, or a stale probe; only the probe decides */
    pthread_mutex_unlock(&b->mu);
}

void breaker_state(Breaker *b, int64_t now_ms, BreakerSnapshot *out)
{
    pthread_mutex_lock(&b->mu);
    out->state = b->state;
    count_window(b, now_ms, &out->failures, &out->successes);
    out->opened_at_ms = b->state == BREAKER_CLOSED ? -1 : b->opened_at_ms;
    out->next_probe_ms = b->state == BREAKER_OPEN ? b->next_probe_ms : -1;
    out->cooldown_ms = b->cooldown_ms;
    out->probe_in_flight = b->probe_in_flight;
    out->opens = b->opens;
    out->reason = b->reason;
    pthread_mutex_unlock(&b->mu);
}

BreakerOutcome breaker_outcome_http(int s)
{
    if (s == 408)
        return BREAKER_TIMEOUT;
    if (s == 429)
        return BREAKER_NEUTRAL;
    if (s >= 200 && s < 500)
        return s >= 300 && s < 400 ? BREAKER_NEUTRAL : BREAKER_SUCCESS;
    if (s >= 500 && s < 600)
        return BREAKER_SERVER_ERROR;
    if (s >= 100 && s < 200)
        return BREAKER_NEUTRAL;
    return BREAKER_CONNECTION;
}

BreakerOutcome breaker_outcome_transport(OaiNetError e)
{
    switch (e) {
    case OAI_NET_TIMEOUT: return BREAKER_TIMEOUT;
    case OAI_NET_CONNECT:
    case OAI_NET_RESET:
    case OAI_NET_TLS:
    case OAI_NET_BAD_BODY: return BREAKER_CONNECTION;
    case OAI_NET_TOO_LARGE:
    case OAI_NET_INVALID: return BREAKER_NEUTRAL;
    }
    return BREAKER_CONNECTION;
}

const char *breaker_state_name(BreakerState s)
{
    switch (s) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}

const char *breaker_outcome_name(BreakerOutcome o)
{
    switch (o) {
    case BREAKER_SUCCESS: return "success";
    case BREAKER_NEUTRAL: return "neutral";
    case BREAKER_TIMEOUT: return "timeout";
    case BREAKER_SERVER_ERROR: return "server_error";
    case BREAKER_CONNECTION: return "connection";
    }
    return "unknown";
}
