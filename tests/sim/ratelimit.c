#include "ratelimit.h"

#include "err.h"
#include "utf8.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE_WINDOW_MS 60000.0
/* Floating-point slack: a client that waits exactly the wait_ms it was given must pass. */
#define RATE_EPSILON 1e-6
#define RATE_MSG_CAP 600
#define RATE_NAME_CAP 200 /* bytes of a model name quoted in a message */

int ratelimit_init(RateLimits *rl, size_t nmodels)
{
    rl->models = calloc(nmodels ? nmodels : 1, sizeof *rl->models);
    rl->n = rl->models ? nmodels : 0;
    return rl->models ? 0 : TQ_ENOMEM;
}

void ratelimit_free(RateLimits *rl)
{
    if (!rl)
        return;
    free(rl->models);
    rl->models = NULL;
    rl->n = 0;
}

void ratelimit_reset(RateLimits *rl)
{
    /* limit 0 makes the next look at each bucket start it full at the model's limit */
    memset(rl->models, 0, rl->n * sizeof *rl->models);
}

/* Bring b up to date at now for a model whose limit is now limit: a new limit starts full,
 * otherwise the level grows by limit per minute since the last look, up to limit. */
static void refill(RateBucket *b, int64_t limit, int64_t now_ms)
{
    if (b->limit != limit) {
        b->limit = limit;
        b->level = (double)limit;
    } else if (limit > 0 && now_ms > b->at_ms) {
        b->level += (double)(now_ms - b->at_ms) * (double)limit / RATE_WINDOW_MS;
        if (b->level > (double)limit)
            b->level = (double)limit;
    }
    b->at_ms = now_ms;
}

/* ms until b holds need units (0 when it does now). */
static int64_t wait_for(const RateBucket *b, double need)
{
    if (b->limit <= 0 || b->level + RATE_EPSILON >= need)
        return 0;
    int64_t ms = (int64_t)ceil((need - b->level) * RATE_WINDOW_MS / (double)b->limit);
    return ms > 0 ? ms : 1;
}

static int64_t used_of(const RateBucket *b) { return b->limit - (int64_t)floor(b->level); }

RateCheck ratelimit_admit(RateLimits *rl, size_t i, int64_t rpm, int64_t tpm, int64_t tokens, int64_t now_ms)
{
    RateModel *m = &rl->models[i];
    RateCheck rc = {RATE_OK, 0, 0, 0, 0};
    refill(&m->requests, rpm, now_ms);
    refill(&m->tokens, tpm, now_ms);
    if (tpm > 0 && tokens > tpm) {
        rc.verdict = RATE_TOO_LARGE;
        rc.limit = tpm;
        rc.used = used_of(&m->tokens);
        rc.requested = tokens;
        return rc;
    }
    int64_t wr = wait_for(&m->requests, 1), wt = tpm > 0 ? wait_for(&m->tokens, (double)tokens) : 0;
    if (wr == 0 && wt == 0) {
        if (rpm > 0)
            m->requests.level -= 1;
        if (tpm > 0)
            m->tokens.level -= (double)tokens;
        return rc;
    }
    /* The limit that holds the request longest is the one named; its wait passes both. */
    const RateBucket *b = wr >= wt ? &m->requests : &m->tokens;
    rc.verdict = wr >= wt ? RATE_REQUESTS : RATE_TOKENS;
    rc.wait_ms = wr >= wt ? wr : wt;
    rc.limit = b->limit;
    rc.used = used_of(b);
    rc.requested = wr >= wt ? 1 : tokens;
    return rc;
}

void ratelimit_correct(RateLimits *rl, size_t i, int64_t tpm, int64_t charged, int64_t actual, int64_t now_ms)
{
    if (tpm <= 0)
        return;
    RateBucket *b = &rl->models[i].tokens;
    refill(b, tpm, now_ms);
    b->level += (double)(charged - actual);
    if (b->level > (double)tpm)
        b->level = (double)tpm;
}

void ratelimit_duration(int64_t ms, char *out, size_t cap)
{
    if (ms <= 0) {
        snprintf(out, cap, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(out, cap, "%lldms", (long long)ms);
        return;
    }
    long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char hm[32] = "", fr[8] = "";
    if (h)
        snprintf(hm, sizeof hm, "%lldh%lldm", h, m);
    else if (m)
        snprintf(hm, sizeof hm, "%lldm", m);
    if (frac) { /* ".5", ".25", ".125": trailing zeros dropped, as Go does */
        snprintf(fr, sizeof fr, ".%03lld", frac);
        size_t n = strlen(fr);
        while (fr[n - 1] == '0')
            fr[--n] = '\0';
    }
    snprintf(out, cap, "%s%lld%ss", hm, s, fr);
}

/* One limit's three headers: limit, whole units remaining, time until the bucket is full. */
static int bucket_headers(const RateBucket *b, const char *what, SimReply *rep)
{
    double level = b->level < 0 ? 0 : b->level;
    int64_t reset = (int64_t)ceil(((double)b->limit - b->level) * RATE_WINDOW_MS / (double)b->limit);
    char name[48], dur[32];
    ratelimit_duration(reset, dur, sizeof dur);
    snprintf(name, sizeof name, "x-ratelimit-limit-%s", what);
    int rc = reply_header(rep, name, "%lld", (long long)b->limit);
    snprintf(name, sizeof name, "x-ratelimit-remaining-%s", what);
    if (!rc)
        rc = reply_header(rep, name, "%lld", (long long)floor(level));
    snprintf(name, sizeof name, "x-ratelimit-reset-%s", what);
    return rc ? rc : reply_header(rep, name, "%s", dur);
}

int ratelimit_headers(RateLimits *rl, size_t i, int64_t rpm, int64_t tpm, int64_t now_ms, SimReply *rep)
{
    RateModel *m = &rl->models[i];
    int rc = 0;
    if (rpm > 0) {
        refill(&m->requests, rpm, now_ms);
        rc = bucket_headers(&m->requests, "requests", rep);
    }
    if (!rc && tpm > 0) {
        refill(&m->tokens, tpm, now_ms);
        rc = bucket_headers(&m->tokens, "tokens", rep);
    }
    return rc;
}

#define RATE_ORG "org-tierqsim"
#define RATE_VISIT "Visit https://platform.openai.com/account/rate-limits to learn more."

int ratelimit_reply(const RateCheck *c, const char *model, SimReply *rep)
{
    char msg[RATE_MSG_CAP], dur[32], name[RATE_NAME_CAP];
    utf8_copy_cut(name, sizeof name, model, strlen(model)); /* cut on a character boundary */
    utf8_one_line(name);
    if (c->verdict == RATE_TOO_LARGE) {
        snprintf(msg, sizeof msg,
                 "Request too large for %s in organization " RATE_ORG " on tokens per min (TPM): Limit %lld, "
                 "Requested %lld. The input or output tokens must be reduced in order to run successfully. " RATE_VISIT,
                 name, (long long)c->limit, (long long)c->requested);
        return reply_error(rep, 429, msg, "tokens", NULL, "rate_limit_exceeded");
    }
    bool req = c->verdict == RATE_REQUESTS;
    ratelimit_duration(c->wait_ms, dur, sizeof dur);
    snprintf(msg, sizeof msg,
             "Rate limit reached for %s in organization " RATE_ORG " on %s: Limit %lld, Used %lld, "
             "Requested %lld. Please try again in %s. " RATE_VISIT,
             name, req ? "requests per min (RPM)" : "tokens per min (TPM)", (long long)c->limit, (long long)c->used,
             (long long)c->requested, dur);
    int rc = reply_error(rep, 429, msg, req ? "requests" : "tokens", NULL, "rate_limit_exceeded");
    if (!rc)
        rc = reply_header(rep, "retry-after", "%lld", (long long)((c->wait_ms + 999) / 1000));
    if (!rc)
        rc = reply_header(rep, "retry-after-ms", "%lld", (long long)c->wait_ms);
    return rc;
}
