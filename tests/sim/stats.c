#include "stats.h"

#include "err.h"
#include "json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int stats_init(SimStats *st, size_t nmodels, int64_t now_ms)
{
    memset(st, 0, sizeof *st);
    st->models = calloc(nmodels ? nmodels : 1, sizeof *st->models);
    if (!st->models)
        return TQ_ENOMEM;
    st->nmodels = nmodels;
    st->started_ms = st->reset_ms = now_ms;
    return 0;
}

void stats_free(SimStats *st)
{
    if (!st)
        return;
    free(st->models);
    st->models = NULL;
    st->nmodels = 0;
}

void stats_reset(SimStats *st, int64_t now_ms)
{
    st->http_requests = st->chat_requests = st->conns_total = 0;
    memset(st->status, 0, sizeof st->status);
    memset(st->faults, 0, sizeof st->faults);
    st->batch_garble = 0;
    memset(st->models, 0, st->nmodels * sizeof *st->models);
    st->conns_peak = st->conns_current;
    st->inflight_peak = st->inflight_current;
    st->reset_ms = now_ms;
}

void stats_conn_open(SimStats *st)
{
    st->conns_total++;
    if (++st->conns_current > st->conns_peak)
        st->conns_peak = st->conns_current;
}

void stats_conn_close(SimStats *st) { st->conns_current--; }

void stats_inflight_add(SimStats *st)
{
    if (++st->inflight_current > st->inflight_peak)
        st->inflight_peak = st->inflight_current;
}

void stats_inflight_done(SimStats *st) { st->inflight_current--; }

void stats_response(SimStats *st, int status)
{
    if (status >= 0 && status < STATS_MAX_STATUS)
        st->status[status]++;
}

int stats_to_json(const SimStats *st, const Catalog *cat, int64_t now_ms, Buf *out)
{
    int rc = buf_printf(out,
                        "{\"uptime_ms\":%" PRId64 ",\"since_reset_ms\":%" PRId64 ",\"requests\":%" PRIu64
                        ",\"http_requests\":%" PRIu64 ",\"responses\":{",
                        now_ms - st->started_ms, now_ms - st->reset_ms, st->chat_requests, st->http_requests);
    int first = 1;
    for (int s = 0; rc == 0 && s < STATS_MAX_STATUS; s++) {
        if (!st->status[s])
            continue;
        rc = buf_printf(out, "%s\"%d\":%" PRIu64, first ? "" : ",", s, st->status[s]);
        first = 0;
    }
    if (!rc)
        rc = buf_puts(out, "},\"faults\":{");
    for (int f = 1; rc == 0 && f < FAULT_COUNT; f++)
        rc = buf_printf(out, "%s\"%s\":%" PRIu64, f > 1 ? "," : "", fault_name((Fault)f), st->faults[f]);
    if (!rc)
        rc = buf_printf(out, ",\"batch_garble\":%" PRIu64, st->batch_garble);
    if (!rc)
        rc = buf_printf(out,
                        "},\"connections\":{\"current\":%" PRId64 ",\"peak\":%" PRId64 ",\"total\":%" PRIu64
                        "},\"in_flight\":{\"current\":%" PRId64 ",\"peak\":%" PRId64 "},\"models\":{",
                        st->conns_current, st->conns_peak, st->conns_total, st->inflight_current,
                        st->inflight_peak);
    for (size_t i = 0; rc == 0 && i < st->nmodels && i < cat->n; i++) {
        const ModelStats *m = &st->models[i];
        if (i)
            rc = buf_putc(out, ',');
        if (!rc)
            rc = json_put_cstr(out, cat->models[i].name);
        if (!rc)
            rc = buf_printf(out,
                            ":{\"requests\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"prompt_tokens\":%" PRIu64
                            ",\"cached_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64
                            ",\"reasoning_tokens\":%" PRIu64 ",\"correct\":%" PRIu64 ",\"wrong\":%" PRIu64
                            ",\"unkeyed\":%" PRIu64 ",\"judge_requests\":%" PRIu64 ",\"judge_right\":%" PRIu64
                            ",\"judge_fooled\":%" PRIu64 ",\"judge_unkeyed\":%" PRIu64
                            ",\"batch_requests\":%" PRIu64 ",\"batch_items\":%" PRIu64
                            ",\"compress_requests\":%" PRIu64 ",\"compress_facts\":%" PRIu64
                            ",\"compress_facts_kept\":%" PRIu64 ",\"rate_limited\":%" PRIu64
                            ",\"outage\":%" PRIu64 "}",
                            m->requests, m->answered, m->prompt_tokens, m->cached_tokens, m->completion_tokens,
                            m->reasoning_tokens, m->correct, m->wrong, m->unkeyed, m->judge_requests, m->judge_right,
                            m->judge_fooled, m->judge_unkeyed, m->batch_requests, m->batch_items,
                            m->compress_requests, m->compress_facts, m->compress_facts_kept, m->rate_limited,
                            m->outage);
    }
    if (!rc)
        rc = buf_puts(out, "}}");
    return rc;
}
