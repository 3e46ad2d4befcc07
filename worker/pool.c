#include "pool.h"

#include "backoff.h"
#include "breaker.h"
#include "clock.h"
#include "cost.h"
#include "json.h"
#include "log.h"
#include "openai.h"
#include "ratelimit.h"
#include "route.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A provider that refused this account is stopped for the rest of the process. */
enum { PROV_OK = 0, PROV_OUT_OF_QUOTA, PROV_UNAUTHORIZED };

/* Worker-private state of a call while it is being sent. */
typedef struct Transfer {
    CURL *easy;
    Buf body;              /* request body, built once per call and reused by retries */
    Buf resp;              /* response body, capped at max_response_bytes */
    OaiHeaders hdr;
    char errbuf[CURL_ERROR_SIZE];
    bool too_large;
    int64_t start_ms;
    int slot;              /* index in the worker's live array while in flight */
    int sends;             /* times curl sent the request: more than once when a reused connection
                            * died under it and curl sent it again on a new one, by itself */
} Transfer;

typedef struct Worker {
    struct Pool *pool;
    int index;
    pthread_t thread;
    CURLM *multi;
    Fifo *inbox;
    Call **ready_head, **ready_tail; /* per provider FIFO of calls waiting for capacity */
    Call **heap;                     /* calls waiting for their retry time, min-heap on due_ms */
    int nheap, capheap;
    int running;                     /* transfers in this worker's multi handle */
    Call **live;                     /* calls whose transfer is in curl, so stop can abort them */
    int nlive, caplive;
    CURL **spare;                    /* easy handles kept for reuse */
    int nspare, capspare;
    uint64_t rng;
    uint64_t seq;
    char key_prefix[200];
    int epfd;                        /* epoll set: curl's sockets and wakefd */
    int wakefd;                      /* eventfd written by pool_submit and pool_stop */
    int64_t curl_due_ms;             /* when curl wants socket_action(TIMEOUT); -1 = never */
    Call *leftover;                  /* filled on stop */
} Worker;

struct Pool {
    const TqConfig *cfg;
    const PoolOptions *opt;      /* the caller's, read only */
    Fifo *done;
    Worker *workers;
    int nworkers;
    atomic_uint next_worker;
    atomic_int in_flight;
    atomic_int peak_in_flight;
    atomic_int pending;
    atomic_int *prov_in_flight;
    RateLimiter **model_rl;  /* per model (cfg->models): its rpm/tpm, tightened by its replies */
    RateLimiter **prov_rl;   /* per provider: the limit its models share; NULL where it has none */
    Breaker **model_br;      /* per model: the circuit breaker (worker/breaker.h) */
    atomic_uint_fast64_t *model_closes; /* per model: times its breaker closed (pool_model_closes) */
    atomic_int outage_held;          /* escalating calls waiting in the workers for a model's probe */
    atomic_int outage_held_jobs;     /* ... and their jobs */
    atomic_int *prov_stopped;        /* PROV_* : why nothing more goes to the provider */
    atomic_bool stopped_any;
    atomic_bool stop;
    pthread_mutex_t resume_mu;       /* pool_resume against pool_stop */
    bool closed;                     /* under resume_mu: no call comes back in any more */
    struct curl_slist **prov_headers;
    char **prov_url;
    atomic_int *shadow_boost_milli;  /* per kind: the shadow rate's factor x 1000 (1000 = as configured) */
};

void pool_default_options(PoolOptions *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 0;
    o->max_in_flight = 256;
    o->max_tries = 4;
    o->max_response_bytes = 8u << 20;
    o->backoff_base_ms = 250;
    o->backoff_cap_ms = 20000;
    o->quota_retry_ms = 15 * 60 * 1000;
    o->requeue_base_ms = 30000;
}

/* ---- heap of delayed calls ------------------------------------------------------------------ */

static int heap_push(Worker *w, Call *c)
{
    if (w->nheap == w->capheap) {
        int cap = w->capheap ? w->capheap * 2 : 64;
        Call **h = realloc(w->heap, (size_t)cap * sizeof *h);
        if (!h)
            return TQ_ENOMEM;
        w->heap = h;
        w->capheap = cap;
    }
    int i = w->nheap++;
    w->heap[i] = c;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (w->heap[p]->due_ms <= w->heap[i]->due_ms)
            break;
        Call *t = w->heap[p];
        w->heap[p] = w->heap[i];
        w->heap[i] = t;
        i = p;
    }
    return 0;
}

static Call *heap_pop(Worker *w)
{
    if (w->nheap == 0)
        return NULL;
    Call *top = w->heap[0];
    w->heap[0] = w->heap[--w->nheap];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->nheap && w->heap[l]->due_ms < w->heap[m]->due_ms)
            m = l;
        if (r < w->nheap && w->heap[r]->due_ms < w->heap[m]->due_ms)
            m = r;
        if (m == i)
            break;
        Call *t = w->heap[m];
        w->heap[m] = w->heap[i];
        w->heap[i] = t;
        i = m;
    }
    return top;
}

/* ---- call lifecycle ------------------------------------------------------------------------- */

static int provider_of(const Call *c) { return c->cfg->models[c->send_model].provider; }

static void ready_push(Worker *w, Call *c)
{
    int p = provider_of(c);
    c->next = NULL;
    if (w->ready_tail[p])
        w->ready_tail[p]->next = c;
    else
        w->ready_head[p] = c;
    w->ready_tail[p] = c;
}

static void transfer_free(Transfer *t)
{
    if (!t)
        return;
    buf_free(&t->body);
    buf_free(&t->resp);
    free(t);
}

/* The row written as the intent of the request that just ended (or was cut off), ready to be filled
 * with what happened; NULL when the request had none. The next request needs a new intent. */
static LedgerRow *take_intent_row(Call *c)
{
    if (c->intent_row < 0)
        return NULL;
    LedgerRow *row = &c->rows[c->intent_row];
    c->intent_row = -1;
    c->intent_durable = false;
    row->status = NULL;
    row->reason = NULL;
    row->tokens_in = row->tokens_cached = row->tokens_out = row->tokens_reasoning = 0;
    row->estimated = false;
    row->cost_pico = 0;
    return row;
}

/* Shadow evaluation: the sampled jobs of c that a tier cheaper than the baseline answered are asked
 * again of the baseline model, by calls of their own sent from this worker. */
static void spawn_shadows(Worker *w, Call *c)
{
    if (c->all_tiers || !(c->kind->shadow.rate > 0) || atomic_load(&w->pool->stop))
        return;
    const Pool *p = w->pool;
    const ptrdiff_t k = c->kind->base - p->cfg->kinds;
    double rate = c->kind->shadow.rate;
    if (p->shadow_boost_milli && k >= 0 && k < p->cfg->nkinds)
        rate *= atomic_load(&p->shadow_boost_milli[k]) / 1000.0;
    for (int j = 0; j < c->njobs; j++) {
        const CallJob *cj = &c->jobs[j];
        if (!cj->job || cj->outcome != CALL_JOB_DONE || cj->answer_model == c->kind->baseline_model ||
            !call_shadow_sampled(rate, cj->job->id))
            continue;
        Call *s = call_new_shadow(c, cj);
        if (!s)
            continue; /* one comparison less */
        atomic_fetch_add(&w->pool->pending, 1);
        ready_push(w, s);
    }
}

/* The call is finished (every job has an outcome): hand it to the writer. */
static void finish_call(Worker *w, Call *c)
{
    call_cancel_intent(c); /* an intent whose request never left (a failure before sending) */
    spawn_shadows(w, c);
    Transfer *t = c->transfer;
    if (t) {
        if (t->easy) {
            if (w->nspare == w->capspare) {
                int cap = w->capspare ? w->capspare * 2 : 64;
                CURL **s = realloc(w->spare, (size_t)cap * sizeof *s);
                if (s) {
                    w->spare = s;
                    w->capspare = cap;
                }
            }
            if (w->nspare < w->capspare)
                w->spare[w->nspare++] = t->easy;
            else
                curl_easy_cleanup(t->easy);
        }
        transfer_free(t);
        c->transfer = NULL;
    }
    atomic_fetch_sub(&w->pool->pending, 1);
    fifo_push(w->pool->done, c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    Transfer *t = ud;
    size_t n = size * nmemb;
    if (buf_append(&t->resp, ptr, n)) {
        t->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Called by curl right before each time it sends the request. */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port)
{
    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    ((Transfer *)ud)->sends++;
    return CURL_PREREQFUNC_OK;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    Transfer *t = ud;
    size_t n = size * nmemb;
    oai_headers_feed(&t->hdr, ptr, n);
    return n;
}

static void ready_push(Worker *w, Call *c);
static void release_admission(struct Pool *p, Call *c);
static void breaker_note(struct Pool *p, Call *c, BreakerOutcome o);
static void model_unavailable(Worker *w, Call *c, int64_t now, const char *why);
static void record_resent(Worker *w, Call *c);
static void release_slot(Pool *p, Call *c);
static void worker_close(Worker *w);
static void pool_free(Pool *p);

/* Calls split off a batch go out from this worker like new ones. */
static void send_forks(Worker *w, Call *c)
{
    Call *f = c->forks;
    c->forks = NULL;
    while (f) {
        Call *next = f->next;
        atomic_fetch_add(&w->pool->pending, 1);
        ready_push(w, f);
        f = next;
    }
}

/* The exchanges the call has had so far go to the writer now, not when the call ends: a kill or a
 * stop in the middle of an escalation or a retry then loses no paid row. */
static void ship_rows(Worker *w, Call *c)
{
    Call *rows = call_take_rows(c);
    if (rows)
        fifo_push(w->pool->done, rows);
}

/* Send the call again from scratch (next tier, or its judge): the body is rebuilt for the new phase. */
static void resend(Worker *w, Call *c)
{
    ship_rows(w, c);
    Transfer *t = c->transfer;
    if (t) {
        buf_free(&t->body);
        buf_init(&t->body, 0);
    }
    ready_push(w, c);
}

/* The current request failed for good. A job that already has an answer in hand (escalating, or
 * judging) keeps it; otherwise its jobs fail with this reason. */
static void fail_call(Worker *w, Call *c, const char *reason, const char *msg, bool retryable, int64_t after)
{
    call_cancel_intent(c); /* still announced: the request never left */
    release_slot(w->pool, c);
    release_admission(w->pool, c); /* ... nor took its limiters' admission or the probe slot */
    RouteAction a = route_on_failure(c, reason, retryable);
    if (a == ROUTE_SEND) {
        resend(w, c);
        return;
    }
    if (a == ROUTE_FORK)
        send_forks(w, c);
    else if (a == ROUTE_FAIL)
        call_fail_all(c, reason, msg, retryable, after);
    finish_call(w, c);
}


static int start_transfer(Worker *w, Call *c)
{
    Pool *p = w->pool;
    int prov = provider_of(c);
    const TqProvider *pr = &p->cfg->providers[prov];
    Transfer *t = c->transfer;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return TQ_ENOMEM;
        buf_init(&t->body, 0);
        c->transfer = t;
    }
    if (t->body.len == 0) {
        TqErr err = {0};
        if (route_build_body(c, &t->body, &err)) {
            fail_call(w, c, "bad_request_body", err.msg, false, 0);
            return 0;
        }
    }
    buf_free(&t->resp);
    buf_init(&t->resp, p->opt->max_response_bytes);
    oai_headers_init(&t->hdr);
    t->too_large = false;
    t->sends = 0;
    t->errbuf[0] = '\0';
    if (!t->easy) {
        if (w->nspare > 0) {
            t->easy = w->spare[--w->nspare];
            curl_easy_reset(t->easy);
        } else if (!(t->easy = curl_easy_init())) {
            return TQ_ENOMEM;
        }
    } else {
        curl_easy_reset(t->easy);
    }
    CURL *e = t->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) \
    rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, p->prov_url[prov]);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, t->body.data);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body.len);
    SET(CURLOPT_HTTPHEADER, p->prov_headers[prov]);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, t);
    SET(CURLOPT_PRIVATE, c);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_TIMEOUT_MS, (long)pr->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)pr->connect_timeout_ms);
    SET(CURLOPT_NOSIGNAL, 1L);
    /* only the web: no file://, no gopher://, whatever a base URL or a redirect says */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    /* Answers are small and arrive in a few reads; curl's default 16 KiB receive buffer per handle
     * would cost 80 MB at 5,000 in flight. */
    SET(CURLOPT_BUFFERSIZE, 2048L);
#undef SET
    if (rc != CURLE_OK) {
        fail_call(w, c, "bad_request_setup", curl_easy_strerror(rc), false, 0);
        return 0;
    }
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        fail_call(w, c, "bad_request_setup", "curl_multi_add_handle failed", true, 1000);
        return 0;
    }
    if (w->nlive == w->caplive) {
        int cap = w->caplive ? w->caplive * 2 : 256;
        Call **l = realloc(w->live, (size_t)cap * sizeof *l);
        if (!l) {
            curl_multi_remove_handle(w->multi, e);
            return TQ_ENOMEM;
        }
        w->live = l;
        w->caplive = cap;
    }
    t->slot = w->nlive;
    w->live[w->nlive++] = c;
    t->start_ms = clock_mono_ms();
    c->tries++;
    w->running++;
    c->slot_reserved = false; /* its place, taken by start_ready (take_slot), is now the transfer's */
    return 0;
}

/* Retry in this process after a delay, or give the jobs back to the queue when out of tries. */
static void retry_or_requeue(Worker *w, Call *c, const char *reason, const char *msg, int64_t retry_after_ms)
{
    Pool *p = w->pool;
    if (!atomic_load(&p->stop)) {
        BreakerSnapshot bs;
        breaker_state(p->model_br[c->send_model], clock_mono_ms(), &bs);
        if (bs.state != BREAKER_CLOSED) {
            /* the model is down: no retry into the outage, no attempt spent on it; the gate sends the
             * call to a fallback, makes it the probe, or hands it to on_outage */
            ship_rows(w, c);
            ready_push(w, c);
            return;
        }
    }
    int64_t delay = backoff_next_ms(c->tries - 1, retry_after_ms, p->opt->backoff_base_ms, p->opt->backoff_cap_ms, &w->rng);
    if (c->tries < p->opt->max_tries && !atomic_load(&p->stop)) {
        c->due_ms = clock_mono_ms() + delay;
        ship_rows(w, c);
        if (heap_push(w, c) == 0)
            return;
    }
    if (c->model_failed && c->phase == CALL_PHASE_ANSWER && c->tier > 0 && !c->all_tiers &&
        c->kind->on_outage == TQ_OUTAGE_WAIT && !atomic_load(&p->stop)) {
        /* escalating, its tier's model failing every try (its breaker may not have opened yet): a wait
         * kind waits for the model rather than settling for an answer under the bar */
        ship_rows(w, c);
        model_unavailable(w, c, clock_mono_ms(), msg);
        return;
    }
    char m[600];
    snprintf(m, sizeof m, "%s after %d tries: %s", reason, c->tries, msg);
    /* back to the queue: the wait grows with the job's attempts, so an outage of minutes does not
     * use up every attempt in seconds (the jobs of a call share a claim, hence an attempt number) */
    int attempt = 1;
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job) {
            attempt = c->jobs[i].job->attempt;
            break;
        }
    fail_call(w, c, reason, m, true, backoff_requeue_ms(attempt, p->opt->requeue_base_ms, delay, &w->rng));
}

static void on_success(Worker *w, Call *c, LedgerRow *row, OaiResponse *resp)
{
    Transfer *t = c->transfer;
    RouteAction a = route_on_response(c, row, resp, &t->body);
    if (a == ROUTE_SEND) {
        resend(w, c);
        return;
    }
    if (a == ROUTE_FORK)
        send_forks(w, c);
    finish_call(w, c);
}

/* A 2xx that carries no answer to route: no choice at all, or DeepSeek's "insufficient system
 * resource" (the answer was interrupted). Its tokens were billed: charge them, then try again. */
static const char *unanswered_reason(const OaiResponse *resp)
{
    if (resp->no_choice)
        return "no_choices";
    if (resp->finish_reason && strcmp(resp->finish_reason, "insufficient_system_resource") == 0)
        return "provider_interrupted";
    if (resp->finish_reason && strcmp(resp->finish_reason, "error") == 0)
        return "provider_error"; /* OpenRouter: the upstream provider failed mid-answer */
    return NULL;
}

static OaiNetError net_error_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return OAI_NET_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return OAI_NET_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION: return OAI_NET_TLS;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return OAI_NET_INVALID;
    default: return OAI_NET_RESET; /* GOT_NOTHING, RECV_ERROR, SEND_ERROR, PARTIAL_FILE, ... */
    }
}

/* The reply's word to the model's limiter: its x-ratelimit-* headers tighten; a 429 (not quota)
 * pauses and slows it; tokens reserved at admission are corrected by usage (total_tokens: the
 * reply's usage; 0: the provider refused the request; -1: unknown, the estimate stands). */
static void rate_reply(Pool *p, Call *c, const Transfer *t, long status, int64_t total_tokens, bool is_429)
{
    if (c->rl_prov_held) {
        /* the provider's shared limit learns from 429s and usage; the x-ratelimit-* headers are the
         * model's (providers count them per model) */
        RateLimiter *prl = p->prov_rl[provider_of(c)];
        c->rl_prov_held = false;
        if (is_429)
            ratelimit_on_429(prl, clock_mono_ms(), oai_headers_retry_after_ms(&t->hdr, time(NULL)), &c->rl_prov_ticket);
        ratelimit_settle(prl, &c->rl_prov_ticket, total_tokens);
        if (status >= 200 && status < 300)
            ratelimit_on_success(prl, clock_mono_ms());
    }
    if (!c->rl_held)
        return;
    c->rl_held = false;
    RateLimiter *rl = p->model_rl[c->send_model];
    int64_t now = clock_mono_ms();
    ratelimit_learn_limits(rl, now, t->hdr.limit_requests, t->hdr.limit_tokens);
    ratelimit_on_headers(rl, now, t->hdr.remaining_requests, t->hdr.remaining_tokens, t->hdr.reset_requests_ms,
                         t->hdr.reset_tokens_ms);
    if (is_429)
        ratelimit_on_429(rl, now, oai_headers_retry_after_ms(&t->hdr, time(NULL)), &c->rl_ticket);
    ratelimit_settle(rl, &c->rl_ticket, total_tokens);
    if (status >= 200 && status < 300)
        ratelimit_on_success(rl, now);
}

static void on_transfer_done(Worker *w, CURL *e, CURLcode res)
{
    Pool *p = w->pool;
    Call *c = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
    curl_multi_remove_handle(w->multi, e);
    w->running--;
    atomic_fetch_sub(&p->in_flight, 1);
    int prov = provider_of(c);
    atomic_fetch_sub(&p->prov_in_flight[prov], 1);
    Transfer *t = c->transfer;
    c->model_failed = false; /* breaker_note says, for the exchange that just ended */
    Call *moved = w->live[--w->nlive];
    w->live[t->slot] = moved;
    ((Transfer *)moved->transfer)->slot = t->slot;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    record_resent(w, c);
    /* The exchange's row: the one written as its intent before it left, else a new one, unique per
     * process (worker id), thread (index) and exchange (seq). */
    LedgerRow *row = take_intent_row(c);
    if (!row)
        row = call_add_row(c, w->key_prefix, ++w->seq);
    if (!row) {
        retry_or_requeue(w, c, "out_of_memory", "out of memory recording the call", -1);
        return;
    }
    row->http_status = (int)status;
    row->latency_ms = clock_mono_ms() - t->start_ms;
    char msg[600];

    if (res == CURLE_OK && status >= 200 && status < 300) {
        OaiResponse resp;
        TqErr err = {0};
        /* a batch needs every token's logprob to score each item on its own tokens */
        int prc = c->batched ? oai_parse_response_tokens(t->resp.data ? t->resp.data : "", t->resp.len, 400000, &resp, &err)
                             : oai_parse_response(t->resp.data ? t->resp.data : "", t->resp.len, 200000, &resp, &err);
        const char *unanswered = prc == 0 ? unanswered_reason(&resp) : NULL;
        rate_reply(p, c, t, status, prc == 0 && resp.usage.present ? resp.usage.total_tokens : -1, false);
        /* an answer cut off by the provider, or a body cut short, says the model is unwell */
        breaker_note(p, c, prc != 0 ? BREAKER_CONNECTION
                           : unanswered && strcmp(unanswered, "no_choices") != 0 ? BREAKER_SERVER_ERROR : BREAKER_SUCCESS);
        if (unanswered) {
            route_charge_unanswered(c, row, &resp, &t->body);
            row->status = "retry";
            row->reason = unanswered;
            snprintf(msg, sizeof msg, "%s: the provider answered http %ld without an answer (%s%s%s)", unanswered, status,
                     strcmp(unanswered, "no_choices") == 0 ? "choices: []" : resp.finish_reason,
                     resp.choice_error ? ": " : "", resp.choice_error ? resp.choice_error : "");
            oai_response_free(&resp);
            row->error = strdup(msg);
            retry_or_requeue(w, c, unanswered, msg, -1);
            return;
        }
        if (prc == 0) {
            on_success(w, c, row, &resp);
            oai_response_free(&resp);
            return;
        }
        row->status = "retry";
        row->reason = oai_net_reason(OAI_NET_BAD_BODY);
        row->error = strdup(err.msg);
        retry_or_requeue(w, c, row->reason, err.msg, -1);
        return;
    }
    if (res == CURLE_OK) {
        OaiError oe;
        oai_parse_error((int)status, t->resp.data, t->resp.len, &oe);
        OaiVerdict v = oai_classify((int)status, &oe);
        /* a refused request used no tokens; a 429 for the rate (not the quota) slows the model down */
        rate_reply(p, c, t, status, 0, status == 429 && v == OAI_RETRY);
        breaker_note(p, c, breaker_outcome_http((int)status));
        const char *reason = oai_error_reason((int)status, &oe);
        snprintf(msg, sizeof msg, "http %ld %s: %s", status, reason, oe.message);
        row->reason = reason;
        row->error = strdup(msg);
        if (v == OAI_QUOTA || status == 401) {
            /* the account, not the job: out of quota, or the key is refused (wrong, missing,
             * revoked). Every job of the provider would meet it: stop sending, hand them back. */
            bool quota = v == OAI_QUOTA;
            row->status = quota ? "quota" : "failed";
            int expected = PROV_OK;
            if (atomic_compare_exchange_strong(&p->prov_stopped[prov], &expected, quota ? PROV_OUT_OF_QUOTA : PROV_UNAUTHORIZED))
                log_msg(LOG_ERROR, "worker", "provider %s %s: nothing more is sent to it by this process; its jobs wait in the queue",
                        p->cfg->providers[prov].name,
                        quota ? "is out of quota" : "refused the API key (http 401): check its api_key_env / headers");
            atomic_store(&p->stopped_any, true);
            fail_call(w, c, quota ? "provider_quota_exhausted" : "provider_unauthorized", msg, true, p->opt->quota_retry_ms);
        } else if (v == OAI_RETRY) {
            row->status = "retry";
            retry_or_requeue(w, c, reason, msg, oai_headers_retry_after_ms(&t->hdr, time(NULL)));
        } else {
            row->status = "failed";
            fail_call(w, c, reason, msg, false, 0);
        }
        return;
    }
    rate_reply(p, c, t, status, -1, false); /* no reply, or a cut one: the estimate stands */
    OaiNetError ne = t->too_large ? OAI_NET_TOO_LARGE : net_error_of(res);
    breaker_note(p, c, breaker_outcome_transport(ne));
    const char *reason = oai_net_reason(ne);
    if (ne == OAI_NET_TOO_LARGE)
        snprintf(msg, sizeof msg, "%s: the response exceeded %zu bytes", reason, p->opt->max_response_bytes);
    else
        snprintf(msg, sizeof msg, "%s: %s", reason, t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
    row->reason = reason;
    row->error = strdup(msg);
    if (oai_classify_transport(ne) == OAI_RETRY) {
        row->status = "retry";
        retry_or_requeue(w, c, reason, msg, -1);
    } else {
        row->status = "failed";
        fail_call(w, c, reason, msg, false, 0);
    }
}

/* Before a request leaves, its ledger row is written with status "sent" (in the writer's next
 * flush, with everything else): if this process dies with the request in flight, the row is there
 * to be settled as "unknown" at an estimated cost, so the ledger counts every request sent. The call
 * waits, parked with the writer, and comes back through pool_resume. Returns true when the call is
 * taken care of (parked, or failed because its body cannot be built); false to send it at once (no
 * memory for the intent: the request goes without one). */
static bool park_for_intent(Worker *w, Call *c)
{
    Transfer *t = c->transfer;
    if (!t) {
        if (!(t = calloc(1, sizeof *t)))
            return false;
        buf_init(&t->body, 0);
        c->transfer = t;
    }
    if (t->body.len == 0) {
        TqErr err = {0};
        if (route_build_body(c, &t->body, &err)) {
            fail_call(w, c, "bad_request_body", err.msg, false, 0);
            return true;
        }
    }
    LedgerRow *row = call_add_row(c, w->key_prefix, ++w->seq);
    if (!row)
        return false;
    c->intent_row = (int)(row - c->rows);
    row->status = "sent";
    row->reason = "sent";
    row->tokens_in = oai_estimate_tokens(t->body.data ? t->body.data : "", t->body.len);
    row->estimated = true;
    row->max_tokens = c->sent_max_tokens;
    row->max_tokens_capped = c->max_tokens_capped;
    Call *carrier = call_intent_carrier(c);
    if (!carrier) {
        call_cancel_intent(c);
        return false;
    }
    c->worker = w->index;
    /* it holds its place in flight (taken by start_ready) from now: at most max_in_flight requests
     * are announced and not yet answered, so a crash leaves no announced request that was never going
     * to leave soon */
    fifo_push(w->pool->done, carrier);
    return true;
}

/* A place in flight, for the process and the provider, taken atomically: false when either is full
 * (another worker may have taken the last place since start_ready looked). */
static bool take_slot(Pool *p, int prov)
{
    int cur = atomic_load(&p->in_flight);
    do {
        if (cur >= p->opt->max_in_flight)
            return false;
    } while (!atomic_compare_exchange_weak(&p->in_flight, &cur, cur + 1));
    int pc = atomic_load(&p->prov_in_flight[prov]);
    do {
        if (pc >= p->cfg->providers[prov].max_in_flight) {
            atomic_fetch_sub(&p->in_flight, 1);
            return false;
        }
    } while (!atomic_compare_exchange_weak(&p->prov_in_flight[prov], &pc, pc + 1));
    int now = cur + 1, peak = atomic_load(&p->peak_in_flight);
    while (now > peak && !atomic_compare_exchange_weak(&p->peak_in_flight, &peak, now)) {
    }
    return true;
}

/* A call that held a place in flight and will not send from it. */
static void release_slot(Pool *p, Call *c)
{
    if (!c->slot_reserved)
        return;
    c->slot_reserved = false;
    atomic_fetch_sub(&p->in_flight, 1);
    atomic_fetch_sub(&p->prov_in_flight[provider_of(c)], 1);
}

/* What a request will count against its model's tokens-per-minute before its reply says: its jobs'
 * texts at ~4 bytes a token, plus the output it may ask for. */
static int64_t estimate_tokens(const Call *c)
{
    int64_t bytes = 0, out = 0;
    for (int i = 0; i < c->njobs; i++) {
        const QueueJob *j = c->jobs[i].job;
        if (j)
            bytes += (int64_t)strlen(j->prompt) + (j->context ? (int64_t)strlen(j->context) : 0) +
                     (j->system_prompt ? (int64_t)strlen(j->system_prompt) : 0);
        out += c->jobs[i].max_tokens > 0 ? c->jobs[i].max_tokens : 0;
    }
    return bytes / 4 + 1 + out;
}

/* Admission by the call's model limiter: true to send now; false when it must wait, and then it is
 * put back in the timer heap for when the limiter says (its place in the provider's queue is not
 * held: other models of the provider go on meanwhile). */
static bool rate_admit(Worker *w, Call *c, int64_t now)
{
    RateLimiter *rl = w->pool->model_rl[c->send_model];
    RateLimiter *prl = w->pool->prov_rl[provider_of(c)];
    int64_t wait = 0, est = estimate_tokens(c);
    if (c->rl_held || ratelimit_acquire(rl, now, est, &c->rl_ticket, &wait)) {
        c->rl_held = true;
        /* the provider's shared limit too; when it says wait, the model's admission goes back */
        if (!prl || c->rl_prov_held || ratelimit_acquire(prl, now, est, &c->rl_prov_ticket, &wait)) {
            c->rl_prov_held = prl != NULL;
            return true;
        }
        ratelimit_cancel(rl, &c->rl_ticket);
        c->rl_held = false;
    }
    c->due_ms = now + wait;
    if (heap_push(w, c))
        fail_call(w, c, "out_of_memory", "out of memory waiting for the model's rate limit", true, 1000);
    return false;
}

/* ---- outages: breakers, fallbacks, on_outage ------------------------------------------------ */

/* A request that will not leave gives back what it took: its limiters' admissions, and the breaker's
 * probe slot when it was the probe. */
static void release_admission(Pool *p, Call *c)
{
    if (c->rl_held)
        ratelimit_cancel(p->model_rl[c->send_model], &c->rl_ticket);
    if (c->rl_prov_held)
        ratelimit_cancel(p->prov_rl[provider_of(c)], &c->rl_prov_ticket);
    c->rl_held = c->rl_prov_held = false;
    if (c->br_probe)
        breaker_record(p->model_br[c->send_model], clock_mono_ms(), BREAKER_NEUTRAL, true);
    c->br_probe = false;
}

/* The outcome of the exchange that just ended, to the model's breaker; a change of state is logged
 * with its reason (once per change, whatever the number of threads). */
static void breaker_note(Pool *p, Call *c, BreakerOutcome o)
{
    Breaker *b = p->model_br[c->send_model];
    bool probe = c->br_probe;
    c->br_probe = false;
    c->model_failed = o == BREAKER_TIMEOUT || o == BREAKER_SERVER_ERROR || o == BREAKER_CONNECTION;
    int64_t now = clock_mono_ms();
    if (!probe && o == BREAKER_SUCCESS) {
        breaker_record(b, now, o, false); /* the common case: no state to compare */
        return;
    }
    BreakerSnapshot before, after;
    breaker_state(b, now, &before);
    breaker_record(b, now, o, probe);
    breaker_state(b, now, &after);
    const char *name = p->cfg->models[c->send_model].name;
    if (after.state == BREAKER_OPEN && after.opens > before.opens) {
        log_msg(LOG_WARN, "worker", "model %s: circuit breaker open (%s: %s): no requests to it for %llds, then one"
                " probe; its answers go to a tier's fallback, or as the kind's on_outage says (wait: back to the"
                " queue without spending attempts)",
                name, after.reason, breaker_outcome_name(o), (long long)(after.cooldown_ms / 1000));
    } else if (before.state != BREAKER_CLOSED && after.state == BREAKER_CLOSED) {
        atomic_fetch_add(&p->model_closes[c->send_model], 1); /* the scheduler calls its waiting jobs back */
        log_msg(LOG_INFO, "worker", "model %s: circuit breaker closed (probe_succeeded) after %llds unavailable",
                name, (long long)((now - before.opened_at_ms) / 1000));
    } else if (before.state == BREAKER_HALF_OPEN && after.state == BREAKER_OPEN)
        log_msg(LOG_WARN, "worker", "model %s: probe failed (%s), circuit breaker open again for %llds", name,
                breaker_outcome_name(o), (long long)(after.cooldown_ms / 1000));
}

/* Whether the call may be answered by a fallback of its tier: an answer, not a calibration run (every
 * tier as it is) nor a job pinned to one model (a bake-off), on a tier that names fallbacks. */
static bool may_fall_back(const Call *c)
{
    return c->phase == CALL_PHASE_ANSWER && !c->all_tiers && c->kind->pinned_model < 0 &&
           c->kind->tiers[c->tier].nfallback > 0;
}

/* How long until model m may be asked again: its next probe, or a cooldown while a probe is out. */
static int64_t unavailable_for_ms(Pool *p, int m, int64_t now, BreakerSnapshot *s)
{
    breaker_state(p->model_br[m], now, s);
    int64_t wait = s->next_probe_ms > now ? s->next_probe_ms - now : s->cooldown_ms;
    return wait < 1000 ? 1000 : wait;
}

/* A model the call's current tier may be answered by now instead of its own (tiers[i].fallback, in
 * order, then the tier's own model when the call sits on a fallback): provider not stopped, breaker
 * letting a request through, context holding the jobs' input. -1 when none. *probe: the verdict was
 * the model's probe. */
static int pick_fallback(Pool *p, const Call *c, int64_t now, bool *probe)
{
    const TqTier *tier = &c->kind->tiers[c->tier];
    int64_t input = 0;
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job)
            input += call_job_input_tokens(c->kind, &c->jobs[i]);
    for (int k = -1; k < tier->nfallback; k++) {
        int m = k < 0 ? tier->model : tier->fallback[k];
        if (m == c->send_model || atomic_load(&p->prov_stopped[p->cfg->models[m].provider]) != PROV_OK ||
            !call_model_fits(&p->cfg->models[m], input))
            continue;
        BreakerVerdict v = breaker_allow(p->model_br[m], now);
        if (v != BREAKER_DENY) {
            *probe = v == BREAKER_PROBE;
            return m;
        }
    }
    return -1;
}

/* The call's tier is answered by model m from now on (a fallback, or its own model back): the body
 * is rebuilt for m (its name, its message layout), admissions taken for the old model go back. */
static void switch_model(Worker *w, Call *c, int m)
{
    Pool *p = w->pool;
    release_admission(p, c);
    char key[300];
    snprintf(key, sizeof key, "fallback:%s:%d:%s:%s", c->kind->name, c->tier, p->cfg->models[c->send_model].name,
             p->cfg->models[m].name);
    if (m != c->kind->tiers[c->tier].model && log_first_time(key))
        log_msg(LOG_WARN, "worker", "kind %s tier %d: model %s is unavailable; answering with fallback %s (checked"
                " against the tier's bar, recorded with reason fallback)", c->kind->name, c->tier + 1,
                p->cfg->models[c->send_model].name, p->cfg->models[m].name);
    c->model = c->send_model = m;
    Transfer *t = c->transfer;
    if (t) {
        buf_free(&t->body);
        buf_init(&t->body, 0);
    }
}

/* The call starts (on) or stops (off) waiting in its worker for a model's probe: counted, so that at
 * most half of max_in_flight calls wait so and a stopping run need not wait for them. */
static void outage_hold(Pool *p, Call *c, bool on)
{
    int jobs = 0;
    for (int i = 0; i < c->njobs; i++)
        jobs += c->jobs[i].job && c->jobs[i].outcome == CALL_JOB_PENDING;
    c->outage_held = on;
    atomic_fetch_add(&p->outage_held, on ? 1 : -1);
    atomic_fetch_add(&p->outage_held_jobs, on ? jobs : -jobs);
}

/* Nothing may answer the call's request now (its model's breaker is open, or its provider stopped,
 * and no fallback can): what the kind's on_outage says. Requests other than answers (a judge, a
 * second sample, a shadow, a compression) fail as any failed request of theirs does: the signal
 * missing, the comparison skipped, the context sent uncompressed. */
static void model_unavailable(Worker *w, Call *c, int64_t now, const char *why)
{
    Pool *p = w->pool;
    BreakerSnapshot s;
    int m = c->send_model;
    int64_t wait = unavailable_for_ms(p, m, now, &s);
    wait += backoff_rand_upto(&w->rng, wait / 5 + 1); /* the jobs come back spread, not as one herd */
    int policy = c->kind->on_outage;
    bool answer = c->phase == CALL_PHASE_ANSWER;
    char msg[600], then[80];
    if (answer && policy == TQ_OUTAGE_FAIL)
        snprintf(then, sizeof then, "the kind's on_outage is fail");
    else
        snprintf(then, sizeof then, "next probe in %llds", (long long)((wait + 999) / 1000));
    if (why)
        snprintf(msg, sizeof msg, "model_unavailable: model %s failed every try (%.300s); %s", p->cfg->models[m].name,
                 why, then);
    else
        snprintf(msg, sizeof msg, "model_unavailable: model %s is unavailable (circuit breaker %s: %s, for %llds) and"
                 " no fallback of the tier can answer; %s", p->cfg->models[m].name, breaker_state_name(s.state),
                 s.reason[0] ? s.reason : "open",
                 (long long)(s.opened_at_ms >= 0 && now > s.opened_at_ms ? (now - s.opened_at_ms) / 1000 : 0), then);
    release_admission(p, c);
    int stopped = atomic_load(&p->prov_stopped[provider_of(c)]);
    if (stopped != PROV_OK) {
        /* the account, not the model: as for any call of a stopped provider */
        fail_call(w, c, stopped == PROV_OUT_OF_QUOTA ? "provider_quota_exhausted" : "provider_unauthorized",
                  stopped == PROV_OUT_OF_QUOTA ? "the provider answered insufficient_quota earlier in this run, and no"
                  " fallback of the tier can answer" : "the provider refused the API key (http 401) earlier in this run,"
                  " and no fallback of the tier can answer", true, p->opt->quota_retry_ms);
        return;
    }
    if (!answer || policy == TQ_OUTAGE_DEGRADE) {
        fail_call(w, c, "model_unavailable", msg, true, wait);
        return;
    }
    call_cancel_intent(c);
    release_slot(p, c);
    if (policy == TQ_OUTAGE_WAIT && c->tier > 0 && !c->all_tiers &&
        atomic_load(&p->outage_held) < p->opt->max_in_flight / 2) {
        /* wait, escalating: the call keeps its place in this process until the probe, with the answers
         * its jobs already paid for; back in the queue they would buy their cheaper tiers again at
         * every probe. At most half of max_in_flight calls wait so: claims of other work go on. While a
         * probe is out it looks again each second (no database work: it is all in this process). */
        ship_rows(w, c);
        c->due_ms = now + (s.probe_in_flight ? 1000 : wait);
        outage_hold(p, c, true);
        if (heap_push(w, c) == 0)
            return;
        outage_hold(p, c, false);
    }
    /* wait: every job back to the queue until the probe, no attempt spent (call_fail_all);
     * fail: every job fails now, an escalating one too (degrade is the policy that keeps answers) */
    call_fail_all(c, "model_unavailable", msg, policy == TQ_OUTAGE_WAIT, policy == TQ_OUTAGE_WAIT ? wait : 0);
    finish_call(w, c);
}

/* May the call's request go to its model now? True: send it (c->br_probe set when it is the model's
 * probe). False: it was taken care of — moved to a fallback on another provider (*moved, queued
 * there), or handed to model_unavailable. A fallback on the same provider is sent at once. */
static bool outage_gate(Worker *w, Call *c, int64_t now, bool *moved)
{
    Pool *p = w->pool;
    *moved = false;
    if (atomic_load(&p->prov_stopped[provider_of(c)]) == PROV_OK) {
        BreakerVerdict v = breaker_allow(p->model_br[c->send_model], now);
        if (v != BREAKER_DENY) {
            c->br_probe = v == BREAKER_PROBE;
            return true;
        }
    }
    bool probe = false;
    int f = may_fall_back(c) ? pick_fallback(p, c, now, &probe) : -1;
    if (f < 0) {
        model_unavailable(w, c, now, NULL);
        return false;
    }
    int from_prov = provider_of(c);
    switch_model(w, c, f);
    if (provider_of(c) != from_prov) {
        /* it waits in the fallback's provider queue; the probe slot is not held meanwhile */
        if (probe)
            breaker_record(p->model_br[f], now, BREAKER_NEUTRAL, true);
        ready_push(w, c);
        *moved = true;
        return false;
    }
    c->br_probe = probe;
    return true;
}

/* Start waiting calls while their provider and the process have room. Returns true when some call
 * is still waiting for capacity that another worker may free. */
static bool start_ready(Worker *w)
{
    Pool *p = w->pool;
    bool blocked = false;
    for (int prov = 0; prov < p->cfg->nproviders; prov++) {
        while (w->ready_head[prov]) {
            Call *c = w->ready_head[prov];
            int stopped = atomic_load(&p->prov_stopped[prov]);
            if (stopped != PROV_OK && !may_fall_back(c)) {
                w->ready_head[prov] = c->next;
                if (!w->ready_head[prov])
                    w->ready_tail[prov] = NULL;
                release_admission(p, c);
                if (stopped == PROV_OUT_OF_QUOTA)
                    fail_call(w, c, "provider_quota_exhausted",
                              "the provider answered insufficient_quota earlier in this run", true, p->opt->quota_retry_ms);
                else
                    fail_call(w, c, "provider_unauthorized", "the provider refused the API key (http 401) earlier in this run",
                              true, p->opt->quota_retry_ms);
                continue;
            }
            if (!c->slot_reserved && (atomic_load(&p->prov_in_flight[prov]) >= p->cfg->providers[prov].max_in_flight ||
                                      atomic_load(&p->in_flight) >= p->opt->max_in_flight)) {
                blocked = true;
                break;
            }
            w->ready_head[prov] = c->next;
            if (!w->ready_head[prov])
                w->ready_tail[prov] = NULL;
            int64_t now = clock_mono_ms();
            bool moved = false;
            if (!c->rl_held && !outage_gate(w, c, now, &moved)) {
                blocked |= moved; /* queued behind another provider's: come back soon */
                continue;
            }
            if (!rate_admit(w, c, now)) {
                /* waiting for the limiter: a probe slot is not held meanwhile */
                if (c->br_probe)
                    breaker_record(p->model_br[c->send_model], now, BREAKER_NEUTRAL, true);
                c->br_probe = false;
                continue;
            }
            if (!c->slot_reserved) {
                if (!take_slot(p, prov)) {
                    /* another worker took the last place since the check above: first in line again,
                     * its admission kept (rl_held skips the gate and the limiter next time) */
                    c->next = w->ready_head[prov];
                    w->ready_head[prov] = c;
                    if (!w->ready_tail[prov])
                        w->ready_tail[prov] = c;
                    blocked = true;
                    break;
                }
                c->slot_reserved = true;
            }
            if (!c->intent_durable && park_for_intent(w, c))
                continue; /* parked until its intent is written, or failed */
            if (start_transfer(w, c))
                fail_call(w, c, "out_of_memory", "out of memory starting the request", true, 1000);
        }
    }
    return blocked;
}

/* A call back from the writer with its intent written and its place in flight held: sent now. */
static void start_resumed(Worker *w, Call *c)
{
    Pool *p = w->pool;
    int stopped = atomic_load(&p->prov_stopped[provider_of(c)]);
    if (stopped != PROV_OK)
        fail_call(w, c, stopped == PROV_OUT_OF_QUOTA ? "provider_quota_exhausted" : "provider_unauthorized",
                  "the provider refused this account earlier in this run", true, p->opt->quota_retry_ms);
    else if (start_transfer(w, c))
        fail_call(w, c, "out_of_memory", "out of memory starting the request", true, 1000);
}

/* Charge row as a request whose outcome is unknown: its input and its max_tokens bound as the
 * output, estimated, status "unknown". */
static void charge_unknown(Call *c, LedgerRow *row, const char *reason, const char *msg)
{
    Transfer *t = c->transfer;
    row->latency_ms = clock_mono_ms() - t->start_ms;
    OaiResponse resp;
    memset(&resp, 0, sizeof resp);
    resp.content = (char *)"";
    resp.usage.present = true;
    resp.usage.prompt_tokens = oai_estimate_tokens(t->body.data ? t->body.data : "", t->body.len);
    resp.usage.completion_tokens = c->sent_max_tokens > 0 ? c->sent_max_tokens : 0;
    route_charge_unanswered(c, row, &resp, &t->body);
    row->estimated = true;
    row->status = "unknown";
    row->reason = reason;
    row->error = strdup(msg);
}

/* curl sent the request more than once (a reused connection died after the request went out, and
 * curl sent it again on a new one without telling): the server may have received and billed each
 * copy, so each extra one gets a ledger row of its own. */
static void record_resent(Worker *w, Call *c)
{
    Transfer *t = c->transfer;
    for (int k = 1; k < t->sends; k++) {
        LedgerRow *row = call_add_row(c, w->key_prefix, ++w->seq);
        if (!row)
            return;
        charge_unknown(c, row, "resent_by_transport",
                       "resent_by_transport: the connection died after this request was sent and it went again on a"
                       " new one; the provider may have billed this copy: charged at its input and its max_tokens"
                       " bound (estimated)");
    }
    t->sends = 1;
}

/* A request cut off by the stop may still be billed (the provider may finish it): its ledger row
 * (the intent written before it left) becomes status "unknown", charged at its input and its
 * max_tokens bound as the output, estimated. */
static void record_aborted(Worker *w, Call *c)
{
    record_resent(w, c);
    LedgerRow *row = take_intent_row(c);
    if (!row)
        row = call_add_row(c, w->key_prefix, ++w->seq);
    if (row)
        charge_unknown(c, row, "aborted_at_shutdown",
                       "aborted_at_shutdown: the run stopped while this request was in flight; charged at its input"
                       " and its max_tokens bound (estimated)");
}

static void collect_leftovers(Worker *w)
{
    Call *list = NULL;
    int n = 0;
    Call *in = fifo_take_all(w->inbox, 0, &n);
    while (in) {
        Call *next = in->next;
        in->next = list;
        list = in;
        in = next;
    }
    for (int prov = 0; prov < w->pool->cfg->nproviders; prov++) {
        Call *c = w->ready_head[prov];
        while (c) {
            Call *next = c->next;
            c->next = list;
            list = c;
            c = next;
        }
        w->ready_head[prov] = w->ready_tail[prov] = NULL;
    }
    Call *c;
    while ((c = heap_pop(w)) != NULL) {
        c->next = list;
        list = c;
    }
    /* Waiting calls never sent the request their intent announced. */
    for (Call *k = list; k; k = k->next)
        call_cancel_intent(k);
    /* In-flight transfers: abort them; the jobs go back to the queue through the caller. */
    for (int i = 0; i < w->nlive; i++) {
        Call *lc = w->live[i];
        curl_multi_remove_handle(w->multi, ((Transfer *)lc->transfer)->easy);
        record_aborted(w, lc);
        lc->next = list;
        list = lc;
    }
    w->nlive = 0;
    w->leftover = list;
}

/* curl tells us which sockets to watch (socket callback) and when to call it back (timer
 * callback); we watch them with epoll. Unlike curl_multi_poll, which rebuilds a poll() set over
 * every socket on every pass, this costs O(ready sockets) per pass: what keeps thousands of
 * requests in flight cheap on one thread. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    Worker *w = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(w->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(w->epfd, op, fd, &ev);
    if (rc != 0 && errno == (op == EPOLL_CTL_ADD ? EEXIST : ENOENT))
        rc = epoll_ctl(w->epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0) {
        /* curl is told: it fails the transfer (CURLE_ABORTED_BY_CALLBACK), which is retried */
        log_msg(LOG_ERROR, "worker", "epoll_ctl on a request's socket failed: %s", strerror(errno));
        return -1;
    }
    if (!socketp)
        curl_multi_assign(w->multi, fd, w); /* any non-NULL marks "registered" */
    return 0;
}

/* A CURLMcode from the loop: anything but OK is a bug or exhaustion in curl; say so (once per
 * distinct code) rather than spin silently. Transfers it concerns end through info_read. */
static void multi_check(CURLMcode rc)
{
    if (rc == CURLM_OK)
        return;
    char key[64];
    snprintf(key, sizeof key, "curlm:%d", (int)rc);
    if (log_first_time(key))
        log_msg(LOG_ERROR, "worker", "curl multi: %s", curl_multi_strerror(rc));
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    Worker *w = userp;
    w->curl_due_ms = timeout_ms < 0 ? -1 : clock_mono_ms() + timeout_ms;
    return 0;
}

static void drain_finished(Worker *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE)
            on_transfer_done(w, msg->easy_handle, msg->data.result);
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    Pool *p = w->pool;
    struct epoll_event evs[256];
    int running = 0;
    while (!atomic_load(&p->stop)) {
        int n = 0;
        Call *in = fifo_take_all(w->inbox, 0, &n);
        while (in) {
            Call *next = in->next;
            if (in->slot_reserved)
                start_resumed(w, in); /* it holds its place: queued behind calls waiting for one, it would wait forever */
            else
                ready_push(w, in);
            in = next;
        }
        int64_t now = clock_mono_ms();
        while (w->nheap > 0 && w->heap[0]->due_ms <= now) {
            Call *c = heap_pop(w);
            if (c->outage_held)
                outage_hold(p, c, false);
            ready_push(w, c);
        }
        bool blocked = start_ready(w);
        now = clock_mono_ms();
        if (w->curl_due_ms >= 0 && w->curl_due_ms <= now) {
            w->curl_due_ms = -1;
            multi_check(curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running));
            drain_finished(w);
        }
        int64_t timeout = 200;
        if (w->nheap > 0 && w->heap[0]->due_ms - now < timeout)
            timeout = w->heap[0]->due_ms - now;
        if (w->curl_due_ms >= 0 && w->curl_due_ms - now < timeout)
            timeout = w->curl_due_ms - now;
        if (blocked && timeout > 5)
            timeout = 5; /* capacity may be freed by another worker, which does not wake us */
        if (timeout < 0)
            timeout = 0;
        int ne = epoll_wait(w->epfd, evs, (int)(sizeof evs / sizeof evs[0]), (int)timeout);
        for (int i = 0; i < ne; i++) {
            int fd = evs[i].data.fd;
            if (fd == w->wakefd) {
                uint64_t v;
                ssize_t rd = read(w->wakefd, &v, sizeof v);
                (void)rd;
                continue;
            }
            int flags = 0;
            if (evs[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            multi_check(curl_multi_socket_action(w->multi, fd, flags, &running));
        }
        drain_finished(w);
    }
    collect_leftovers(w);
    return NULL;
}

/* ---- pool ----------------------------------------------------------------------------------- */

/* A key sent in clear text to another machine is a key given away: say so at start. Loopback
 * (the simulator, a local proxy) is fine. */
static void warn_plain_http(const TqProvider *pr)
{
    static const char *const local[] = {"http://127.", "http://localhost", "http://[::1]"};
    if (strncmp(pr->base_url, "http://", 7) != 0)
        return;
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        if (strncmp(pr->base_url, local[i], strlen(local[i])) == 0)
            return;
    log_msg(LOG_WARN, "worker", "provider %s: %s is plain http to another host: requests and their key travel unencrypted",
            pr->name, pr->base_url);
}

/* Append "Name: value" to *h; the line is wiped after curl copied it (it may hold a secret). */
static int add_header(struct curl_slist **h, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (!line)
        return TQ_ENOMEM;
    snprintf(line, n, "%s:%s%s", name, *value ? " " : "", value); /* "Name:" alone disables curl's own */
    struct curl_slist *next = curl_slist_append(*h, line);
    memset(line, 0, n);
    free(line);
    if (!next)
        return TQ_ENOMEM;
    *h = next;
    return 0;
}

/* A provider's request headers: JSON, no 100-continue round trip, who we are, the API key from its
 * variable, and the provider's own headers (literal, or read from the environment and registered
 * with the log redactor: a gateway key is a secret like any other). */
static int provider_header_list(const TqProvider *pr, struct curl_slist **out, TqErr *err)
{
    struct curl_slist *h = NULL;
    int rc = add_header(&h, "Content-Type", "application/json");
    if (!rc)
        rc = add_header(&h, "Expect", ""); /* "Expect:" with no value removes curl's default */
    if (!rc)
        rc = add_header(&h, "User-Agent", "tierq/" TQ_VERSION);
    const char *key = pr->api_key_env ? getenv(pr->api_key_env) : NULL;
    if (pr->api_key_env && (!key || !*key))
        log_msg(LOG_WARN, "worker", "provider %s: %s is not set: its requests go without an API key", pr->name,
                pr->api_key_env);
    if (!rc && key && *key) {
        log_add_secret(key);
        size_t kn = strlen(key) + sizeof "Bearer ";
        char *bearer = malloc(kn);
        rc = bearer ? 0 : TQ_ENOMEM;
        if (bearer) {
            snprintf(bearer, kn, "Bearer %s", key);
            rc = add_header(&h, "Authorization", bearer);
            memset(bearer, 0, kn);
            free(bearer);
        }
    }
    for (int k = 0; k < pr->nheaders && !rc; k++) {
        const TqHeader *hd = &pr->headers[k];
        const char *v = hd->value;
        if (hd->value_env) {
            v = getenv(hd->value_env);
            if (!v || !*v) {
                curl_slist_free_all(h);
                return tq_err(err, TQ_EINVAL, "provider %s: header %s takes its value from the environment variable %s, which is not set",
                              pr->name, hd->name, hd->value_env);
            }
            if (strpbrk(v, "\r\n")) {
                curl_slist_free_all(h);
                return tq_err(err, TQ_EINVAL, "provider %s: the value of %s (header %s) is not one line", pr->name,
                              hd->value_env, hd->name);
            }
            log_add_secret(v);
        }
        rc = add_header(&h, hd->name, v);
    }
    if (rc) {
        curl_slist_free_all(h);
        return tq_err(err, rc, "out of memory building request headers");
    }
    *out = h;
    return 0;
}

/* Set up one worker's curl multi handle, epoll set, wake-up fd and queues (no thread yet). On
 * failure everything it opened is closed again and err says what failed. */
static int worker_open(Pool *p, Worker *w, int index, const char *worker_id, int threads, TqErr *err)
{
    int np = p->cfg->nproviders;
    w->pool = p;
    w->index = index;
    w->epfd = w->wakefd = -1;
    w->curl_due_ms = -1;
    snprintf(w->key_prefix, sizeof w->key_prefix, "%s:w%d", worker_id, index);
    w->rng = (uint64_t)clock_mono_ms() * 0x9e3779b97f4a7c15ULL + (unsigned long long)index;
    int rc = 0;
    if (!(w->multi = curl_multi_init()))
        rc = tq_err(err, TQ_ENOMEM, "worker %d: curl_multi_init failed", index);
    else if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 || (w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        rc = tq_err(err, TQ_EIO, "worker %d: %s: %s", index, w->epfd < 0 ? "epoll_create1" : "eventfd", strerror(errno));
    if (!rc) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->wakefd};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) != 0)
            rc = tq_err(err, TQ_EIO, "worker %d: epoll_ctl: %s", index, strerror(errno));
    }
    CURLMcode mc = CURLM_OK;
    if (!rc) {
        long per = (long)(p->opt->max_in_flight / threads + 16);
        if ((mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket)) != CURLM_OK ||
            (mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w)) != CURLM_OK ||
            (mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer)) != CURLM_OK ||
            (mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w)) != CURLM_OK ||
            (mc = curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, per)) != CURLM_OK)
            rc = tq_err(err, TQ_EIO, "worker %d: curl_multi_setopt: %s", index, curl_multi_strerror(mc));
    }
    if (!rc && (!(w->inbox = callq_new()) || !(w->ready_head = calloc((size_t)np, sizeof *w->ready_head)) ||
                !(w->ready_tail = calloc((size_t)np, sizeof *w->ready_tail))))
        rc = tq_err(err, TQ_ENOMEM, "worker %d: out of memory", index);
    if (rc)
        worker_close(w);
    return rc;
}

/* Release what worker_open opened and the worker gathered (spare handles, queues). */
static void worker_close(Worker *w)
{
    for (int k = 0; k < w->nspare; k++)
        curl_easy_cleanup(w->spare[k]);
    free(w->spare);
    free(w->heap);
    free(w->live);
    free(w->ready_head);
    free(w->ready_tail);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wakefd >= 0)
        close(w->wakefd);
    fifo_free(w->inbox);
    memset(w, 0, sizeof *w);
    w->epfd = w->wakefd = -1;
}

/* The pool's own allocations (the workers must be closed already). */
static void pool_free(Pool *p)
{
    for (int i = 0; i < p->cfg->nproviders; i++) {
        if (p->prov_headers)
            curl_slist_free_all(p->prov_headers[i]);
        if (p->prov_url)
            free(p->prov_url[i]);
    }
    for (int i = 0; p->model_rl && i < p->cfg->nmodels; i++)
        ratelimit_free(p->model_rl[i]);
    for (int i = 0; p->model_br && i < p->cfg->nmodels; i++)
        breaker_free(p->model_br[i]);
    for (int i = 0; p->prov_rl && i < p->cfg->nproviders; i++)
        ratelimit_free(p->prov_rl[i]);
    free(p->model_rl);
    free(p->model_br);
    free(p->model_closes);
    free(p->prov_rl);
    free(p->prov_headers);
    free(p->prov_url);
    free(p->prov_in_flight);
    free(p->prov_stopped);
    free(p->shadow_boost_milli);
    free(p->workers);
    pthread_mutex_destroy(&p->resume_mu);
    free(p);
}

void pool_set_rate_share(Pool *p, int share)
{
    int64_t now = clock_mono_ms();
    for (int i = 0; i < p->cfg->nmodels; i++)
        ratelimit_set_share(p->model_rl[i], now, share);
    for (int i = 0; i < p->cfg->nproviders; i++)
        if (p->prov_rl[i])
            ratelimit_set_share(p->prov_rl[i], now, share);
}

int pool_outage_held_jobs(Pool *p) { return p ? atomic_load(&p->outage_held_jobs) : 0; }

uint64_t pool_model_closes(Pool *p, int model)
{
    return p && model >= 0 && model < p->cfg->nmodels ? atomic_load(&p->model_closes[model]) : 0;
}

int pool_health_json(Pool *p, Buf *out)
{
    int64_t now = clock_mono_ms();
    int rc = buf_puts(out, "{"), n = 0;
    for (int i = 0; i < p->cfg->nmodels && !rc; i++) {
        BreakerSnapshot b;
        RateLimitSnapshot r;
        breaker_state(p->model_br[i], now, &b);
        ratelimit_snapshot(p->model_rl[i], now, &r);
        bool sick = b.state != BREAKER_CLOSED || b.opens > 0;
        bool slowed = r.factor < 1 || r.paused_until_ms > now || r.decreases > 0;
        if (!sick && !slowed)
            continue;
        rc = buf_puts(out, n++ ? ", " : "") || json_put_cstr(out, p->cfg->models[i].name) ||
             buf_printf(out, ": {\"breaker\": \"%s\", \"opens\": %llu, \"reason\": ", breaker_state_name(b.state),
                        (unsigned long long)b.opens) ||
             json_put_cstr(out, b.reason) ||
             buf_printf(out, ", \"next_probe_s\": %lld, \"rate_factor\": %.3f, \"paused_s\": %lld, \"rate_decreases\": %llu}",
                        (long long)(b.next_probe_ms > now ? (b.next_probe_ms - now + 999) / 1000 : 0), r.factor,
                        (long long)(r.paused_until_ms > now ? (r.paused_until_ms - now + 999) / 1000 : 0),
                        (unsigned long long)r.decreases);
    }
    return rc || buf_puts(out, "}") ? TQ_ENOMEM : 0;
}

void pool_set_shadow_boost(Pool *p, int kind, double factor)
{
    if (!p || kind < 0 || kind >= p->cfg->nkinds || !(factor >= 1))
        return;
    atomic_store(&p->shadow_boost_milli[kind], factor > 1000 ? 1000000 : (int)(factor * 1000));
}

int pool_start(Pool **out, const TqConfig *cfg, const PoolOptions *opt, const char *worker_id, Fifo *done, TqErr *err)
{
    Pool *p = calloc(1, sizeof *p);
    if (!p)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    p->cfg = cfg;
    p->opt = opt;
    p->done = done;
    pthread_mutex_init(&p->resume_mu, NULL);
    int np = cfg->nproviders;
    p->prov_in_flight = calloc((size_t)np, sizeof *p->prov_in_flight);
    p->prov_stopped = calloc((size_t)np, sizeof *p->prov_stopped);
    p->prov_headers = calloc((size_t)np, sizeof *p->prov_headers);
    p->prov_url = calloc((size_t)np, sizeof *p->prov_url);
    p->shadow_boost_milli = calloc((size_t)(cfg->nkinds > 0 ? cfg->nkinds : 1), sizeof *p->shadow_boost_milli);
    for (int k = 0; p->shadow_boost_milli && k < cfg->nkinds; k++)
        atomic_init(&p->shadow_boost_milli[k], 1000);
    p->model_rl = calloc((size_t)(cfg->nmodels > 0 ? cfg->nmodels : 1), sizeof *p->model_rl);
    p->model_br = calloc((size_t)(cfg->nmodels > 0 ? cfg->nmodels : 1), sizeof *p->model_br);
    p->model_closes = calloc((size_t)(cfg->nmodels > 0 ? cfg->nmodels : 1), sizeof *p->model_closes);
    p->prov_rl = calloc((size_t)(np > 0 ? np : 1), sizeof *p->prov_rl);
    if (!p->prov_in_flight || !p->prov_stopped || !p->prov_headers || !p->prov_url || !p->shadow_boost_milli ||
        !p->model_rl || !p->model_br || !p->model_closes || !p->prov_rl) {
        pool_free(p);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    /* Every model gets a limiter: one without rpm/tpm still obeys its replies' x-ratelimit-* headers
     * and 429s. Limits are this process's (README: several processes on one account). */
    for (int i = 0; i < cfg->nmodels; i++) {
        RateLimitConfig rc = {.rpm = cfg->models[i].rpm, .tpm = cfg->models[i].tpm, .share = 1};
        const TqProvider *pr = &cfg->providers[cfg->models[i].provider];
        BreakerConfig bc;
        breaker_default_config(&bc);
        bc.failures = pr->breaker_failures;
        bc.failure_pct = pr->breaker_failure_pct;
        bc.window_ms = (int64_t)pr->breaker_window_s * 1000;
        bc.cooldown_ms = (int64_t)pr->breaker_cooldown_s * 1000;
        bc.cooldown_cap_ms = (int64_t)pr->breaker_cooldown_max_s * 1000;
        /* a probe silent longer than a request may take was lost: let another go */
        bc.probe_timeout_ms = (int64_t)pr->timeout_ms + pr->connect_timeout_ms;
        if (ratelimit_new(&rc, &p->model_rl[i], err) || breaker_new(&bc, &p->model_br[i], err)) {
            pool_free(p);
            return tq_err_prefix(err, "model %s", cfg->models[i].name);
        }
    }
    for (int i = 0; i < np; i++) {
        const TqProvider *pr = &cfg->providers[i];
        RateLimitConfig rc = {.rpm = pr->rpm, .tpm = pr->tpm, .share = 1};
        if ((pr->rpm || pr->tpm) && ratelimit_new(&rc, &p->prov_rl[i], err)) {
            pool_free(p);
            return tq_err_prefix(err, "provider %s", pr->name);
        }
    }
    for (int i = 0; i < np; i++) {
        const TqProvider *pr = &cfg->providers[i];
        /* The query string (api-version=..., a gateway's parameters) goes after the path. */
        size_t n = strlen(pr->base_url) + sizeof "/chat/completions?" + (pr->url_query ? strlen(pr->url_query) : 0);
        p->prov_url[i] = malloc(n);
        if (p->prov_url[i])
            snprintf(p->prov_url[i], n, "%s/chat/completions%s%s", pr->base_url, pr->url_query ? "?" : "",
                     pr->url_query ? pr->url_query : "");
        warn_plain_http(pr);
        int hrc = provider_header_list(pr, &p->prov_headers[i], err);
        if (hrc || !p->prov_url[i]) {
            if (!hrc)
                tq_err(err, TQ_ENOMEM, "out of memory");
            pool_free(p);
            return hrc ? hrc : TQ_ENOMEM;
        }
    }
    int threads = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        pool_free(p);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    for (int i = 0; i < threads; i++) {
        Worker *w = &p->workers[i];
        int rc = worker_open(p, w, i, worker_id, threads, err);
        if (!rc && (rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
            rc = tq_err(err, TQ_EIO, "cannot start worker thread %d: %s", i, strerror(rc));
            worker_close(w);
        }
        if (rc) {
            pool_stop(p, NULL); /* joins and closes the workers started so far */
            return rc;
        }
        p->nworkers = i + 1;
    }
    *out = p;
    return 0;
}

void pool_submit(Pool *p, Call *c)
{
    unsigned i = atomic_fetch_add(&p->next_worker, 1) % (unsigned)p->nworkers;
    atomic_fetch_add(&p->pending, 1);
    fifo_push(p->workers[i].inbox, c);
    uint64_t one = 1;
    ssize_t wr = write(p->workers[i].wakefd, &one, sizeof one);
    (void)wr;
}

bool pool_resume(Pool *p, Call *c)
{
    pthread_mutex_lock(&p->resume_mu);
    bool open = !p->closed;
    if (open) {
        c->intent_durable = true;
        Worker *w = &p->workers[c->worker];
        fifo_push(w->inbox, c);
        uint64_t one = 1;
        ssize_t wr = write(w->wakefd, &one, sizeof one);
        (void)wr;
    }
    pthread_mutex_unlock(&p->resume_mu);
    return open;
}

int pool_pending(Pool *p) { return atomic_load(&p->pending); }

int pool_peak_in_flight(Pool *p) { return atomic_load(&p->peak_in_flight); }
bool pool_provider_stopped(Pool *p) { return atomic_load(&p->stopped_any); }

void pool_stop(Pool *p, Call **leftover)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->resume_mu);
    p->closed = true; /* calls resumed before this are in an inbox, and come back as leftovers */
    pthread_mutex_unlock(&p->resume_mu);
    atomic_store(&p->stop, true);
    for (int i = 0; i < p->nworkers; i++) {
        uint64_t one = 1;
        ssize_t wr = write(p->workers[i].wakefd, &one, sizeof one);
        (void)wr;
    }
    Call *all = NULL;
    for (int i = 0; i < p->nworkers; i++) {
        Worker *w = &p->workers[i];
        pthread_join(w->thread, NULL);
        Call *c = w->leftover;
        while (c) {
            Call *next = c->next;
            Transfer *t = c->transfer;
            if (t) {
                if (t->easy)
                    curl_easy_cleanup(t->easy);
                transfer_free(t);
                c->transfer = NULL;
            }
            c->next = all;
            all = c;
            atomic_fetch_sub(&p->pending, 1);
            c = next;
        }
        worker_close(w);
    }
    pool_free(p);
    if (leftover) {
        *leftover = all;
    } else {
        while (all) {
            Call *next = all->next;
            call_free(all);
            all = next;
        }
    }
}
