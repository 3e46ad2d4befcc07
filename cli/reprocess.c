#include "reprocess.h"

#include "buf.h"
#include "db.h"
#include "pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two reprocesses into one run serialize here, so both cannot see it empty. */
static const char *const SQL_LOCK_RUN =
    "SELECT pg_advisory_xact_lock(hashtextextended('tierq.reprocess:' || $1, 0))";

static const char *const SQL_RUN_JOBS = "SELECT count(*) FROM tierq.jobs WHERE run_name = $1";

/* The selection of run A, by kind. */
static const char *const SQL_SOURCE_KINDS =
    "SELECT kind, count(*) FROM tierq.jobs"
    " WHERE run_name = $1 AND state <> 'cancelled' AND ($2::text[] IS NULL OR kind = ANY ($2::text[]))"
    " GROUP BY kind ORDER BY kind";

/* The copy. $4: keep | tiered | model; $5 the model; $6 the sample size per kind (NULL: all). */
static const char *const SQL_COPY =
    "WITH src AS ("
    "  SELECT j.id, j.kind, j.prompt, j.system_prompt, j.context, j.params, j.expected, j.priority,"
    "         j.max_attempts, j.max_budget_usd,"
    "         row_number() OVER (PARTITION BY j.kind ORDER BY md5(j.id::text), j.id) AS pick"
    "  FROM tierq.jobs j"
    "  WHERE j.run_name = $1 AND j.state <> 'cancelled' AND ($2::text[] IS NULL OR j.kind = ANY ($2::text[]))),"
    " ins AS ("
    "  INSERT INTO tierq.jobs (kind, prompt, system_prompt, context, params, expected, priority, max_attempts,"
    "                          max_budget_usd, run_name)"
    "  SELECT kind, prompt, system_prompt, context,"
    "         CASE $4 WHEN 'keep' THEN params WHEN 'tiered' THEN params - 'model'"
    "              ELSE params || jsonb_build_object('model', $5::text) END,"
    "         expected, priority, max_attempts, max_budget_usd, $3"
    "  FROM src WHERE $6::bigint IS NULL OR pick <= $6::bigint ORDER BY id"
    "  RETURNING kind)"
    " SELECT kind, count(*) FROM ins GROUP BY kind ORDER BY kind";

static const char *map_name(ReprocessMap m)
{
    return m == REPROCESS_MAP_TIERED ? "tiered" : m == REPROCESS_MAP_MODEL ? "model" : "keep";
}

/* Refusals that depend on what run A holds: nothing to copy, or kinds jobs/ no longer defines. */
static int check_source(PGconn *c, const TqConfig *cfg, const ReprocessOptions *o, const char *kinds, TqErr *err)
{
    const char *p[] = {o->from_run, kinds};
    PGresult *r = db_query(c, "read the source run", SQL_SOURCE_KINDS, 2, p, err);
    if (!r)
        return TQ_EDB;
    int rc = 0;
    if (PQntuples(r) == 0)
        rc = tq_err(err, TQ_EINVAL, "run %s has no jobs%s to copy (cancelled jobs are not copied)", o->from_run,
                    kinds ? " of those kinds" : "");
    for (int i = 0; !rc && i < PQntuples(r); i++)
        if (!config_kind(cfg, PQgetvalue(r, i, 0)))
            rc = tq_err(err, TQ_EINVAL,
                        "run %s has %s jobs of kind %s, which jobs/ no longer defines (no tierq run would answer "
                        "them); leave it out with --kinds",
                        o->from_run, PQgetvalue(r, i, 1), PQgetvalue(r, i, 0));
    PQclear(r);
    return rc;
}

static int check_target(PGconn *c, const ReprocessOptions *o, const char *run, TqErr *err)
{
    if (strcmp(run, o->from_run) == 0)
        return tq_err(err, TQ_EINVAL, "the new run must differ from --from-run %s", o->from_run);
    const char *p[] = {run};
    if (db_exec(c, "lock the run", SQL_LOCK_RUN, 1, p, err))
        return TQ_EDB;
    if (o->append)
        return 0;
    PGresult *r = db_query(c, "count the run's jobs", SQL_RUN_JOBS, 1, p, err);
    if (!r)
        return TQ_EDB;
    long have = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (have > 0)
        return tq_err(err, TQ_EINVAL, "run %s already has %ld jobs; %s", run, have,
                      o->taken_hint ? o->taken_hint : "choose another run name, or add --append");
    return 0;
}

static int copy_into(PGconn *c, const ReprocessOptions *o, const char *kinds, const ReprocessTarget *t, int ti,
                     ReprocessCount **counts, int *ncounts, int *cap, TqErr *err)
{
    char sample[32];
    snprintf(sample, sizeof sample, "%ld", o->sample);
    const char *p[] = {o->from_run, kinds, t->run, map_name(t->map), t->map == REPROCESS_MAP_MODEL ? t->model : NULL,
                       o->sample > 0 ? sample : NULL};
    PGresult *r = db_query(c, "copy the jobs", SQL_COPY, 6, p, err);
    if (!r)
        return TQ_EDB;
    int rc = 0;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        if (*ncounts == *cap) {
            int ncap = *cap ? *cap * 2 : 16;
            ReprocessCount *nc = realloc(*counts, (size_t)ncap * sizeof *nc);
            if (!nc) {
                rc = tq_err(err, TQ_ENOMEM, "out of memory");
                break;
            }
            *counts = nc;
            *cap = ncap;
        }
        ReprocessCount *rc_row = &(*counts)[(*ncounts)++];
        rc_row->target = ti;
        snprintf(rc_row->kind, sizeof rc_row->kind, "%s", PQgetvalue(r, i, 0));
        rc_row->jobs = atol(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return rc;
}

int reprocess_enqueue(PGconn *c, const TqConfig *cfg, const ReprocessOptions *o, const ReprocessTarget *targets,
                      int n, ReprocessCount **counts, int *ncounts, TqErr *err)
{
    ReprocessCount *out = NULL;
    int nout = 0, cap = 0;
    Buf kinds;
    pgarray_begin(&kinds);
    int rc = 0;
    for (int i = 0; i < o->nkinds && !rc; i++)
        rc = pgarray_add_text(&kinds, o->kinds[i]);
    if (rc || (rc = pgarray_end(&kinds))) {
        buf_free(&kinds);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    const char *kinds_p = o->nkinds > 0 ? kinds.data : NULL;
    if ((rc = db_exec(c, "begin", "BEGIN", 0, NULL, err)))
        goto cleanup;
    for (int i = 0; i < n && !rc; i++)
        rc = check_target(c, o, targets[i].run, err);
    if (!rc)
        rc = check_source(c, cfg, o, kinds_p, err);
    for (int i = 0; i < n && !rc; i++)
        rc = copy_into(c, o, kinds_p, &targets[i], i, &out, &nout, &cap, err);
    if (!rc)
        rc = db_exec(c, o->dry_run ? "roll back the dry run" : "commit", o->dry_run ? "ROLLBACK" : "COMMIT", 0, NULL,
                     err);
cleanup:
    if (rc) {
        PQclear(PQexec(c, "ROLLBACK"));
        free(out);
    } else {
        *counts = out;
        *ncounts = nout;
    }
    buf_free(&kinds);
    return rc;
}
