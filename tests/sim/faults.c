#include "faults.h"

#include "hash.h"
#include "reply.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

static const char *const fault_names[FAULT_COUNT] = {
    [FAULT_NONE] = "none",         [FAULT_429] = "429",       [FAULT_429QUOTA] = "429quota",
    [FAULT_500] = "500",           [FAULT_503] = "503",       [FAULT_400] = "400",
    [FAULT_401] = "401",           [FAULT_SLOW] = "slow",     [FAULT_DROP] = "drop",
    [FAULT_TRUNCATED] = "truncated", [FAULT_INVALID] = "invalid", [FAULT_OVERSIZED] = "oversized",
    [FAULT_NOUSAGE] = "nousage",   [FAULT_INTCODE] = "intcode",   [FAULT_EMPTY] = "empty",
    [FAULT_ECHO_LONG] = "echo_long",
    [FAULT_BATCH_MISSING] = "batch_missing",     [FAULT_BATCH_DUP] = "batch_dup",
    [FAULT_BATCH_SWAP] = "batch_swap",           [FAULT_BATCH_UNKNOWN] = "batch_unknown",
    [FAULT_BATCH_MALFORMED] = "batch_malformed", [FAULT_BATCH_MERGE] = "batch_merge",
    [FAULT_BATCH_TRUNCATED] = "batch_truncated", [FAULT_BATCH_INVALID] = "batch_invalid",
};

const char *fault_name(Fault f) { return (unsigned)f < FAULT_COUNT ? fault_names[f] : "none"; }

Fault fault_from_name(const char *s, size_t n)
{
    for (int f = 1; f < FAULT_COUNT; f++)
        if (strlen(fault_names[f]) == n && memcmp(fault_names[f], s, n) == 0)
            return (Fault)f;
    return FAULT_NONE;
}

bool fault_is_error(Fault f)
{
    switch (f) {
    case FAULT_429:
    case FAULT_429QUOTA:
    case FAULT_500:
    case FAULT_503:
    case FAULT_400:
    case FAULT_401:
    case FAULT_INTCODE: return true;
    default: return false;
    }
}

bool fault_is_batch(Fault f) { return f >= FAULT_BATCH_MISSING && f <= FAULT_BATCH_INVALID; }

/* Parse the inside of one marker, s = "NAME[:times=N][:model=M]". Returns 0 when well-formed. */
static int parse_marker(const char *s, size_t n, FaultMarker *m)
{
    const char *end = s + n;
    const char *colon = memchr(s, ':', n);
    const char *name_end = colon ? colon : end;
    m->fault = fault_from_name(s, (size_t)(name_end - s));
    m->times = 1;
    m->model = NULL;
    m->model_len = 0;
    if (m->fault == FAULT_NONE)
        return -1;
    const char *p = name_end;
    while (p < end) {
        p++; /* skip ':' */
        const char *next = memchr(p, ':', (size_t)(end - p));
        const char *opt_end = next ? next : end;
        size_t len = (size_t)(opt_end - p);
        if (len > 6 && memcmp(p, "times=", 6) == 0) {
            uint64_t v = 0;
            for (const char *q = p + 6; q < opt_end; q++) {
                if (*q < '0' || *q > '9' || v > 100000000)
                    return -1;
                v = v * 10 + (uint64_t)(*q - '0');
            }
            m->times = (uint32_t)v;
        } else if (len > 6 && memcmp(p, "model=", 6) == 0) {
            m->model = p + 6;
            m->model_len = len - 6;
        } else {
            return -1;
        }
        p = opt_end;
    }
    return 0;
}

int fault_scan(const char *s, size_t n, FaultMarker *out, int max, Buf *stripped)
{
    static const char open[] = "[[sim:";
    const size_t olen = sizeof open - 1;
    int count = 0;
    size_t copied = 0; /* s[copied..] not yet appended to stripped */
    size_t i = 0;
    while (i + olen <= n) {
        const char *hit = memmem(s + i, n - i, open, olen);
        if (!hit)
            break;
        size_t start = (size_t)(hit - s);
        size_t body = start + olen;
        const char *close = memmem(s + body, n - body, "]]", 2);
        if (!close)
            break;
        size_t body_len = (size_t)(close - (s + body));
        FaultMarker m;
        if (body_len > 0 && body_len < 256 && parse_marker(s + body, body_len, &m) == 0) {
            if (count < max)
                out[count++] = m;
            if (stripped) {
                buf_append(stripped, s + copied, start - copied);
                copied = body + body_len + 2;
            }
            i = body + body_len + 2;
        } else {
            i = start + 1;
        }
    }
    if (stripped)
        buf_append(stripped, s + copied, n - copied);
    return count;
}

void fault_state_init(FaultState *fs)
{
    memset(fs, 0, sizeof *fs);
    u64map_init(&fs->counters, FAULT_MAX_COUNTERS);
}

void fault_state_free(FaultState *fs)
{
    if (fs)
        u64map_free(&fs->counters);
}

void fault_state_reset(FaultState *fs) { u64map_clear(&fs->counters); }

Fault fault_from_markers(FaultState *fs, uint64_t prompt_hash, const FaultMarker *mk, int nmk, const char *model,
                         bool batch)
{
    for (int i = 0; i < nmk; i++) {
        const FaultMarker *m = &mk[i];
        if (fault_is_batch(m->fault) != batch)
            continue;
        if (m->model && (strlen(model) != m->model_len || memcmp(model, m->model, m->model_len) != 0))
            continue;
        if (m->times == 0)
            return m->fault;
        uint64_t key = hash_mix64(prompt_hash ^ ((uint64_t)(i + 1) * (uint64_t)0x9e3779b97f4a7c15));
        uint64_t *cnt = u64map_upsert(&fs->counters, key, NULL);
        if (!cnt) { /* table full: start over rather than grow without bound */
            u64map_clear(&fs->counters);
            cnt = u64map_upsert(&fs->counters, key, NULL);
            if (!cnt)
                return m->fault;
        }
        if (*cnt < m->times) {
            (*cnt)++;
            return m->fault;
        }
    }
    return FAULT_NONE;
}

Fault fault_from_rate(const FaultState *fs, double u)
{
    double acc = 0;
    for (int f = 1; f < FAULT_COUNT; f++) {
        if (fs->rate[f] <= 0 || fault_is_batch((Fault)f))
            continue;
        acc += fs->rate[f];
        if (u < acc)
            return (Fault)f;
    }
    return FAULT_NONE;
}

Fault fault_choose(FaultState *fs, uint64_t prompt_hash, const FaultMarker *mk, int nmk, const char *model,
                   double u)
{
    Fault f = fault_from_markers(fs, prompt_hash, mk, nmk, model, false);
    return f != FAULT_NONE ? f : fault_from_rate(fs, u);
}

int fault_error_reply(Fault f, SimReply *r)
{
    switch (f) {
    case FAULT_429: {
        int rc = reply_error(r, 429,
                             "Rate limit reached for requests per min (RPM): Limit 10000, Used 10000, Requested 1. "
                             "Please try again in 200ms.",
                             "requests", NULL, "rate_limit_exceeded");
        if (!rc)
            rc = reply_header(r, "retry-after", "1");
        if (!rc)
            rc = reply_header(r, "retry-after-ms", "200");
        if (!rc)
            rc = reply_header(r, "x-ratelimit-remaining-requests", "0");
        if (!rc)
            rc = reply_header(r, "x-ratelimit-reset-requests", "200ms");
        return rc;
    }
    case FAULT_429QUOTA:
        return reply_error(r, 429,
                           "You exceeded your current quota, please check your plan and billing details.",
                           "insufficient_quota", NULL, "insufficient_quota");
    case FAULT_500:
        return reply_error(r, 500, "The server had an error while processing your request. Sorry about that!",
                           "server_error", NULL, NULL);
    case FAULT_503:
        return reply_error(r, 503, "The engine is currently overloaded, please try again later.", "server_error",
                           NULL, NULL);
    case FAULT_400:
        return reply_error(r, 400, "Invalid value for 'messages': the simulator rejected this request.",
                           "invalid_request_error", "messages", "invalid_value");
    case FAULT_401:
        return reply_error(r, 401, "Incorrect API key provided.", "invalid_request_error", NULL, "invalid_api_key");
    case FAULT_INTCODE: {
        /* vLLM and llama.cpp put the HTTP status in error.code as a JSON number. */
        r->status = 500;
        r->content_type = "application/json";
        buf_reset(&r->body);
        return buf_puts(&r->body, "{\"error\":{\"message\":\"Internal server error: simulated engine failure\","
                                  "\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}");
    }
    default: return TQ_EINVAL;
    }
}
