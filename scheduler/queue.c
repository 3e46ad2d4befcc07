#include "queue.h"

#include "buf.h"
#include "db.h"
#include "hash.h"
#include "pgarray.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The CTE locks the chosen rows once (SKIP LOCKED: rows another claimer holds are passed over, not
 * waited for) and the UPDATE takes exactly those; the partial index jobs_claim_idx serves the scan. */
static const char *const SQL_CLAIM =
    "WITH picked AS ("
    "  SELECT id FROM tierq.jobs"
    "  WHERE state = 'queued' AND run_after <= now() AND ($4::text[] IS NULL OR kind = ANY ($4::text[]))"
    "    AND ($5::text IS NULL OR run_name = $5)"
    "  ORDER BY priority DESC, run_after, id"
    "  LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE tierq.jobs j SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,"
    "   lease_until = now() + make_interval(secs => $3::int), started_at = coalesce(j.started_at, now()),"
    "   updated_at = now()"
    " FROM picked WHERE j.id = picked.id"
    " RETURNING j.id, j.kind, j.prompt, j.system_prompt, j.context, j.params::text, j.run_name, j.attempts,"
    "   j.max_attempts, j.priority, coalesce(round(j.max_budget_usd * 1000000), 0)::bigint,"
    "   (j.cost_usd * 1000000000000)::bigint";

void queue_job_free(QueueJob *job) { free(job); }

/* One allocation per job: the struct, then its strings. */
static QueueJob *job_from_row(PGresult *r, int row)
{
    static const int text_cols[] = {1, 2, 3, 4, 5, 6};
    size_t need = sizeof(QueueJob);
    for (size_t i = 0; i < sizeof text_cols / sizeof text_cols[0]; i++)
        need += (size_t)PQgetlength(r, row, text_cols[i]) + 1;
    QueueJob *j = calloc(1, need);
    if (!j)
        return NULL;
    char *p = (char *)(j + 1);
    char **dst[] = {&j->kind, &j->prompt, &j->system_prompt, &j->context, &j->params, &j->run_name};
    for (size_t i = 0; i < sizeof text_cols / sizeof text_cols[0]; i++) {
        int col = text_cols[i];
        if (PQgetisnull(r, row, col)) {
            *dst[i] = NULL;
            continue;
        }
        size_t len = (size_t)PQgetlength(r, row, col);
        memcpy(p, PQgetvalue(r, row, col), len);
        p[len] = '\0';
        *dst[i] = p;
        p += len + 1;
    }
    j->id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    j->attempt = atoi(PQgetvalue(r, row, 7));
    j->max_attempts = atoi(PQgetvalue(r, row, 8));
    j->priority = atoi(PQgetvalue(r, row, 9));
    j->max_budget_micro = strtoll(PQgetvalue(r, row, 10), NULL, 10);
    j->cost_so_far_pico = strtoll(PQgetvalue(r, row, 11), NULL, 10);
    return j;
}

int queue_claim(PGconn *c, const char *owner, const char *const *kinds, int nkinds, const char *run_name, int limit,
                int lease_s, QueueJob ***jobs_out, int *n_out, TqErr *err)
{
    char lim[16], lease[16];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(lease, sizeof lease, "%d", lease_s);
    Buf karr = {0};
    if (kinds) {
        pgarray_begin(&karr);
        for (int i = 0; i < nkinds; i++)
            pgarray_add_text(&karr, kinds[i]);
        if (pgarray_end(&karr)) {
            buf_free(&karr);
            return tq_err(err, TQ_ENOMEM, "out of memory");
        }
    }
    const char *p[] = {owner, lim, lease, kinds ? karr.data : NULL, run_name};
    PGresult *r = db_query(c, "claim jobs", SQL_CLAIM, 5, p, err);
    buf_free(&karr);
    if (!r)
        return TQ_EDB;
    int n = PQntuples(r);
    QueueJob **jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
    int rc = jobs ? 0 : TQ_ENOMEM;
    for (int i = 0; i < n && !rc; i++)
        if (!(jobs[i] = job_from_row(r, i)))
            rc = TQ_ENOMEM;
    PQclear(r);
    if (rc) {
        /* The rows are claimed but we cannot hold them: their leases expire and they are requeued. */
        for (int i = 0; jobs && i < n; i++)
            free(jobs[i]);
        free(jobs);
        return tq_err(err, rc, "out of memory holding claimed jobs");
    }
    *jobs_out = jobs;
    *n_out = n;
    return 0;
}

static int ids_array(Buf *b, const int64_t *ids, int n)
{
    pgarray_begin(b);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = pgarray_add_int64(b, ids[i]);
    return rc ? rc : pgarray_end(b);
}

/* Map the ids a statement returned back onto the caller's positions. */
static void mark_returned(PGresult *r, const int64_t *ids, int n, bool *flags, bool value_if_returned)
{
    if (!flags)
        return;
    for (int i = 0; i < n; i++)
        flags[i] = !value_if_returned;
    int m = PQntuples(r);
    for (int row = 0; row < m; row++) {
        int64_t id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
        /* n is one batch (hundreds at most); a linear probe from a hint keeps this cheap. */
        for (int i = 0; i < n; i++)
            if (ids[i] == id) {
                flags[i] = value_if_returned;
                break;
            }
    }
}

int queue_renew(PGconn *c, const char *owner, const int64_t *ids, const int *attempts, int n, int lease_s,
                bool *lost, int *renewed, TqErr *err)
{
    Buf a, b;
    int rc = ids_array(&a, ids, n);
    pgarray_begin(&b);
    for (int i = 0; i < n && !rc; i++)
        rc = pgarray_add_int64(&b, attempts[i]);
    if (!rc)
        rc = pgarray_end(&b);
    char lease[16];
    snprintf(lease, sizeof lease, "%d", lease_s);
    PGresult *r = NULL;
    if (!rc) {
        const char *p[] = {owner, a.data, b.data, lease};
        r = db_query(c, "renew leases",
                     "UPDATE tierq.jobs j SET lease_until = now() + make_interval(secs => $4::int), updated_at = now()"
                     " FROM unnest($2::bigint[], $3::int[]) AS u(id, attempt)"
                     " WHERE j.id = u.id AND j.state = 'running' AND j.lease_owner = $1 AND j.attempts = u.attempt"
                     " RETURNING j.id",
                     4, p, err);
        if (!r)
            rc = TQ_EDB;
    } else {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    }
    if (r) {
        mark_returned(r, ids, n, lost, false);
        if (renewed)
            *renewed = PQntuples(r);
        PQclear(r);
    }
    buf_free(&a);
    buf_free(&b);
    return rc;
}

int queue_complete(PGconn *c, const char *owner, const QueueResult *rs, int n, bool *applied, int *napplied,
                   TqErr *err)
{
    enum { C_ID, C_ATT, C_RES, C_MODEL, C_TIER, C_Q, C_ESC, C_REASON, C_BASE, C_N };
    Buf col[C_N];
    int64_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    for (int i = 0; i < C_N; i++)
        pgarray_begin(&col[i]);
    int rc = ids ? 0 : TQ_ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        char base[48];
        db_format_usd(base, sizeof base, rs[i].baseline_pico);
        ids[i] = rs[i].id;
        rc = pgarray_add_int64(&col[C_ID], rs[i].id) || pgarray_add_int64(&col[C_ATT], rs[i].attempt) ||
             pgarray_add_text(&col[C_RES], rs[i].result) || pgarray_add_text(&col[C_MODEL], rs[i].model) ||
             pgarray_add_int64(&col[C_TIER], rs[i].tier) || pgarray_add_double(&col[C_Q], rs[i].quality) ||
             pgarray_add_int64(&col[C_ESC], rs[i].escalations) || pgarray_add_text(&col[C_REASON], rs[i].reason) ||
             pgarray_add_text(&col[C_BASE], base);
    }
    for (int i = 0; i < C_N && !rc; i++)
        rc = pgarray_end(&col[i]);
    PGresult *r = NULL;
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
        goto cleanup;
    }
    const char *p[] = {owner, col[0].data, col[1].data, col[2].data, col[3].data, col[4].data,
                       col[5].data, col[6].data, col[7].data, col[8].data};
    r = db_query(c, "complete jobs",
                 "UPDATE tierq.jobs j SET state = 'done', result = u.result, model = u.model, tier = u.tier,"
                 "  quality = u.quality, escalations = u.esc, reason = u.reason, error = NULL,"
                 "  baseline_cost_usd = u.base, lease_owner = NULL, lease_until = NULL,"
                 "  finished_at = now(), updated_at = now()"
                 " FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::int[], $7::real[], $8::int[],"
                 "   $9::text[], $10::numeric[]) AS u(id, attempt, result, model, tier, quality, esc, reason, base)"
                 " WHERE j.id = u.id AND j.state = 'running' AND j.lease_owner = $1 AND j.attempts = u.attempt"
                 " RETURNING j.id",
                 10, p, err);
    if (!r) {
        rc = TQ_EDB;
        goto cleanup;
    }
    mark_returned(r, ids, n, applied, true);
    if (napplied)
        *napplied = PQntuples(r);
    PQclear(r);
cleanup:
    for (int i = 0; i < C_N; i++)
        buf_free(&col[i]);
    free(ids);
    return rc;
}

int queue_fail(PGconn *c, const char *owner, const QueueFailure *fs, int n, bool *applied, int *napplied,
               TqErr *err)
{
    enum { F_ID, F_ATT, F_REASON, F_ERR, F_RETRY, F_AFTER, F_N };
    Buf col[F_N];
    int64_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    for (int i = 0; i < F_N; i++)
        pgarray_begin(&col[i]);
    int rc = ids ? 0 : TQ_ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        ids[i] = fs[i].id;
        rc = pgarray_add_int64(&col[F_ID], fs[i].id) || pgarray_add_int64(&col[F_ATT], fs[i].attempt) ||
             pgarray_add_text(&col[F_REASON], fs[i].reason) || pgarray_add_text(&col[F_ERR], fs[i].error) ||
             pgarray_add_bool(&col[F_RETRY], fs[i].retryable) ||
             pgarray_add_int64(&col[F_AFTER], fs[i].retry_after_ms > 0 ? fs[i].retry_after_ms : 0);
    }
    for (int i = 0; i < F_N && !rc; i++)
        rc = pgarray_end(&col[i]);
    PGresult *r = NULL;
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
        goto cleanup;
    }
    const char *p[] = {owner, col[0].data, col[1].data, col[2].data, col[3].data, col[4].data, col[5].data};
    r = db_query(c, "fail jobs",
                 "UPDATE tierq.jobs j SET"
                 "  state = CASE WHEN NOT u.retry THEN 'failed' WHEN j.attempts >= j.max_attempts THEN 'dead'"
                 "               ELSE 'queued' END,"
                 "  run_after = CASE WHEN u.retry AND j.attempts < j.max_attempts"
                 "               THEN now() + make_interval(secs => u.after_ms / 1000.0) ELSE j.run_after END,"
                 "  finished_at = CASE WHEN u.retry AND j.attempts < j.max_attempts THEN NULL ELSE now() END,"
                 "  reason = u.reason, error = u.error, lease_owner = NULL, lease_until = NULL, updated_at = now()"
                 " FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::bool[], $7::bigint[])"
                 "   AS u(id, attempt, reason, error, retry, after_ms)"
                 " WHERE j.id = u.id AND j.state = 'running' AND j.lease_owner = $1 AND j.attempts = u.attempt"
                 " RETURNING j.id",
                 7, p, err);
    if (!r) {
        rc = TQ_EDB;
        goto cleanup;
    }
    mark_returned(r, ids, n, applied, true);
    if (napplied)
        *napplied = PQntuples(r);
    PQclear(r);
cleanup:
    for (int i = 0; i < F_N; i++)
        buf_free(&col[i]);
    free(ids);
    return rc;
}

int queue_requeue_expired(PGconn *c, int limit, int *requeued, int *dead, TqErr *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {lim};
    PGresult *r = db_query(
        c, "requeue expired leases",
        "WITH expired AS ("
        "  SELECT id FROM tierq.jobs WHERE state = 'running' AND lease_until < now()"
        "  ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE tierq.jobs j SET"
        "   state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,"
        "   reason = 'lease_expired',"
        "   error = 'lease_expired: attempt ' || j.attempts || ' held by ' || j.lease_owner ||"
        "           ' did not finish before its lease ran out' ||"
        "           CASE WHEN j.error IS NOT NULL THEN ' (previous error: ' || j.error || ')' ELSE '' END,"
        "   finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() ELSE NULL END,"
        "   run_after = now(), lease_owner = NULL, lease_until = NULL, updated_at = now()"
        " FROM expired WHERE j.id = expired.id"
        " RETURNING j.state",
        1, p, err);
    if (!r)
        return TQ_EDB;
    int q = 0, d = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), "dead") == 0)
            d++;
        else
            q++;
    }
    PQclear(r);
    if (requeued)
        *requeued = q;
    if (dead)
        *dead = d;
    return 0;
}

int queue_hand_back(PGconn *c, const char *owner, const int64_t *ids, int n, int *handed, TqErr *err)
{
    Buf a = {0};
    if (ids && ids_array(&a, ids, n)) {
        buf_free(&a);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    const char *p[] = {owner, ids ? a.data : NULL};
    /* The attempt did not fail, it was interrupted: give it back so max_attempts is not eaten by
     * restarts. */
    PGresult *r = db_query(c, "hand back jobs",
                           "UPDATE tierq.jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),"
                           "  lease_owner = NULL, lease_until = NULL, reason = 'handed_back', updated_at = now()"
                           " WHERE state = 'running' AND lease_owner = $1 AND ($2::bigint[] IS NULL OR id = ANY ($2))",
                           2, p, err);
    buf_free(&a);
    if (!r)
        return TQ_EDB;
    if (handed)
        *handed = atoi(PQcmdTuples(r));
    PQclear(r);
    return 0;
}

int queue_worker_register(PGconn *c, const char *id, const char *info_json, TqErr *err)
{
    char host[256] = "unknown", pid[16];
    gethostname(host, sizeof host - 1);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    const char *p[] = {id, host, pid, TQ_VERSION, info_json ? info_json : "{}"};
    return db_exec(c, "register worker",
                   "INSERT INTO tierq.workers (id, hostname, pid, version, info) VALUES ($1, $2, $3::int, $4, $5::jsonb)"
                   " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), info = excluded.info",
                   5, p, err);
}

int queue_worker_heartbeat(PGconn *c, const char *id, int in_flight, const char *info_json, TqErr *err)
{
    char n[16];
    snprintf(n, sizeof n, "%d", in_flight);
    const char *p[] = {id, n, info_json};
    return db_exec(c, "worker heartbeat",
                   "UPDATE tierq.workers SET heartbeat_at = now(), in_flight = $2::int,"
                   " info = coalesce($3::jsonb, info) WHERE id = $1",
                   3, p, err);
}

int queue_worker_unregister(PGconn *c, const char *id, TqErr *err)
{
    const char *p[] = {id};
    return db_exec(c, "unregister worker", "DELETE FROM tierq.workers WHERE id = $1", 1, p, err);
}

void queue_make_worker_id(char *out, size_t cap)
{
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    uint64_t rnd = hash_splitmix64(&seed);
    snprintf(out, cap, "%s:%d:%06llx", host, (int)getpid(), (unsigned long long)(rnd & 0xffffff));
}
