#include "retention.h"

#include "db.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bit;
} RETENTION_STATES[] = {
    {"done", RETENTION_DONE}, {"failed", RETENTION_FAILED}, {"dead", RETENTION_DEAD}, {"cancelled", RETENTION_CANCELLED}};
enum { NSTATES = sizeof RETENTION_STATES / sizeof RETENTION_STATES[0] };

/* $1 seconds, $2 a text[] literal of finished states, $3 the batch. */
const char *const RETENTION_SQL_BATCH =
    "SELECT jobs_deleted, calls_deleted"
    " FROM tierq.prune_batch($1::bigint * interval '1 second', $2::text[], $3::int)";

static const char *const SQL_PREVIEW =
    "SELECT jobs, calls, round(cost_usd, 6)::text FROM tierq.prune_preview($1::bigint * interval '1 second', $2::text[])";

int retention_parse_states(const char *csv, unsigned *states, TqErr *err)
{
    if (!csv || !*csv)
        return tq_err(err, TQ_EINVAL, "--states names no state (give some of done,failed,dead,cancelled)");
    unsigned set = 0;
    const char *p = csv;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        unsigned bit = 0;
        for (int i = 0; i < NSTATES; i++)
            if (strlen(RETENTION_STATES[i].name) == n && strncmp(p, RETENTION_STATES[i].name, n) == 0)
                bit = RETENTION_STATES[i].bit;
        if (!bit) {
            /* the word is echoed only when it is short and plain ASCII: it came from a command line */
            bool plain = n > 0 && n <= 32;
            for (size_t k = 0; plain && k < n; k++)
                plain = p[k] >= 'a' && p[k] <= 'z';
            if (plain && ((n == 6 && strncmp(p, "queued", 6) == 0) || (n == 7 && strncmp(p, "running", 7) == 0)))
                return tq_err(err, TQ_EINVAL,
                              "--states: %.*s jobs are never pruned (finished states: done,failed,dead,cancelled)",
                              (int)n, p);
            if (plain)
                return tq_err(err, TQ_EINVAL, "--states: \"%.*s\" is not a finished state (done,failed,dead,cancelled)",
                              (int)n, p);
            return tq_err(err, TQ_EINVAL, "--states takes a comma-separated list of done,failed,dead,cancelled");
        }
        set |= bit;
        if (!end)
            break;
        p = end + 1;
    }
    *states = set;
    return 0;
}

void retention_states_text(unsigned states, char *out, size_t cap)
{
    size_t len = 0;
    if (cap)
        out[0] = '\0';
    for (int i = 0; i < NSTATES && cap; i++) {
        if (!(states & RETENTION_STATES[i].bit))
            continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? "," : "", RETENTION_STATES[i].name);
        if (w < 0 || (size_t)w >= cap - len)
            return;
        len += (size_t)w;
    }
}

int retention_check(const RetentionSpec *s, TqErr *err)
{
    if (!s)
        return tq_err(err, TQ_EINVAL, "prune: no arguments");
    if (s->older_than_s <= 0)
        return tq_err(err, TQ_EINVAL, "--older-than must be a positive duration");
    if (s->states == 0 || (s->states & ~(unsigned)RETENTION_ALL))
        return tq_err(err, TQ_EINVAL, "--states must name some of done,failed,dead,cancelled");
    if (s->batch < 1 || s->batch > RETENTION_MAX_BATCH)
        return tq_err(err, TQ_EINVAL, "--batch must be from 1 to %d", RETENTION_MAX_BATCH);
    return 0;
}

void retention_batch_params(const RetentionSpec *s, RetentionParams *p)
{
    char names[48];
    retention_states_text(s->states, names, sizeof names);
    snprintf(p->older_than_s, sizeof p->older_than_s, "%ld", s->older_than_s);
    snprintf(p->states, sizeof p->states, "{%s}", names);
    snprintf(p->batch, sizeof p->batch, "%d", s->batch);
    p->values[0] = p->older_than_s;
    p->values[1] = p->states;
    p->values[2] = p->batch;
}

int retention_batch_result(const PGresult *r, int64_t *jobs, int64_t *calls, TqErr *err)
{
    if (!r || PQntuples(r) != 1 || PQnfields(r) != 2 || PQgetisnull(r, 0, 0) || PQgetisnull(r, 0, 1))
        return tq_err(err, TQ_EDB, "prune batch: unexpected result shape");
    *jobs = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *calls = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    return 0;
}

int retention_prune_batch(PGconn *c, const RetentionSpec *s, int64_t *jobs, int64_t *calls, TqErr *err)
{
    int rc = retention_check(s, err);
    if (rc)
        return rc;
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        return tq_err(err, TQ_EINVAL, "prune: the connection is inside a transaction (each batch must commit)");
    RetentionParams p;
    retention_batch_params(s, &p);
    PGresult *r = db_query(c, "prune batch", RETENTION_SQL_BATCH, RETENTION_BATCH_NPARAMS, p.values, err);
    if (!r)
        return TQ_EDB;
    rc = retention_batch_result(r, jobs, calls, err);
    PQclear(r);
    return rc;
}

int retention_prune(PGconn *c, const RetentionSpec *s, int64_t max_batches, RetentionTotals *out, TqErr *err)
{
    *out = (RetentionTotals){0};
    for (;;) {
        int64_t jobs = 0, calls = 0;
        int rc = retention_prune_batch(c, s, &jobs, &calls, err);
        if (rc)
            return rc;
        if (jobs == 0)
            return 0;
        out->jobs += jobs;
        out->calls += calls;
        out->batches++;
        if (max_batches > 0 && out->batches >= max_batches)
            return 0;
    }
}

int retention_preview(PGconn *c, const RetentionSpec *s, RetentionPreview *out, TqErr *err)
{
    int rc = retention_check(s, err);
    if (rc)
        return rc;
    RetentionParams p;
    retention_batch_params(s, &p);
    PGresult *r = db_query(c, "prune preview", SQL_PREVIEW, 2, p.values, err);
    if (!r)
        return TQ_EDB;
    if (PQntuples(r) != 1 || PQnfields(r) != 3) {
        PQclear(r);
        return tq_err(err, TQ_EDB, "prune preview: unexpected result shape");
    }
    out->jobs = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    out->calls = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    snprintf(out->cost_usd, sizeof out->cost_usd, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    return 0;
}
