#include "cacheadmin.h"

#include "buf.h"
#include "cells.h"
#include "config.h"
#include "db.h"
#include "emit.h"

#include <stdlib.h>
#include <string.h>

/* Stats are a line per kind; the cap only guards against a runaway. */
#define CACHEADMIN_MAX_BYTES (4u << 20)

/* One statement, so entries and jobs are read in one snapshot. Entries and done jobs are grouped per
 * kind first and joined (a kind may have entries and no done job in the selection, or the reverse);
 * ROLLUP then gives the totals row (grouping = 1, listed first), also on an empty database.
 * $1 = run name or NULL, $2 = seconds or NULL: the jobs filter of tierq report. */
static const char *const SQL_CACHE_STATS =
    "WITH e AS ("
    "  SELECT kind, count(*) AS entries, count(*) FILTER (WHERE expires_at <= now()) AS expired,"
    "    sum(raw_len::bigint) AS raw, sum(octet_length(answer_z)::bigint) AS z, sum(hits) AS hits"
    "  FROM tierq.cache GROUP BY kind"
    "), j AS ("
    "  SELECT kind, count(*) AS done, count(*) FILTER (WHERE cache_hit) AS hit_jobs, sum(cache_saved_usd) AS saved"
    "  FROM tierq.jobs"
    "  WHERE state = 'done' AND ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    "  GROUP BY kind"
    "), k AS ("
    "  SELECT coalesce(e.kind, j.kind) AS kind, e.entries, e.expired, e.raw, e.z, e.hits, j.done, j.hit_jobs, j.saved"
    "  FROM e FULL JOIN j ON j.kind = e.kind"
    "), g AS ("
    "  SELECT grouping(kind) AS is_total, kind, coalesce(sum(entries), 0) AS entries,"
    "    coalesce(sum(expired), 0) AS expired, coalesce(sum(raw), 0) AS raw, coalesce(sum(z), 0) AS z,"
    "    coalesce(sum(hits), 0) AS hits, coalesce(sum(done), 0) AS done, coalesce(sum(hit_jobs), 0) AS hit_jobs,"
    "    coalesce(sum(saved), 0) AS saved"
    "  FROM k GROUP BY ROLLUP (kind)"
    ")"
    " SELECT is_total, kind, entries, expired, raw, z, CASE WHEN z > 0 THEN round(raw / z, 2) END, hits,"
    "   done, hit_jobs, CASE WHEN done > 0 THEN round(hit_jobs / done, 6) END,"
    "   CASE WHEN done > 0 THEN round(100 * hit_jobs / done, 1) END, round(saved, 6)"
    " FROM g ORDER BY is_total DESC, kind";

enum {
    CS_IS_TOTAL, CS_KIND, CS_ENTRIES, CS_EXPIRED, CS_RAW, CS_Z, CS_RATIO, CS_HITS, CS_DONE, CS_HIT_JOBS, CS_HIT_RATE,
    CS_HIT_PCT1, CS_SAVED, CS_NCOLS
};

/* The figures of one row after "kind" (or alone, for totals), keys as in the header. */
static void emit_json_figures(Emit *e, const PGresult *r, int i)
{
    emit(e,
         "\"entries\": %s, \"expired\": %s, \"raw_bytes\": %s, \"compressed_bytes\": %s, \"compression_ratio\": %s, "
         "\"hits\": %s, \"done_jobs\": %s, \"hit_jobs\": %s, \"hit_rate\": %s, \"saved_usd\": %s}",
         json_num(r, i, CS_ENTRIES), json_num(r, i, CS_EXPIRED), json_num(r, i, CS_RAW), json_num(r, i, CS_Z),
         json_num(r, i, CS_RATIO), json_num(r, i, CS_HITS), json_num(r, i, CS_DONE), json_num(r, i, CS_HIT_JOBS),
         json_num(r, i, CS_HIT_RATE), json_num(r, i, CS_SAVED));
}

static void render_stats_json(Emit *e, const ReportOptions *opt, const PGresult *r, int t)
{
    emit(e, "{\"filters\": {\"run\": ");
    emit_json_str(e, opt->run_name);
    if (opt->since_s > 0)
        emit(e, ", \"since_s\": %ld},\n", opt->since_s);
    else
        emit(e, ", \"since_s\": null},\n");
    emit(e, " \"totals\": {");
    emit_json_figures(e, r, t);
    emit(e, ",\n \"kinds\": [");
    int first = 1;
    for (int i = 0; i < PQntuples(r); i++) {
        if (i == t)
            continue;
        emit(e, "%s\n  {\"kind\": ", first ? "" : ",");
        first = 0;
        emit_json_str(e, PQgetvalue(r, i, CS_KIND));
        emit(e, ", ");
        emit_json_figures(e, r, i);
    }
    emit(e, "%s]}\n", first ? "" : "\n ");
}

/* "12.5% (5/40)", or "-" without done jobs. */
static void hit_rate_text(const PGresult *r, int i, char *out, size_t cap)
{
    if (cell(r, i, CS_HIT_PCT1))
        snprintf(out, cap, "%s%% (%s/%s)", PQgetvalue(r, i, CS_HIT_PCT1), PQgetvalue(r, i, CS_HIT_JOBS),
                 PQgetvalue(r, i, CS_DONE));
    else
        snprintf(out, cap, "-");
}

static void render_stats_text(Emit *e, const ReportOptions *opt, const PGresult *r, int t)
{
    char rate[96];
    emit(e, "tierq cache stats\n");
    emit(e, "\ncache entries (as they are now)\n");
    emit(e, "  %-18s %s (%s expired, not yet deleted)\n", "entries", text_cell(r, t, CS_ENTRIES),
         text_cell(r, t, CS_EXPIRED));
    emit(e, "  %-18s %s raw, %s compressed (ratio %s)\n", "bytes", text_cell(r, t, CS_RAW), text_cell(r, t, CS_Z),
         text_cell(r, t, CS_RATIO));
    emit(e, "  %-18s %s (lookups answered by the entries still stored)\n", "hits", text_cell(r, t, CS_HITS));

    emit(e, "\ndone jobs (%s%s", opt->run_name ? "run " : "all runs", opt->run_name ? opt->run_name : "");
    if (opt->since_s > 0)
        emit(e, ", last %lds)\n", opt->since_s);
    else
        emit(e, ", all time)\n");
    hit_rate_text(r, t, rate, sizeof rate);
    emit(e, "  %-18s %s\n", "done", text_cell(r, t, CS_DONE));
    emit(e, "  %-18s %s\n", "cache hits", rate);
    emit(e, "  %-18s %s (what the cached answers cost when they were produced)\n", "saved_usd",
         text_cell(r, t, CS_SAVED));

    emit(e, "\nper kind\n");
    emit(e, "  %-16s %8s %8s %12s %12s %6s %8s %8s  %-22s %12s\n", "kind", "entries", "expired", "raw_bytes",
         "compressed", "ratio", "hits", "done", "hit_rate", "saved_usd");
    for (int i = 0; i < PQntuples(r); i++) {
        if (i == t)
            continue;
        hit_rate_text(r, i, rate, sizeof rate);
        emit(e, "  %-16s %8s %8s %12s %12s %6s %8s %8s  %-22s %12s\n", PQgetvalue(r, i, CS_KIND),
             text_cell(r, i, CS_ENTRIES), text_cell(r, i, CS_EXPIRED), text_cell(r, i, CS_RAW), text_cell(r, i, CS_Z),
             text_cell(r, i, CS_RATIO), text_cell(r, i, CS_HITS), text_cell(r, i, CS_DONE), rate,
             text_cell(r, i, CS_SAVED));
    }
    if (PQntuples(r) <= 1)
        emit(e, "  (no entries and no done jobs)\n");
}

int cacheadmin_stats(PGconn *c, const ReportOptions *opt, FILE *out, TqErr *err)
{
    if (!opt || opt->since_s < 0 || (opt->format != REPORT_TEXT && opt->format != REPORT_JSON))
        return tq_err(err, TQ_EINVAL, "cache stats: invalid options");
    char since[32];
    snprintf(since, sizeof since, "%ld", opt->since_s);
    const char *params[] = {opt->run_name, opt->since_s > 0 ? since : NULL};
    Emit e = {.rc = 0};
    buf_init(&e.b, CACHEADMIN_MAX_BYTES);
    int rc = 0, t = -1;
    PGresult *r = db_query(c, "cache stats", SQL_CACHE_STATS, 2, params, err);
    if (!r) {
        rc = TQ_EDB;
        goto cleanup;
    }
    for (int i = 0; i < PQntuples(r) && PQnfields(r) == CS_NCOLS; i++)
        if (strcmp(PQgetvalue(r, i, CS_IS_TOTAL), "1") == 0)
            t = i;
    if (t < 0) {
        rc = tq_err(err, TQ_EDB, "cache stats: unexpected result shape");
        goto cleanup;
    }
    if (opt->format == REPORT_JSON)
        render_stats_json(&e, opt, r, t);
    else
        render_stats_text(&e, opt, r, t);
    if (e.rc) {
        rc = tq_err(err, e.rc, "cache stats: output too large or out of memory");
        goto cleanup;
    }
    if (fwrite(e.b.data, 1, e.b.len, out) != e.b.len || fflush(out) != 0)
        rc = tq_err(err, TQ_EIO, "cache stats: write failed");

cleanup:
    PQclear(r);
    buf_free(&e.b);
    return rc;
}

/* One batch of a purge: the next batch matching keys after $1 in key order, locked (in key order,
 * as lookups lock, so the two cannot deadlock; a row a lookup holds is waited for, not skipped, so
 * the purge misses nothing) and deleted. Returns the last key looked at (NULL: none left), the rows
 * deleted and their bytes. A row upkeep deleted meanwhile is simply not counted.
 * $2 kind or NULL, $3 age in seconds or NULL, $4 'true' for expired only or NULL, $5 the start
 * of the purge, $6 batch. */
static const char *const SQL_CACHE_PURGE =
    "WITH b AS ("
    "  SELECT key FROM tierq.cache"
    "  WHERE key > $1::text AND ($2::text IS NULL OR kind = $2::text)"
    "    AND ($3::bigint IS NULL OR created_at < $5::timestamptz - $3::bigint * interval '1 second')"
    "    AND ($4::boolean IS NULL OR expires_at <= $5::timestamptz)"
    "  ORDER BY key LIMIT $6::int FOR UPDATE"
    "), d AS ("
    "  DELETE FROM tierq.cache c USING b WHERE c.key = b.key"
    "  RETURNING octet_length(c.answer_z)::bigint AS z, c.raw_len::bigint AS raw"
    ")"
    " SELECT (SELECT max(key) FROM b), count(*), coalesce(sum(z), 0), coalesce(sum(raw), 0) FROM d";

int cacheadmin_purge_check(const CachePurgeFilter *f, TqErr *err)
{
    bool filtered = f->kind || f->older_than_s != 0 || f->expired;
    if (f->older_than_s < 0)
        return tq_err(err, TQ_EINVAL, "cache purge: --older-than must be positive");
    if (f->kind && !config_kind_name_ok(f->kind))
        return tq_err(err, TQ_EINVAL,
                      "cache purge: --kind \"%s\" is not a kind name (lowercase letters, digits and _, starting "
                      "with a letter)",
                      f->kind);
    if (f->all && filtered)
        return tq_err(err, TQ_EINVAL,
                      "cache purge: --all deletes every entry; it does not go with --kind, --older-than or --expired");
    if (!f->all && !filtered)
        return tq_err(err, TQ_EINVAL,
                      "cache purge: no filter given, nothing deleted: name --kind, --older-than or --expired, or "
                      "--all to delete every entry");
    return 0;
}

int cacheadmin_purge(PGconn *c, const CachePurgeFilter *f, int batch, CachePurgeResult *out, TqErr *err)
{
    *out = (CachePurgeResult){0};
    if (batch < 1 || batch > 100000)
        return tq_err(err, TQ_EINVAL, "cache purge: batch must be from 1 to 100000");
    int rc = cacheadmin_purge_check(f, err);
    if (rc)
        return rc;
    char age[32], lim[16], start[64], last[128] = "";
    snprintf(age, sizeof age, "%ld", f->older_than_s);
    snprintf(lim, sizeof lim, "%d", batch);
    PGresult *r = db_query(c, "cache purge start", "SELECT now()::text", 0, NULL, err);
    if (!r)
        return TQ_EDB;
    snprintf(start, sizeof start, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    for (;;) {
        const char *p[6] = {last, f->kind, f->older_than_s > 0 ? age : NULL, f->expired ? "true" : NULL, start, lim};
        if (!(r = db_query(c, "cache purge", SQL_CACHE_PURGE, 6, p, err)))
            return TQ_EDB;
        if (PQntuples(r) != 1 || PQnfields(r) != 4) {
            PQclear(r);
            return tq_err(err, TQ_EDB, "cache purge: unexpected result shape");
        }
        bool done = PQgetisnull(r, 0, 0);
        /* keys are 64 hex digits (cache_key_is_sha256_hex), so last always holds one */
        if (!done)
            snprintf(last, sizeof last, "%s", PQgetvalue(r, 0, 0));
        out->entries += atoll(PQgetvalue(r, 0, 1));
        out->bytes += atoll(PQgetvalue(r, 0, 2));
        out->raw_bytes += atoll(PQgetvalue(r, 0, 3));
        PQclear(r);
        if (done)
            return 0;
    }
}
