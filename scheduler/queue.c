#include "queue.h"

#include "buf.h"
#include "cache.h"
#include "cost.h"
#include "db.h"
#include "hash.h"
#include "check.h"
#include "log.h"
#include "pgarray.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The bounds sql/006 puts on a row's counters, as a condition: statements that update many rows at
 * once pass over an old row that breaks them (any update of it is refused, and one refused row
 * must not stop the statement for every other row). */
#define SQL_COUNTERS_IN_BOUNDS                                                                        \
    "escalations BETWEEN 0 AND 1000"                                                                  \
    " AND cost_usd BETWEEN 0 AND 10000000 AND baseline_cost_usd BETWEEN 0 AND 10000000"              \
    " AND tokens_in BETWEEN 0 AND 1000000000000000 AND tokens_cached_in BETWEEN 0 AND 1000000000000000" \
    " AND tokens_out BETWEEN 0 AND 1000000000000000 AND (max_budget_usd IS NULL OR max_budget_usd <= 1000000)"

/* A run whose spend ceiling (tierq.run_budgets: a schedule's per-fire budget_usd) is reached is not
 * claimed from: its jobs stay queued, as with tierq run --budget-usd. An anti-join on a table that
 * is empty unless schedules set budgets. */
#define SQL_RUN_BUDGET_OPEN \
    "(run_name IS NULL OR NOT EXISTS (SELECT 1 FROM tierq.run_budgets b" \
    "  WHERE b.run_name = tierq.jobs.run_name AND b.reached_at IS NOT NULL))"

/* The CTE locks the chosen rows once (SKIP LOCKED: rows another claimer holds are passed over, not
 * waited for) and the UPDATE takes exactly those; the partial index jobs_claim_idx serves the scan. */
static const char *const SQL_CLAIM =
    "WITH candidates AS ("
    "  SELECT id, priority, run_after,"
    "    octet_length(prompt) + coalesce(octet_length(context), 0) + coalesce(octet_length(system_prompt), 0) AS bytes"
    "  FROM tierq.jobs"
    "  WHERE state = 'queued' AND run_after <= now() AND ($4::text[] IS NULL OR kind = ANY ($4::text[]))"
    "    AND ($5::text IS NULL OR run_name = $5)"
    /* rows from before the bounds of 006 that break them are never claimed: the update would be
     * refused, and one refused row must not stop claiming for everyone */
    "    AND attempts BETWEEN 0 AND least(max_attempts, 1000) - 1 AND " SQL_COUNTERS_IN_BOUNDS
    "    AND " SQL_RUN_BUDGET_OPEN
    "  ORDER BY priority DESC, run_after, id"
    "  LIMIT $2 FOR UPDATE SKIP LOCKED),"
    /* then as many as the byte bound allows ($6, NULL = none), the first one always: a job larger
     * than the bound still runs, alone. Candidates left out are unlocked when the statement ends. */
    " picked AS ("
    "  SELECT id FROM (SELECT id, row_number() OVER w AS rn, sum(bytes) OVER w AS upto FROM candidates"
    "                  WINDOW w AS (ORDER BY priority DESC, run_after, id ROWS UNBOUNDED PRECEDING)) x"
    "  WHERE $6::bigint IS NULL OR rn = 1 OR upto <= $6)"
    " UPDATE tierq.jobs j SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,"
    "   lease_until = now() + make_interval(secs => $3::int), started_at = coalesce(j.started_at, now()),"
    "   updated_at = now()"
    " FROM picked WHERE j.id = picked.id"
    " RETURNING j.id, j.kind, j.prompt, j.system_prompt, j.context, j.params::text, j.run_name, j.attempts,"
    "   j.max_attempts, j.priority, coalesce(round(least(j.max_budget_usd, 1000000) * 1000000), 0)::bigint,"
    "   (least(j.cost_usd, 9000000) * 1000000000000)::bigint";


/* One allocation per job: the struct, then its strings. */
static QueueJob *job_from_row(const PGresult *r, int row)
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

typedef struct Claimed {
    QueueJob **jobs;
    int n, cap;
    bool oom;
} Claimed;

static int take_claimed_row(void *ud, const PGresult *r, int row)
{
    Claimed *cl = ud;
    QueueJob *j = cl->n < cl->cap ? job_from_row(r, row) : NULL;
    if (!j) {
        cl->oom = true; /* or more rows than asked for, which the LIMIT rules out */
        return 1;
    }
    cl->jobs[cl->n++] = j;
    return 0;
}

int queue_claim(PGconn *c, const char *owner, const char *const *kinds, int nkinds, const char *run_name, int limit,
                int lease_s, int64_t max_bytes, QueueJob ***jobs_out, int *n_out, TqErr *err)
{
    char lim[16], lease[16], bytes[24];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(lease, sizeof lease, "%d", lease_s);
    snprintf(bytes, sizeof bytes, "%lld", (long long)max_bytes);
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
    const char *p[] = {owner, lim, lease, kinds ? karr.data : NULL, run_name, max_bytes > 0 ? bytes : NULL};
    /* Rows are copied out one at a time as they arrive: a claim of large jobs is never held twice
     * (whole result and copies) at once. */
    Claimed cl = {calloc((size_t)(limit > 0 ? limit : 1), sizeof(QueueJob *)), 0, limit, false};
    int rc = cl.jobs ? db_query_rows(c, "claim jobs", SQL_CLAIM, 6, p, take_claimed_row, &cl, err)
                     : tq_err(err, TQ_ENOMEM, "out of memory");
    buf_free(&karr);
    if (!rc && cl.oom)
        rc = tq_err(err, TQ_ENOMEM, "out of memory holding claimed jobs");
    if (rc) {
        /* An error ends the statement's transaction: the rows seen were not claimed after all. Out of
         * memory: they are claimed but cannot be held; their leases expire and they are requeued. */
        for (int i = 0; i < cl.n; i++)
            job_free(cl.jobs[i]);
        free(cl.jobs);
        return rc;
    }
    *jobs_out = cl.jobs;
    *n_out = cl.n;
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
                     /* locked in id order, as the write-back locks them (see SQL_FLUSH) */
                     "WITH lk AS (SELECT j.id FROM tierq.jobs j JOIN unnest($2::bigint[], $3::int[]) AS u(id, attempt)"
                     "   ON j.id = u.id WHERE j.state = 'running' AND j.lease_owner = $1 AND j.attempts = u.attempt"
                     "   ORDER BY j.id FOR UPDATE OF j)"
                     " UPDATE tierq.jobs j SET lease_until = now() + make_interval(secs => $4::int), updated_at = now()"
                     " FROM lk WHERE j.id = lk.id"
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

/* The whole flush is ONE statement, so it is atomic without BEGIN/COMMIT and costs one round trip:
 *   ins  inserts the ledger rows that are new (a flush retried after a lost connection finds its
 *        call keys present and inserts nothing: idempotent);
 *   ch   sums the per-job charges of the rows actually inserted;
 *   oc   the job outcomes (done, or failed with retry or not);
 *   then every touched job is updated once: charges always (money spent is money spent), the
 *   outcome only when the fence holds on the locked row itself (running, our lease, this attempt).
 * A fenced write stamps updated_at with the statement's now(); RETURNING compares it to tell
 * applied outcomes from lease_lost ones (PostgreSQL 15 has no OLD in RETURNING). */
#define FENCED "(oc.id IS NOT NULL AND j.state = 'running' AND j.lease_owner = $1 AND j.attempts = oc.att)"
#define RETRY_LATER "(NOT oc.done AND oc.retry AND (oc.keep OR j.attempts < j.max_attempts))"
static const char *const SQL_FLUSH =
    "WITH ins AS ("
    "  INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, worker, attempt,"
    "    tokens_in, tokens_cached_in, tokens_out, tokens_reasoning, usage_estimated, cost_usd, latency_ms,"
    "    http_status, status, reason, error, score, answer, solo_cost_usd, solo_tokens_in, missing_signals,"
    "    max_tokens, max_tokens_capped)"
    "  SELECT u.k, u.rn, string_to_array(u.ji, ',')::bigint[], u.kind, u.model, u.tier, u.purpose, $1, u.att,"
    "    u.ti, u.tc, u.tout, u.tr, u.est, u.cost, u.lat, u.http, u.st, u.reason, u.err, u.score, u.ans, u.solo, u.solo_tok,"
    "    u.miss, u.maxtok, u.capped"
    "  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::int[],"
    "    $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bool[], $14::numeric[], $15::int[],"
    "    $16::int[], $17::text[], $18::text[], $19::text[], $20::real[], $21::text[], $41::text[], $42::numeric[], $43::bigint[],"
    "    $44::text[], $45::int[], $46::bool[])"
    "    AS u(k, ji, kind, model, tier, purpose, att, ti, tc, tout, tr, est, cost, lat, http, st, reason, err, score, rn, ans,"
    "      solo, solo_tok, miss, maxtok, capped)"
    /* a row already there is a replay (nothing changes, nothing is charged again) unless it is the
     * intent of this exchange (status sent), written before the request left: then it is completed */
    "  ON CONFLICT (call_key) DO UPDATE SET"
    "    tokens_in = excluded.tokens_in, tokens_cached_in = excluded.tokens_cached_in,"
    "    tokens_out = excluded.tokens_out, tokens_reasoning = excluded.tokens_reasoning,"
    "    usage_estimated = excluded.usage_estimated, cost_usd = excluded.cost_usd, latency_ms = excluded.latency_ms,"
    "    http_status = excluded.http_status, status = excluded.status, reason = excluded.reason,"
    "    error = excluded.error, score = excluded.score, answer = excluded.answer, solo_cost_usd = excluded.solo_cost_usd,"
    "    solo_tokens_in = excluded.solo_tokens_in, missing_signals = excluded.missing_signals,"
    "    max_tokens = excluded.max_tokens, max_tokens_capped = excluded.max_tokens_capped"
    "    WHERE tierq.calls.status = 'sent' AND excluded.status <> 'sent'"
    "  RETURNING call_key),"
    " ch AS ("
    "  SELECT c.id, sum(c.cost) AS cost, sum(c.ti) AS ti, sum(c.tc) AS tc, sum(c.tout) AS tout"
    "  FROM unnest($22::text[], $23::bigint[], $24::numeric[], $25::bigint[], $26::bigint[], $27::bigint[])"
    "    AS c(k, id, cost, ti, tc, tout)"
    "  WHERE c.k IN (SELECT call_key FROM ins) GROUP BY c.id),"
    " oc AS ("
    "  SELECT * FROM unnest($28::bigint[], $29::int[], $30::bool[], $31::text[], $32::text[], $33::int[],"
    "    $34::real[], $35::int[], $36::text[], $37::numeric[], $38::text[], $39::bool[], $40::bigint[], $47::bool[],"
    "    $48::bool[], $49::numeric[], $62::text[], $63::int[], $64::int[], $65::bigint[], $66::numeric[])"
    "    AS o(id, att, done, res, model, tier, q, esc, reason, base, err, retry, after_ms, keep, hit, saved,"
    "      cmp, cb, ca, cst, csu)),"
    /* contexts compressed by calls in this flush (sql/012), as the cache stores answers */
    " ks AS ("
    "  INSERT INTO tierq.compressed (key, kind, model, target_tokens, text_z, raw_len, tokens_before, tokens_after,"
    "    cost_usd, expires_at)"
    "  SELECT DISTINCT ON (k.key) k.key, k.kind, k.model, k.target, k.z, k.raw, k.before, k.after, k.cost,"
    "    now() + make_interval(secs => k.ttl)"
    "  FROM unnest($67::text[], $68::text[], $69::text[], $70::int[], $71::bytea[], $72::int[], $73::int[], $74::int[],"
    "    $75::numeric[], $76::int[]) AS k(key, kind, model, target, z, raw, before, after, cost, ttl)"
    "  ORDER BY k.key"
    "  ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, model = excluded.model, target_tokens = excluded.target_tokens,"
    "    text_z = excluded.text_z, raw_len = excluded.raw_len, tokens_before = excluded.tokens_before,"
    "    tokens_after = excluded.tokens_after, cost_usd = excluded.cost_usd, created_at = now(), last_used_at = NULL,"
    "    uses = 0, expires_at = excluded.expires_at"
    "    WHERE tierq.compressed.expires_at <= now()"
    "  RETURNING 1),"
    /* answers that passed their bar, for the response cache (sql/011): an entry already there (another
     * process answered the same request) stays as it is */
    " cs AS ("
    "  INSERT INTO tierq.cache (key, kind, answer_z, raw_len, model, tier, quality, tokens_in, tokens_out, cost_usd,"
    "    baseline_cost_usd, expires_at)"
    "  SELECT DISTINCT ON (s.key) s.key, s.kind, s.z, s.raw, s.model, s.tier, s.q, s.tin, s.tout, s.cost, s.base,"
    "    now() + make_interval(secs => s.ttl)"
    "  FROM unnest($50::text[], $51::text[], $52::bytea[], $53::int[], $54::text[], $55::int[], $56::real[],"
    "    $57::bigint[], $58::bigint[], $59::numeric[], $60::numeric[], $61::int[])"
    "    AS s(key, kind, z, raw, model, tier, q, tin, tout, cost, base, ttl)"
    "  ORDER BY s.key"
    /* ... unless it has expired and upkeep has not deleted it yet: then the new answer replaces it */
    "  ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, answer_z = excluded.answer_z, raw_len = excluded.raw_len,"
    "    model = excluded.model, tier = excluded.tier, quality = excluded.quality, tokens_in = excluded.tokens_in,"
    "    tokens_out = excluded.tokens_out, cost_usd = excluded.cost_usd, baseline_cost_usd = excluded.baseline_cost_usd,"
    "    created_at = now(), last_hit_at = NULL, last_used_at = now(), expires_at = excluded.expires_at, hits = 0"
    "    WHERE tierq.cache.expires_at <= now()"
    "  RETURNING 1),"
    " ids AS (SELECT id FROM ch UNION SELECT id FROM oc),"
    /* the rows locked in id order before any is updated: the lease renewal locks in the same order,
     * so the two never wait on each other in a circle (a deadlock PostgreSQL had to break) */
    " lk AS (SELECT jj.id FROM tierq.jobs jj WHERE jj.id IN (SELECT id FROM ids) ORDER BY jj.id FOR UPDATE)"
    " UPDATE tierq.jobs j SET"
    "   cost_usd = j.cost_usd + coalesce(ch.cost, 0), tokens_in = j.tokens_in + coalesce(ch.ti, 0),"
    "   tokens_cached_in = j.tokens_cached_in + coalesce(ch.tc, 0), tokens_out = j.tokens_out + coalesce(ch.tout, 0),"
    "   attempts = CASE WHEN " FENCED " AND NOT oc.done AND oc.retry AND oc.keep THEN j.attempts - 1"
    "              ELSE j.attempts END,"
    "   state = CASE WHEN NOT " FENCED " THEN j.state WHEN oc.done THEN 'done' WHEN NOT oc.retry THEN 'failed'"
    "                WHEN oc.keep THEN 'queued'"
    "                WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,"
    "   result = CASE WHEN " FENCED " AND oc.done THEN oc.res ELSE j.result END,"
    "   model = CASE WHEN " FENCED " AND oc.done THEN oc.model ELSE j.model END,"
    "   tier = CASE WHEN " FENCED " AND oc.done THEN oc.tier ELSE j.tier END,"
    "   quality = CASE WHEN " FENCED " AND oc.done THEN oc.q ELSE j.quality END,"
    "   escalations = CASE WHEN " FENCED " AND oc.done THEN oc.esc ELSE j.escalations END,"
    "   baseline_cost_usd = CASE WHEN " FENCED " AND oc.done THEN oc.base ELSE j.baseline_cost_usd END,"
    "   cache_hit = CASE WHEN " FENCED " AND oc.done THEN coalesce(oc.hit, false) ELSE j.cache_hit END,"
    "   cache_saved_usd = CASE WHEN " FENCED " AND oc.done THEN coalesce(oc.saved, 0) ELSE j.cache_saved_usd END,"
    "   compression = CASE WHEN " FENCED " THEN coalesce(oc.cmp, j.compression) ELSE j.compression END,"
    "   context_tokens_before = CASE WHEN " FENCED " AND oc.cmp IS NOT NULL THEN oc.cb ELSE j.context_tokens_before END,"
    "   context_tokens_after = CASE WHEN " FENCED " AND oc.cmp IS NOT NULL THEN oc.ca ELSE j.context_tokens_after END,"
    "   compress_tokens_saved = j.compress_tokens_saved + CASE WHEN " FENCED " THEN coalesce(oc.cst, 0) ELSE 0 END,"
    "   compress_saved_usd = j.compress_saved_usd + CASE WHEN " FENCED " THEN coalesce(oc.csu, 0) ELSE 0 END,"
    "   reason = CASE WHEN " FENCED " THEN oc.reason ELSE j.reason END,"
    "   error = CASE WHEN " FENCED " THEN CASE WHEN oc.done THEN NULL ELSE oc.err END ELSE j.error END,"
    "   run_after = CASE WHEN " FENCED " AND " RETRY_LATER
    "               THEN now() + make_interval(secs => oc.after_ms / 1000.0) ELSE j.run_after END,"
    "   finished_at = CASE WHEN " FENCED " THEN CASE WHEN " RETRY_LATER " THEN NULL ELSE now() END"
    "                 ELSE j.finished_at END,"
    "   lease_owner = CASE WHEN " FENCED " THEN NULL ELSE j.lease_owner END,"
    "   lease_until = CASE WHEN " FENCED " THEN NULL ELSE j.lease_until END,"
    "   updated_at = CASE WHEN " FENCED " THEN now() ELSE j.updated_at END"
    " FROM lk AS ids LEFT JOIN ch ON ch.id = ids.id LEFT JOIN oc ON oc.id = ids.id"
    " WHERE j.id = ids.id"
    " RETURNING oc.id IS NOT NULL, j.updated_at = now(), j.state, oc.reason, oc.err";

enum {
    L_KEY, L_JOBS, L_KIND, L_MODEL, L_TIER, L_PURPOSE, L_ATT, L_TI, L_TC, L_TOUT, L_TR, L_EST, L_COST, L_LAT,
    L_HTTP, L_ST, L_REASON, L_ERR, L_SCORE, L_RUN, L_CKEY, L_CID, L_CCOST, L_CTI, L_CTC, L_CTOUT,
    O_ID, O_ATT, O_DONE, O_RES, O_MODEL, O_TIER, O_Q, O_ESC, O_REASON, O_BASE, O_ERR, O_RETRY, O_AFTER, L_ANSWER,
    L_SOLO, L_SOLO_TOK, L_MISSING, L_MAXTOK, L_CAPPED, O_KEEP, O_HIT, O_SAVED,
    S_KEY, S_KIND, S_Z, S_RAW, S_MODEL, S_TIER, S_Q, S_TIN, S_TOUT, S_COST, S_BASE, S_TTL,
    O_CMP, O_CBEFORE, O_CAFTER, O_CSAVTOK, O_CSAVED,
    K_KEY, K_KIND, K_MODEL, K_TARGET, K_Z, K_RAW, K_BEFORE, K_AFTER, K_COST, K_TTL, L_N
};
_Static_assert(L_N + 1 == QUEUE_FLUSH_NPARAMS, "the owner and one array per column");

static int add_usd(Buf *b, int64_t pico)
{
    char s[48];
    cost_format_usd(s, sizeof s, pico, 12);
    return pgarray_add_text(b, s);
}

/* Errors quote what providers sent: scrub the configured secrets before anything is stored. */
static int add_scrubbed(Buf *b, const char *s)
{
    if (!s)
        return pgarray_add_null(b);
    char *clean = log_scrub_dup(s);
    int rc = pgarray_add_text(b, clean ? clean : "");
    free(clean);
    return rc;
}

static int add_missing(Buf *b, unsigned mask)
{
    if (!mask)
        return pgarray_add_null(b);
    char names[64];
    check_signal_names(mask, names, sizeof names);
    return pgarray_add_text(b, names);
}

/* An answer for the response cache: compressed here, on the writer's thread. A failure to compress
 * only leaves the answer out of the cache. */
static int add_cache_entry(const Call *c, const CallJob *cj, Buf *col)
{
    Buf z;
    buf_init(&z, 0);
    TqErr err = {0};
    size_t len = strlen(cj->result);
    if (cache_pack_answer(cj->result, len, c->cfg->cache_store.zstd_level, &z, &err) != 0) {
        buf_free(&z);
        log_msg(LOG_WARN, "cache", "an answer of kind %s is not cached: %s", c->kind->name, err.msg);
        return 0;
    }
    int rc = pgarray_add_text(&col[S_KEY], cj->job->cache_key) || pgarray_add_text(&col[S_KIND], c->kind->name) ||
             pgarray_add_text(&col[S_Z], z.data) || pgarray_add_int64(&col[S_RAW], (int64_t)len) ||
             pgarray_add_text(&col[S_MODEL], c->cfg->models[cj->answer_model].name) ||
             pgarray_add_int64(&col[S_TIER], cj->answer_tier + 1) || pgarray_add_double(&col[S_Q], cj->quality) ||
             pgarray_add_int64(&col[S_TIN], cj->spent_tokens_in) || pgarray_add_int64(&col[S_TOUT], cj->spent_tokens_out) ||
             add_usd(&col[S_COST], cj->spent_pico) || add_usd(&col[S_BASE], cj->baseline_pico) ||
             pgarray_add_int64(&col[S_TTL], c->kind->cache.ttl_s);
    buf_free(&z);
    return rc;
}

/* A context compressed by this call, for tierq.compressed; its cost is the call's, the sum of its
 * jobs' shares. */
static int add_compressed(const Call *c, Buf *col)
{
    Buf z;
    buf_init(&z, 0);
    TqErr err = {0};
    size_t len = strlen(c->compress_output);
    if (cache_pack_answer(c->compress_output, len, c->cfg->cache_store.zstd_level, &z, &err) != 0) {
        buf_free(&z);
        log_msg(LOG_WARN, "compress", "a compressed context of kind %s is not stored: %s", c->kind->name, err.msg);
        return 0;
    }
    int64_t cost = 0;
    for (int j = 0; j < c->njobs; j++)
        cost = cost_add(cost, c->jobs[j].spent_pico);
    int rc = pgarray_add_text(&col[K_KEY], c->compress_key) || pgarray_add_text(&col[K_KIND], c->kind->name) ||
             pgarray_add_text(&col[K_MODEL], c->cfg->models[c->send_model].name) ||
             pgarray_add_int64(&col[K_TARGET], c->kind->compress.target_tokens) || pgarray_add_text(&col[K_Z], z.data) ||
             pgarray_add_int64(&col[K_RAW], (int64_t)len) || pgarray_add_int64(&col[K_BEFORE], c->compress_tokens_before) ||
             pgarray_add_int64(&col[K_AFTER], c->compress_tokens_after) || add_usd(&col[K_COST], cost) ||
             pgarray_add_int64(&col[K_TTL], c->kind->cache.ttl_s);
    buf_free(&z);
    return rc;
}

/* Build every array of the flush statement. */
static int build_arrays(Call *const *calls, int ncalls, Buf *col, int *nrows, int *noutcomes)
{
    int rc = 0;
    *nrows = 0;
    *noutcomes = 0;
    for (int i = 0; i < L_N; i++)
        pgarray_begin(&col[i]);
    for (int ci = 0; ci < ncalls && !rc; ci++) {
        const Call *c = calls[ci];
        for (int r = 0; r < c->nrows && !rc; r++) {
            const LedgerRow *row = &c->rows[r];
            if (!row->status || strcmp(row->status, "sent") != 0)
                (*nrows)++; /* an intent is not an exchange yet: counted when it completes */
            rc = pgarray_add_text(&col[L_KEY], row->key) || pgarray_add_text(&col[L_JOBS], row->job_ids) ||
                 pgarray_add_text(&col[L_KIND], c->kind->name) ||
                 pgarray_add_text(&col[L_MODEL], c->cfg->models[row->model].name) ||
                 pgarray_add_int64(&col[L_TIER], row->tier + 1) || pgarray_add_text(&col[L_PURPOSE], row->purpose) ||
                 pgarray_add_text(&col[L_ANSWER], row->answer) ||
                 (row->solo_pico > 0 ? add_usd(&col[L_SOLO], row->solo_pico) : pgarray_add_null(&col[L_SOLO])) ||
                 (row->solo_pico > 0 ? pgarray_add_int64(&col[L_SOLO_TOK], row->solo_tokens_in)
                                     : pgarray_add_null(&col[L_SOLO_TOK])) ||
                 pgarray_add_int64(&col[L_ATT], row->attempt) ||
                 pgarray_add_int64(&col[L_TI], row->tokens_in) || pgarray_add_int64(&col[L_TC], row->tokens_cached) ||
                 pgarray_add_int64(&col[L_TOUT], row->tokens_out) ||
                 pgarray_add_int64(&col[L_TR], row->tokens_reasoning) || pgarray_add_bool(&col[L_EST], row->estimated) ||
                 add_usd(&col[L_COST], row->cost_pico) || pgarray_add_int64(&col[L_LAT], row->latency_ms) ||
                 pgarray_add_int64(&col[L_HTTP], row->http_status) ||
                 pgarray_add_text(&col[L_ST], row->status ? row->status : "ok") ||
                 pgarray_add_text(&col[L_REASON], row->reason) || add_scrubbed(&col[L_ERR], row->error) ||
                 pgarray_add_double(&col[L_SCORE], row->score) || pgarray_add_text(&col[L_RUN], row->run_name) ||
                 add_missing(&col[L_MISSING], row->missing_signals) ||
                 (row->max_tokens > 0 ? pgarray_add_int64(&col[L_MAXTOK], row->max_tokens) : pgarray_add_null(&col[L_MAXTOK])) ||
                 pgarray_add_bool(&col[L_CAPPED], row->max_tokens_capped);
            for (int k = 0; k < row->ncharges && !rc; k++) {
                const LedgerCharge *ch = &row->charges[k];
                if (ch->cost_pico == 0 && ch->tokens_in == 0 && ch->tokens_out == 0)
                    continue;
                rc = pgarray_add_text(&col[L_CKEY], row->key) || pgarray_add_int64(&col[L_CID], ch->job_id) ||
                     add_usd(&col[L_CCOST], ch->cost_pico) || pgarray_add_int64(&col[L_CTI], ch->tokens_in) ||
                     pgarray_add_int64(&col[L_CTC], ch->tokens_cached) || pgarray_add_int64(&col[L_CTOUT], ch->tokens_out);
            }
        }
        if (!rc && c->phase == CALL_PHASE_COMPRESS && c->compress_output)
            rc = add_compressed(c, col);
        for (int j = 0; j < c->njobs && !rc; j++) {
            const CallJob *cj = &c->jobs[j];
            if (cj->outcome == CALL_JOB_PENDING || cj->outcome == CALL_JOB_SHADOW || !cj->job)
                continue;
            bool done = cj->outcome == CALL_JOB_DONE;
            (*noutcomes)++;
            rc = pgarray_add_int64(&col[O_ID], cj->job->id) || pgarray_add_int64(&col[O_ATT], cj->job->attempt) ||
                 pgarray_add_bool(&col[O_DONE], done) || pgarray_add_text(&col[O_RES], done ? cj->result : NULL) ||
                 pgarray_add_text(&col[O_MODEL], done ? c->cfg->models[cj->answer_model].name : NULL) ||
                 pgarray_add_int64(&col[O_TIER], cj->answer_tier + 1) || pgarray_add_double(&col[O_Q], cj->quality) ||
                 pgarray_add_int64(&col[O_ESC], cj->escalations) || pgarray_add_text(&col[O_REASON], cj->reason) ||
                 add_usd(&col[O_BASE], cj->baseline_pico) || add_scrubbed(&col[O_ERR], cj->error) ||
                 pgarray_add_bool(&col[O_RETRY], cj->retryable) ||
                 pgarray_add_int64(&col[O_AFTER], cj->retry_after_ms > 0 ? cj->retry_after_ms : 0) ||
                 pgarray_add_bool(&col[O_KEEP], cj->keep_attempt) || pgarray_add_bool(&col[O_HIT], done && cj->cache_hit) ||
                 add_usd(&col[O_SAVED], done && cj->cache_hit ? cj->cache_saved_pico : 0) ||
                 (cj->job->compression != JOB_COMPRESSION_NONE ? pgarray_add_text(&col[O_CMP], job_compression_name(cj->job->compression))
                                                             : pgarray_add_null(&col[O_CMP])) ||
                 pgarray_add_int64(&col[O_CBEFORE], cj->job->context_tokens_before) ||
                 pgarray_add_int64(&col[O_CAFTER], cj->job->context_tokens_after) ||
                 pgarray_add_int64(&col[O_CSAVTOK], cj->compress_tokens_saved) ||
                 add_usd(&col[O_CSAVED], cj->compress_saved_pico);
            if (!rc && cache_answer_storable(cj))
                rc = add_cache_entry(c, cj, col);
        }
    }
    for (int i = 0; i < L_N && !rc; i++)
        rc = pgarray_end(&col[i]);
    return rc;
}

/* Run the flush statement on its parameters and count what it applied. */
static int exec_flush(PGconn *conn, const char *const *p, QueueWriteBack *wb, int64_t *applied_out, TqErr *err)
{
    PGresult *r = db_query(conn, "write back", SQL_FLUSH, L_N + 1, p, err);
    if (!r)
        return TQ_EDB;
    int64_t done = 0, retry = 0, failed = 0, applied = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, 0)[0] != 't' || PQgetvalue(r, i, 1)[0] != 't')
            continue;
        applied++;
        const char *st = PQgetvalue(r, i, 2);
        if (strcmp(st, "done") == 0) {
            done++;
            continue;
        }
        if (strcmp(st, "queued") == 0)
            retry++;
        else
            failed++;
        if (wb->on_failure)
            wb->on_failure(wb->ud, PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
    }
    PQclear(r);
    wb->done = done;
    wb->retry = retry;
    wb->failed = failed;
    *applied_out = applied;
    return 0;
}

int queue_write_back(PGconn *conn, const char *owner, Call *const *calls, int ncalls, QueueWriteBack *wb, TqErr *err)
{
    Buf col[L_N];
    int nrows = 0, noutcomes = 0;
    int rc = build_arrays(calls, ncalls, col, &nrows, &noutcomes);
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory building the write-back");
        goto cleanup;
    }
    const char *p[L_N + 1];
    p[0] = owner;
    for (int i = 0; i < L_N; i++)
        p[1 + i] = col[i].data;
    int64_t applied = 0;
    if ((rc = exec_flush(conn, p, wb, &applied, err)))
        goto cleanup;
    int64_t cost = 0, baseline = 0;
    for (int ci = 0; ci < ncalls; ci++) {
        const Call *c = calls[ci];
        for (int k = 0; k < c->nrows; k++)
            cost = cost_add(cost, c->rows[k].cost_pico);
        for (int j = 0; j < c->njobs; j++)
            if (c->jobs[j].outcome == CALL_JOB_DONE)
                baseline = cost_add(baseline, c->jobs[j].baseline_pico);
    }
    wb->rows = nrows;
    wb->lease_lost = noutcomes - applied;
    wb->cost_pico = cost;
    wb->baseline_pico = baseline;
cleanup:
    for (int i = 0; i < L_N; i++)
        buf_free(&col[i]);
    return rc;
}

int queue_flush_params(const char *owner, Call *const *calls, int ncalls, char **params, TqErr *err)
{
    Buf col[L_N];
    int nrows = 0, noutcomes = 0;
    memset(params, 0, QUEUE_FLUSH_NPARAMS * sizeof *params);
    if (build_arrays(calls, ncalls, col, &nrows, &noutcomes) || !(params[0] = strdup(owner))) {
        for (int i = 0; i < L_N; i++)
            buf_free(&col[i]);
        free(params[0]);
        params[0] = NULL;
        return tq_err(err, TQ_ENOMEM, "out of memory building the write-back");
    }
    for (int i = 0; i < L_N; i++) {
        params[1 + i] = col[i].data; /* the buffer moves to the caller */
        col[i].data = NULL;
    }
    return 0;
}

int queue_write_back_params(PGconn *conn, const char *const *params, QueueWriteBack *wb, TqErr *err)
{
    int64_t applied = 0;
    int rc = exec_flush(conn, params, wb, &applied, err);
    if (!rc)
        wb->lease_lost = 0; /* not known from the parameters alone: applied outcomes are counted */
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
        "    AND attempts BETWEEN 0 AND 1000 AND " SQL_COUNTERS_IN_BOUNDS
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

int64_t queue_count_remaining(PGconn *c, const char *const *kinds, int nkinds, const char *run_name, bool due_soon_only,
                              TqErr *err)
{
    Buf karr;
    pgarray_begin(&karr);
    for (int i = 0; i < nkinds; i++)
        pgarray_add_text(&karr, kinds[i]);
    if (pgarray_end(&karr)) {
        buf_free(&karr);
        tq_err(err, TQ_ENOMEM, "out of memory");
        return -1;
    }
    const char *p[] = {karr.data, run_name, due_soon_only ? "t" : "f"};
    /* rows that break the bounds are never claimed nor requeued: waiting for them would never end */
    PGresult *res = db_query(c, "count remaining jobs",
                             "SELECT count(*) FROM tierq.jobs WHERE kind = ANY ($1::text[])"
                             " AND ($2::text IS NULL OR run_name = $2)"
                             " AND ((state = 'running' AND attempts BETWEEN 0 AND 1000 AND " SQL_COUNTERS_IN_BOUNDS ")"
                             "   OR (state = 'queued' AND (NOT $3::bool OR run_after <= now() + interval '60 seconds'"
                             /* waiting through an outage: due at the model's next probe, at most a
                              * breaker's cooldown_max_s (5 min by default) away */
                             "         OR (reason = 'model_unavailable' AND run_after <= now() + interval '1 hour'))"
                             "       AND attempts BETWEEN 0 AND least(max_attempts, 1000) - 1 AND " SQL_COUNTERS_IN_BOUNDS
                             "       AND " SQL_RUN_BUDGET_OPEN "))",
                             3, p, err);
    buf_free(&karr);
    if (!res)
        return -1;
    int64_t n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

int queue_shadow_estimates(PGconn *c, const char *run_name, QueueShadowEstimate *out, int cap, int *n, TqErr *err)
{
    const char *p[] = {run_name};
    PGresult *r = db_query(c, "shadow estimates",
                           "SELECT kind, compared, agreed, agreement, low, high, min_agreement, below"
                           " FROM tierq.shadow_estimates($1::text)",
                           1, p, err);
    if (!r)
        return TQ_EDB;
    int m = 0;
    for (int i = 0; i < PQntuples(r) && m < cap; i++, m++) {
        QueueShadowEstimate *e = &out[m];
        snprintf(e->kind, sizeof e->kind, "%s", PQgetvalue(r, i, 0));
        e->compared = atoll(PQgetvalue(r, i, 1));
        e->agreed = atoll(PQgetvalue(r, i, 2));
        e->agreement = PQgetisnull(r, i, 3) ? NAN : atof(PQgetvalue(r, i, 3));
        e->low = PQgetisnull(r, i, 4) ? NAN : atof(PQgetvalue(r, i, 4));
        e->high = PQgetisnull(r, i, 5) ? NAN : atof(PQgetvalue(r, i, 5));
        e->min_agreement = atof(PQgetvalue(r, i, 6));
        e->below = PQgetvalue(r, i, 7)[0] == 't';
    }
    PQclear(r);
    *n = m;
    return 0;
}

int queue_first_tier_shift(PGconn *c, const char *run_name, QueueTierShift *out, int cap, int *n, TqErr *err)
{
    const char *p[] = {run_name};
    PGresult *r = db_query(c, "first tier shift",
                           "SELECT kind, recent_jobs, recent_first, reference_jobs, reference_first, z, shifted"
                           " FROM tierq.first_tier_shift_windows($1::text)",
                           1, p, err);
    if (!r)
        return TQ_EDB;
    int m = 0;
    for (int i = 0; i < PQntuples(r) && m < cap; i++, m++) {
        QueueTierShift *e = &out[m];
        snprintf(e->kind, sizeof e->kind, "%s", PQgetvalue(r, i, 0));
        e->recent_jobs = atoll(PQgetvalue(r, i, 1));
        e->recent_first = atoll(PQgetvalue(r, i, 2));
        e->reference_jobs = atoll(PQgetvalue(r, i, 3));
        e->reference_first = atoll(PQgetvalue(r, i, 4));
        e->z = PQgetisnull(r, i, 5) ? NAN : atof(PQgetvalue(r, i, 5));
        e->shifted = PQgetvalue(r, i, 6)[0] == 't';
    }
    PQclear(r);
    *n = m;
    return 0;
}

int queue_shadow_tier_drift(PGconn *c, const char *run_name, QueueTierDrift *out, int cap, int *n, TqErr *err)
{
    const char *p[] = {run_name};
    PGresult *r = db_query(c, "shadow tier drift",
                           "SELECT kind, tier, recent_compared, recent_agreed, reference_compared, reference_agreed, z,"
                           " dropped FROM tierq.shadow_tier_drift($1::text)",
                           1, p, err);
    if (!r)
        return TQ_EDB;
    int m = 0;
    for (int i = 0; i < PQntuples(r) && m < cap; i++, m++) {
        QueueTierDrift *e = &out[m];
        snprintf(e->kind, sizeof e->kind, "%s", PQgetvalue(r, i, 0));
        e->tier = atoi(PQgetvalue(r, i, 1));
        e->recent_compared = atoll(PQgetvalue(r, i, 2));
        e->recent_agreed = atoll(PQgetvalue(r, i, 3));
        e->reference_compared = atoll(PQgetvalue(r, i, 4));
        e->reference_agreed = atoll(PQgetvalue(r, i, 5));
        e->z = PQgetisnull(r, i, 6) ? NAN : atof(PQgetvalue(r, i, 6));
        e->dropped = PQgetvalue(r, i, 7)[0] == 't';
    }
    PQclear(r);
    *n = m;
    return 0;
}

int queue_shadow_mark(PGconn *c, const char *kind, int64_t *mark, TqErr *err)
{
    const char *p[] = {kind};
    PGresult *r = db_query(c, "shadow mark",
                           "SELECT coalesce(max(id), 0) FROM tierq.calls WHERE kind = $1 AND purpose = 'shadow'", 1, p,
                           err);
    if (!r)
        return TQ_EDB;
    *mark = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return 0;
}

int queue_record_tier_shift(PGconn *c, const QueueTierShift *sh, const char *run_name, const char *worker,
                            int64_t mark, TqErr *err)
{
    char m[32], rn[32], rf[32], fn[32], ff[32], z[48];
    snprintf(m, sizeof m, "%lld", (long long)mark);
    snprintf(rn, sizeof rn, "%lld", (long long)sh->recent_jobs);
    snprintf(rf, sizeof rf, "%lld", (long long)sh->recent_first);
    snprintf(fn, sizeof fn, "%lld", (long long)sh->reference_jobs);
    snprintf(ff, sizeof ff, "%lld", (long long)sh->reference_first);
    snprintf(z, sizeof z, "%.17g", sh->z);
    const char *p[] = {sh->kind, run_name, worker, m, rn, rf, fn, ff, isnan(sh->z) ? NULL : z};
    PGresult *r = db_query(c, "record tier shift",
                           "INSERT INTO tierq.tier_shifts (kind, run_name, worker, shadow_mark, recent_jobs, recent_first,"
                           " reference_jobs, reference_first, z) VALUES ($1, $2, $3, $4::bigint, $5::bigint, $6::bigint,"
                           " $7::bigint, $8::bigint, $9::float8)",
                           9, p, err);
    if (!r)
        return TQ_EDB;
    PQclear(r);
    return 0;
}

int queue_shadow_since(PGconn *c, const char *kind, int tier, int64_t mark, int limit, int64_t *count, TqErr *err)
{
    char m[32], l[16], t[16];
    snprintf(m, sizeof m, "%lld", (long long)mark);
    snprintf(l, sizeof l, "%d", limit);
    snprintf(t, sizeof t, "%d", tier);
    const char *p[] = {kind, m, l, t};
    PGresult *r = db_query(c, "shadow since",
                           "SELECT count(*) FROM (SELECT 1 FROM tierq.calls WHERE kind = $1 AND purpose = 'shadow'"
                           " AND id > $2::bigint AND status = 'ok' AND answer IS NOT NULL"
                           " AND ($4::int = 0 OR tier = $4::int) LIMIT $3::int) x",
                           4, p, err);
    if (!r)
        return TQ_EDB;
    *count = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return 0;
}

/* The estimate: input as counted when the intent was written, output at the request's max_tokens,
 * at the model's prices as tierq.models has them; split over the row's jobs in equal shares, the
 * remainder (to the 1e-12 dollar) to the first, so the shares sum to the row exactly. */
static const char *const SQL_SETTLE =
    "WITH orphan AS ("
    "  SELECT k.id FROM tierq.calls k"
    "  WHERE k.status = 'sent' AND k.created_at < now() - make_interval(secs => $1::int)"
    "    AND NOT EXISTS (SELECT 1 FROM tierq.workers w WHERE w.id = k.worker"
    "                    AND w.heartbeat_at > now() - make_interval(secs => $1::int))"
    "  ORDER BY k.id LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " settled AS ("
    "  UPDATE tierq.calls k SET status = 'unknown', reason = 'settled_after_crash', usage_estimated = true,"
    "    tokens_out = coalesce(k.max_tokens, 0),"
    "    cost_usd = round((k.tokens_in * coalesce((SELECT m.input_usd_per_mtok FROM tierq.models m WHERE m.name = k.model), 0)"
    "      + coalesce(k.max_tokens, 0) * coalesce((SELECT m.output_usd_per_mtok FROM tierq.models m WHERE m.name = k.model), 0))"
    "      / 1000000, 12),"
    "    error = 'settled_after_crash: the process that sent this request (' || coalesce(k.worker, '?') || ') stopped"
    " before its answer was recorded; charged at its input and its max_tokens bound (estimated)'"
    "  FROM orphan WHERE k.id = orphan.id"
    "  RETURNING k.job_ids, k.cost_usd, k.tokens_in, k.tokens_out, k.purpose),"
    " shares AS ("
    "  SELECT u.job_id,"
    "    trunc(s.cost_usd / n.n, 12) + CASE WHEN u.ord = 1 THEN s.cost_usd - trunc(s.cost_usd / n.n, 12) * n.n ELSE 0 END AS cost,"
    "    s.tokens_in / n.n + CASE WHEN u.ord = 1 THEN s.tokens_in % n.n ELSE 0 END AS ti,"
    "    s.tokens_out / n.n + CASE WHEN u.ord = 1 THEN s.tokens_out % n.n ELSE 0 END AS tout"
    "  FROM settled s CROSS JOIN LATERAL (SELECT greatest(cardinality(s.job_ids), 1) AS n) n"
    "  CROSS JOIN LATERAL unnest(s.job_ids) WITH ORDINALITY AS u(job_id, ord)"
    "  WHERE s.purpose <> 'shadow'),"  /* shadow spend is charged to no job */
    " per_job AS (SELECT job_id, sum(cost) AS cost, sum(ti) AS ti, sum(tout) AS tout FROM shares GROUP BY job_id),"
    " charged AS ("
    "  UPDATE tierq.jobs j SET cost_usd = j.cost_usd + p.cost, tokens_in = j.tokens_in + p.ti,"
    "    tokens_out = j.tokens_out + p.tout, updated_at = now()"
    "  FROM per_job p WHERE j.id = p.job_id RETURNING j.id)"
    " SELECT (SELECT count(*) FROM settled), (SELECT count(*) FROM charged)";

int queue_settle_orphans(PGconn *c, int stale_s, int limit, int *settled, TqErr *err)
{
    char st[16], lim[16];
    snprintf(st, sizeof st, "%d", stale_s);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {st, lim};
    PGresult *r = db_query(c, "settle orphaned requests", SQL_SETTLE, 2, p, err);
    if (!r)
        return TQ_EDB;
    if (settled)
        *settled = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
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
                           " WHERE state = 'running' AND lease_owner = $1 AND ($2::bigint[] IS NULL OR id = ANY ($2))"
                           "   AND attempts BETWEEN 0 AND 1000 AND " SQL_COUNTERS_IN_BOUNDS,
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

int queue_wake_waiting(PGconn *c, const char *model, int64_t *woken, TqErr *err)
{
    const char *p[] = {model};
    /* the message is worker/pool.c model_unavailable's: "model_unavailable: model NAME is unavailable" */
    PGresult *r = db_query(c, "wake waiting jobs",
                           "WITH w AS (UPDATE tierq.jobs SET run_after = now(), updated_at = now()"
                           "  WHERE state = 'queued' AND reason = 'model_unavailable' AND run_after > now()"
                           "    AND starts_with(error, 'model_unavailable: model ' || $1 || ' ') RETURNING 1),"
                           " n AS (SELECT count(*) AS n FROM w)"
                           " SELECT n, CASE WHEN n > 0 THEN pg_notify('tierq_jobs', '') END FROM n",
                           1, p, err);
    if (!r)
        return err->code ? err->code : TQ_EDB;
    if (woken)
        *woken = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int queue_worker_heartbeat(PGconn *c, const char *id, int in_flight, const char *info_json, int *live, TqErr *err)
{
    char n[16];
    snprintf(n, sizeof n, "%d", in_flight);
    const char *p[] = {id, n, info_json};
    /* the count sees the table as it was before this statement's UPDATE: this process is counted
     * apart (1 +), the others when alive, busy or not (counting only busy ones let every process
     * that woke up with work send at a whole limit until the next heartbeats: 8-10 s at twice it) */
    PGresult *r = db_query(c, "worker heartbeat",
                           "WITH beat AS (UPDATE tierq.workers SET heartbeat_at = now(), in_flight = $2::int,"
                           "   info = coalesce($3::jsonb, info) WHERE id = $1 RETURNING id)"
                           " SELECT 1 + count(*) FROM tierq.workers"
                           "  WHERE id <> $1 AND heartbeat_at > now() - interval '20 seconds'",
                           3, p, err);
    if (!r)
        return err->code ? err->code : TQ_EDB;
    if (live)
        *live = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
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
