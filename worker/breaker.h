/* breaker.h — a circuit breaker per model: after repeated failures, stop sending to the model and
 * let one probe through now and then until it answers again.
 *
 * States. CLOSED: everything goes. It OPENs when, within the window (BreakerConfig.window_ms), at
 * least `failures` outcomes failed AND they are at least `failure_pct` percent of the outcomes that
 * said something (failures + successes). Both, because either alone misfires: a count alone opens
 * on background noise at high volume (0.5% of 5xx at 100 requests a second is 30 failures a
 * minute from a model that is fine), a rate alone opens on one failure out of one at low volume.
 * It also OPENs on `failures` failures in a row (no success between them, within one window): a model that was fine a
 * minute ago has a window full of successes, and the rate alone would wait for the failures to
 * outnumber them — measured, a model down under load opened only after 72 of its first 73 failed
 * requests, when most calls had spent their tries. Background noise almost never fails five times
 * running (0.5% to the fifth power); an outage does at once.
 * OPEN: nothing goes until the cooldown has passed; then the first breaker_allow turns it HALF_OPEN
 * and gets the one probe. HALF_OPEN: exactly one probe in flight at a time, whatever the number of
 * threads; every other caller is denied. The probe's success CLOSEs it (window cleared, cooldown
 * back to its first value); its failure OPENs it again for twice the previous cooldown, capped at
 * cooldown_cap_ms. A probe whose outcome says nothing (NEUTRAL) frees the slot for another probe.
 * A probe that never reports (a lost call) stops blocking after probe_timeout_ms.
 *
 * The window is twelve slots of window_ms / 12: a failure counts for between 11/12 of the window
 * and the whole window after it happened, never longer. Memory and time per call are constant.
 * Times are a monotonic clock's milliseconds (>= 0; a negative now_ms counts as 0).
 *
 * What fails. Timeouts (and 408), 5xx, and failures below HTTP (connect, reset, TLS, a 2xx body cut
 * short) are failures: they say the model or the way to it is unwell. Everything the model answered
 * on purpose is a success for the breaker, 4xx included: a 400 or a 404 is about the request, and a
 * breaker that opened on them would hold good requests back for a bad one's sake.
 * A 429 is NEUTRAL, neither: the model is up and answering, and it is our pace that is wrong. The
 * rate limiter answers it (pause for retry-after, halve the rate); opening the breaker as well
 * would hold the model's traffic back for a whole cooldown when waiting a second was the cure,
 * and a breaker opened by our own overload would flap with every burst. (insufficient_quota, a 429
 * that is no rate limit, stops the whole provider in the pool; the breaker need not see it.)
 *
 * Outcomes of requests admitted before the breaker opened, arriving while it is open or half-open,
 * are ignored: only the probe decides. Each state change has a stable reason for logs and status:
 * "failures_in_window", "failures_in_a_row", "probe_failed", "probe_succeeded".
 *
 * Threads. One breaker per model, shared by all the pool's threads; every function takes an
 * internal mutex held for a few operations and never sleeps, reads a clock or logs (callers pass
 * clock_mono_ms()).
 *
 * How the pool uses it (worker/pool.c, outage_gate). Before a call's request leaves, before the
 * rate limiter (which must not spend an admission on a denied call): breaker_allow on its model's
 * breaker. ALLOW: it goes. PROBE: it goes, marked as the probe; if it then cannot leave (the limiter
 * says wait, it fails before sending), NEUTRAL is recorded with probe = true so the slot is freed.
 * DENY: an answer moves to the first fallback of its tier (tiers[i].fallback) whose breaker lets it
 * through, else the kind's on_outage decides (wait in the queue until next_probe_ms without spending
 * an attempt, degrade, fail); a judge, second sample, shadow or compression request fails as a
 * failed request of its kind does. Every finished exchange records its outcome with the probe mark
 * (breaker_note); a state change is logged with its reason. A request that failed while the breaker
 * is not closed is not retried into the outage: it goes back through the gate. breaker_state feeds
 * the heartbeat (tierq status). probe_timeout_ms is the provider's timeout_ms plus its connect
 * timeout; the thresholds and cooldowns are the provider's "breaker" settings in jobs/models.json. */
#ifndef TQ_BREAKER_H
#define TQ_BREAKER_H

#include "err.h"
#include "openai.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN } BreakerState;

typedef enum {
    BREAKER_ALLOW = 0, /* closed: send */
    BREAKER_PROBE,     /* half-open: send this one as the probe, and record its outcome with probe */
    BREAKER_DENY,      /* open, or a probe is in flight: do not send to this model now */
} BreakerVerdict;

typedef enum {
    BREAKER_SUCCESS = 0,  /* the model answered: 2xx, or a 4xx about the request */
    BREAKER_NEUTRAL,      /* says nothing about the model: 429, a call aborted or never sent, our
                           * own error (response over our size cap, bad URL) */
    BREAKER_TIMEOUT,      /* request or connect timeout, 408 */
    BREAKER_SERVER_ERROR, /* 5xx */
    BREAKER_CONNECTION,   /* connection refused or reset, DNS, TLS, a 2xx body cut short */
} BreakerOutcome;

typedef struct BreakerConfig {
    int failures;             /* failures in the window that open it, >= 1 */
    int failure_pct;          /* ... that are at least this percent of failures + successes, 0..100 */
    int64_t window_ms;        /* >= 12 */
    int64_t cooldown_ms;      /* open -> first probe, >= 1 */
    int64_t cooldown_cap_ms;  /* the cooldown doubles per failed probe up to this, >= cooldown_ms */
    int64_t probe_timeout_ms; /* a probe silent this long lets another one go, >= 1 */
} BreakerConfig;

/* 5 failures and at least 50% in 60 s; cooldown 10 s doubling to 5 min; probe timeout 10 min. */
void breaker_default_config(BreakerConfig *c);

typedef struct BreakerSnapshot {
    BreakerState state;
    int failures;            /* in the window now (0 while open or half-open) */
    int successes;
    int64_t opened_at_ms;    /* when this outage began (the first opening since it was last
                              * closed); -1 when closed */
    int64_t next_probe_ms;   /* open: when the next probe may go; -1 otherwise */
    int64_t cooldown_ms;     /* the cooldown in force (or next to be used) */
    bool probe_in_flight;
    uint64_t opens;          /* times it went from closed to open */
    const char *reason;      /* the last state change's reason; "" before the first */
} BreakerSnapshot;

typedef struct Breaker Breaker;

/* A closed breaker. cfg is copied; NULL means breaker_default_config. Returns 0; TQ_EINVAL when a
 * field is out of range (err names it); TQ_ENOMEM. *out is set only on success. */
int breaker_new(const BreakerConfig *cfg, Breaker **out, TqErr *err);
/* breaker_free(NULL) does nothing. No other thread may be using b. */
void breaker_free(Breaker *b);

/* May a request go to the model at now_ms? See BreakerVerdict. Turns OPEN into HALF_OPEN once the
 * cooldown has passed, and hands out the probe to exactly one caller. Never blocks. */
BreakerVerdict breaker_allow(Breaker *b, int64_t now_ms);

/* The outcome of a request to the model at now_ms; probe = it was sent on a BREAKER_PROBE verdict. */
void breaker_record(Breaker *b, int64_t now_ms, BreakerOutcome outcome, bool probe);

/* State at now_ms, for tierq status and the heartbeat. */
void breaker_state(Breaker *b, int64_t now_ms, BreakerSnapshot *out);

/* The outcome of an HTTP answer: 2xx and 4xx SUCCESS, except 408 TIMEOUT and 429 NEUTRAL; 5xx
 * SERVER_ERROR; 1xx and 3xx NEUTRAL (redirects are not followed: a base URL to fix, which fails the
 * job, not a sick model); 0 or out of range CONNECTION (no HTTP answer at all). */
BreakerOutcome breaker_outcome_http(int http_status);
/* The outcome of a transport failure: TIMEOUT; CONNECT, RESET, TLS, BAD_BODY CONNECTION;
 * TOO_LARGE and INVALID NEUTRAL (our cap, our configuration: not the model's health). */
BreakerOutcome breaker_outcome_transport(OaiNetError e);

/* "closed", "open", "half_open". */
const char *breaker_state_name(BreakerState s);
/* "success", "neutral", "timeout", "server_error", "connection". */
const char *breaker_outcome_name(BreakerOutcome o);

#endif
