#include "bakeoff.h"

#include "buf.h"
#include "cells.h"
#include "db.h"
#include "emit.h"
#include "kindfile.h"
#include "pgarray.h"
#include "reprocess.h"
#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BAKEOFF_MAX_FILE_BYTES (1u << 20)

int bakeoff_resolve(const TqConfig *cfg, const BakeoffOptions *o, Bakeoff *b, TqErr *err)
{
    memset(b, 0, sizeof *b);
    if (!o->kind || !(b->kind = config_kind(cfg, o->kind)))
        return tq_err(err, TQ_EINVAL, "--kind: unknown kind %s (no %s/%s.json)", o->kind ? o->kind : "(none)", cfg->dir,
                      o->kind ? o->kind : "?");
    if (o->nmodels < 2)
        return tq_err(err, TQ_EINVAL, "--models needs two or more models, comma-separated (a bake-off compares)");
    char prefix[256];
    if (o->run_prefix)
        snprintf(prefix, sizeof prefix, "%s", o->run_prefix);
    else
        snprintf(prefix, sizeof prefix, "bakeoff-%s-%s", o->from_run, o->kind);
    for (int i = 0; i < o->nmodels; i++) {
        const char *name = o->models[i];
        int m = strcmp(name, "baseline") == 0 ? b->kind->baseline_model : config_model_index(cfg, name);
        if (m < 0)
            return tq_err(err, TQ_EINVAL, "--models: unknown model %s (not in %s/models.json; \"baseline\" is kind %s's %s)",
                          name, cfg->dir, b->kind->name, cfg->models[b->kind->baseline_model].name);
        for (int j = 0; j < b->n; j++)
            if (b->model[j] == m)
                return tq_err(err, TQ_EINVAL, "--models: model %s is given twice", cfg->models[m].name);
        int len = snprintf(b->run[b->n], sizeof b->run[0], "%s-%s", prefix, cfg->models[m].name);
        if (len < 0 || (size_t)len >= sizeof b->run[0])
            return tq_err(err, TQ_EINVAL, "--run-prefix: the run name %s-%s is longer than 200 characters", prefix,
                          cfg->models[m].name);
        b->model[b->n++] = m;
    }
    return 0;
}

int bakeoff_enqueue(PGconn *c, const TqConfig *cfg, const BakeoffOptions *o, const Bakeoff *b, FILE *out, TqErr *err)
{
    ReprocessTarget t[BAKEOFF_MAX_MODELS];
    for (int i = 0; i < b->n; i++)
        t[i] = (ReprocessTarget){.run = b->run[i], .map = REPROCESS_MAP_MODEL, .model = cfg->models[b->model[i]].name};
    const char *kinds[] = {b->kind->name};
    ReprocessOptions ro = {.from_run = o->from_run, .kinds = kinds, .nkinds = 1, .sample = o->sample,
                           .taken_hint = "--report-only prints the table of the runs made earlier; --run-prefix P"
                                         " bakes off anew"};
    ReprocessCount *counts = NULL;
    int n = 0;
    int rc = reprocess_enqueue(c, cfg, &ro, t, b->n, &counts, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n && !o->json; i++)
        fprintf(out, "enqueued %ld jobs of kind %s into run %s (model %s)\n", counts[i].jobs, counts[i].kind,
                b->run[counts[i].target], cfg->models[b->model[counts[i].target]].name);
    free(counts);
    return 0;
}

int bakeoff_process(const TqConfig *cfg, const Bakeoff *b)
{
    int worst = RUN_EXIT_OK;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved >= 0)
        dup2(STDERR_FILENO, STDOUT_FILENO); /* the runs' summaries: stdout is the table's */
    for (int i = 0; i < b->n; i++) {
        RunOptions o;
        run_default_options(&o);
        o.drain = true;
        o.run_name = b->run[i];
        o.kinds_csv = b->kind->name;
        o.no_cache = true;
        o.progress = false;
        fprintf(stderr, "bakeoff: running %s (model %s)\n", b->run[i], cfg->models[b->model[i]].name);
        int rc = run_main(cfg, &o);
        if (rc != RUN_EXIT_OK && rc != RUN_EXIT_NOTHING_DONE && worst == RUN_EXIT_OK)
            worst = rc;
        fflush(stdout);
    }
    if (saved >= 0) {
        dup2(saved, STDOUT_FILENO);
        close(saved);
    }
    return worst;
}

/* Per run, in the order given ($1 runs, $2 models, $3 the pass bar). Columns: see Row. */
static const char *const SQL_TABLE =
    "WITH r AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(run_name, model, ord)),"
    " jj AS (SELECT r.ord, count(j.id) AS jobs,"
    "   count(j.id) FILTER (WHERE j.state = 'done') AS done,"
    "   count(j.id) FILTER (WHERE j.state IN ('failed', 'dead')) AS failed,"
    "   count(j.id) FILTER (WHERE j.state IN ('queued', 'running')) AS pending,"
    "   count(j.id) FILTER (WHERE j.expected IS NOT NULL) AS with_expected,"
    "   count(j.id) FILTER (WHERE j.state = 'done' AND j.expected IS NOT NULL"
    "     AND coalesce(tierq.normalize_answer(j.result) = tierq.normalize_answer(j.expected), false)) AS correct,"
    "   count(j.id) FILTER (WHERE j.state = 'done' AND j.quality >= $3::float8 - 1e-6) AS passed,"
    "   coalesce(sum(j.cost_usd), 0) AS jobs_cost"
    "  FROM r LEFT JOIN tierq.jobs j ON j.run_name = r.run_name GROUP BY r.ord),"
    " cc AS (SELECT r.ord, coalesce(sum(k.cost_usd), 0) AS cost,"
    "   coalesce(sum(k.cost_usd) FILTER (WHERE k.purpose = 'compress'), 0) AS compress_cost,"
    "   percentile_disc(0.5) WITHIN GROUP (ORDER BY k.latency_ms) FILTER (WHERE k.purpose = 'answer' AND k.status = 'ok') AS p50,"
    "   percentile_disc(0.95) WITHIN GROUP (ORDER BY k.latency_ms) FILTER (WHERE k.purpose = 'answer' AND k.status = 'ok') AS p95"
    "  FROM r LEFT JOIN tierq.calls k ON k.run_name = r.run_name GROUP BY r.ord)"
    " SELECT r.run_name, r.model, jj.jobs, jj.done, jj.failed, jj.pending, cc.cost, cc.compress_cost,"
    "   round(cc.cost * 1000 / nullif(jj.jobs, 0), 9) AS per_1k, cc.p50, cc.p95, jj.with_expected, jj.correct,"
    "   jj.passed, jj.jobs_cost"
    " FROM r JOIN jj USING (ord) JOIN cc USING (ord) ORDER BY r.ord";

enum { C_RUN, C_MODEL, C_JOBS, C_DONE, C_FAILED, C_PENDING, C_COST, C_COMPRESS, C_PER1K, C_P50, C_P95, C_WITH_EXP,
       C_CORRECT, C_PASSED, C_JOBS_COST };

typedef struct Row {
    long jobs, done, failed, pending, with_expected, correct, passed;
    double cost, compress, quality;
    bool ledger_differs;
} Row;

/* The bar a pinned answer's score must reach to count as passed: the kind's first tier's. */
static double pass_bar(const TqKind *k) { return k->ntiers > 1 ? k->tiers[0].accept : 0; }

static double model_price(const TqConfig *cfg, int m)
{
    return (double)cfg->models[m].prices.input + (double)cfg->models[m].prices.output;
}

/* The recommended model's index into b, or -1 (why in *why). */
static int recommend(const Bakeoff *b, const Row *rows, double margin, const char **why)
{
    double best = -1;
    for (int i = 0; i < b->n; i++) {
        if (rows[i].pending > 0) {
            *why = "jobs are still queued or running";
            return -1;
        }
        if (rows[i].quality > best)
            best = rows[i].quality;
    }
    long done = 0;
    for (int i = 0; i < b->n; i++)
        done += rows[i].done;
    if (done == 0) {
        *why = "no job was answered";
        return -1;
    }
    int pick = -1;
    double pick_cost = 0;
    for (int i = 0; i < b->n; i++) {
        if (rows[i].jobs == 0 || rows[i].quality < best - margin - 1e-9)
            continue;
        double per_job = (rows[i].cost - rows[i].compress) / (double)rows[i].jobs;
        if (pick < 0 || per_job < pick_cost - 1e-15 ||
            (fabs(per_job - pick_cost) <= 1e-15 && rows[i].quality > rows[pick].quality)) {
            pick = i;
            pick_cost = per_job;
        }
    }
    return pick;
}

/* The kind's tiers with model m first (see bakeoff.h) as a unified diff of its file, into diff. */
static int kind_change(const TqConfig *cfg, const TqKind *k, int m, Buf *diff, TqErr *err)
{
    KindFileTier t[8];
    int n = 0;
    t[n++] = (KindFileTier){.model = cfg->models[m].name, .accept = k->tiers[0].accept, .agree = NAN};
    for (int i = 1; i < k->ntiers && n < 8; i++) {
        int tm = k->tiers[i].model;
        if (tm == m || model_price(cfg, tm) <= model_price(cfg, m))
            continue;
        t[n++] = (KindFileTier){.model = cfg->models[tm].name, .accept = k->tiers[i].accept,
                                .agree = i + 1 < k->ntiers ? k->tiers[i].accept_if_agrees : NAN};
    }
    if (n > 1)
        t[n - 1].agree = NAN; /* never on the last tier */
    Buf old, nu;
    int rc = kindfile_read(k->file, BAKEOFF_MAX_FILE_BYTES, &old, err);
    if (rc)
        return rc;
    buf_init(&nu, BAKEOFF_MAX_FILE_BYTES);
    TqErr e2 = {0};
    if (kindfile_replace_tiers(old.data, old.len, t, n, &nu, &e2))
        rc = tq_err(err, TQ_EINVAL, "%s: %s", k->file, e2.msg);
    else if (kindfile_unified_diff(k->file, old.data, old.len, nu.data, nu.len, diff))
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    buf_free(&old);
    buf_free(&nu);
    return rc;
}

static void emit_text(Emit *e, const TqConfig *cfg, const BakeoffOptions *o, const Bakeoff *b, const PGresult *r,
                      const Row *rows, bool accuracy)
{
    emit(e, "bake-off of kind %s: jobs of run %s%s, each model alone (no escalation, no cache)\n", b->kind->name,
         o->from_run, o->sample > 0 ? " (a fixed sample)" : "");
    int w = 3; /* the run column as wide as its longest name */
    for (int i = 0; i < b->n; i++)
        if ((int)strlen(b->run[i]) > w)
            w = (int)strlen(b->run[i]);
    emit(e, "%-20s %-*s %6s %6s %6s %7s %10s %11s %7s %7s %16s\n", "model", w, "run", "jobs", "done", "failed", "pending",
         "cost $", "$ / 1k jobs", "p50 ms", "p95 ms", accuracy ? "accuracy" : "pass rate");
    for (int i = 0; i < b->n; i++) {
        char q[64];
        long num = accuracy ? rows[i].correct : rows[i].passed;
        long den = accuracy ? rows[i].with_expected : rows[i].jobs;
        if (den > 0)
            snprintf(q, sizeof q, "%.1f%% (%ld/%ld)", 100.0 * rows[i].quality, num, den);
        else
            snprintf(q, sizeof q, "-");
        /* dollars to the micro-dollar here; JSON keeps PostgreSQL's exact decimals */
        char cost[32], per1k[32];
        snprintf(cost, sizeof cost, "%.6f", atof(text_cell(r, i, C_COST)));
        snprintf(per1k, sizeof per1k, "%.6f", atof(text_cell(r, i, C_PER1K)));
        emit(e, "%-20s %-*s %6ld %6ld %6ld %7ld %10s %11s %7s %7s %16s\n", cfg->models[b->model[i]].name, w,
             b->run[i], rows[i].jobs, rows[i].done, rows[i].failed, rows[i].pending, cost, per1k,
             text_cell(r, i, C_P50), text_cell(r, i, C_P95), q);
    }
    if (accuracy)
        emit(e, "accuracy: normalised exact match of the answer with jobs.expected (tierq.normalize_answer); a failed "
                "job counts as wrong\n");
    else
        emit(e, "pass rate: done jobs whose score (the kind's checks%s) is at least %.2f, kind %s's first accept bar "
                "(the jobs have no expected answer)\n",
             b->kind->checks.judge_model >= 0 ? ", judge included" : "", pass_bar(b->kind), b->kind->name);
    emit(e, "cost: every ledger row of the run (tierq.calls: answers%s%s); latency: the run's answer calls\n",
         b->kind->checks.judge_model >= 0 ? ", judge" : "", b->kind->compress.enabled ? ", compression" : "");
    for (int i = 0; i < b->n; i++) {
        if (rows[i].compress > 0)
            emit(e, "  %s: $%s of it compression (shared by document: paid by the first run to meet it; left out "
                    "of the comparison)\n",
                 b->run[i], text_cell(r, i, C_COMPRESS));
        if (rows[i].ledger_differs)
            emit(e, "  warning: %s: the ledger's $%s differs from the jobs' $%s (calls serving jobs of other runs?)\n",
                 b->run[i], text_cell(r, i, C_COST), text_cell(r, i, C_JOBS_COST));
    }
}

int bakeoff_report(PGconn *c, const TqConfig *cfg, const BakeoffOptions *o, const Bakeoff *b, FILE *out, TqErr *err)
{
    Buf runs, models;
    pgarray_begin(&runs);
    pgarray_begin(&models);
    int rc = 0;
    for (int i = 0; i < b->n && !rc; i++)
        rc = pgarray_add_text(&runs, b->run[i]) || pgarray_add_text(&models, cfg->models[b->model[i]].name);
    rc = rc || pgarray_end(&runs) || pgarray_end(&models);
    char bar[32];
    snprintf(bar, sizeof bar, "%.6f", pass_bar(b->kind));
    const char *p[] = {runs.data, models.data, bar};
    PGresult *r = rc ? NULL : db_query(c, "bake-off table", SQL_TABLE, 3, p, err);
    buf_free(&runs);
    buf_free(&models);
    if (!r)
        return rc ? tq_err(err, TQ_ENOMEM, "out of memory") : TQ_EDB;
    Row rows[BAKEOFF_MAX_MODELS];
    long total = 0;
    bool accuracy = true;
    for (int i = 0; i < b->n && i < PQntuples(r); i++) {
        Row *w = &rows[i];
        w->jobs = atol(PQgetvalue(r, i, C_JOBS));
        w->done = atol(PQgetvalue(r, i, C_DONE));
        w->failed = atol(PQgetvalue(r, i, C_FAILED));
        w->pending = atol(PQgetvalue(r, i, C_PENDING));
        w->with_expected = atol(PQgetvalue(r, i, C_WITH_EXP));
        w->correct = atol(PQgetvalue(r, i, C_CORRECT));
        w->passed = atol(PQgetvalue(r, i, C_PASSED));
        w->cost = strtod(PQgetvalue(r, i, C_COST), NULL);
        w->compress = strtod(PQgetvalue(r, i, C_COMPRESS), NULL);
        w->ledger_differs = strcmp(PQgetvalue(r, i, C_COST), PQgetvalue(r, i, C_JOBS_COST)) != 0 &&
                            fabs(w->cost - strtod(PQgetvalue(r, i, C_JOBS_COST), NULL)) > 1e-12;
        total += w->jobs;
        if (w->with_expected == 0 && w->jobs > 0)
            accuracy = false;
    }
    for (int i = 0; i < PQntuples(r) && i < b->n && total > 0; i++)
        if (rows[i].jobs == 0) {
            /* a model whose run was never made has nothing to compare: no table, no recommendation */
            PQclear(r);
            return tq_err(err, TQ_EINVAL, "run %s has no jobs: model %s was not part of this bake-off (leave it"
                          " out, or bake it off without --report-only)", b->run[i], cfg->models[b->model[i]].name);
        }
    if (PQntuples(r) != b->n || total == 0) {
        PQclear(r);
        if (total == 0)
            return tq_err(err, TQ_EINVAL, "no bake-off run has jobs (runs %s, ...): enqueue them first (leave out --report-only)",
                          b->run[0]);
        return tq_err(err, TQ_EDB, "bake-off table: unexpected result shape");
    }
    for (int i = 0; i < b->n; i++) {
        long den = accuracy ? rows[i].with_expected : rows[i].jobs;
        rows[i].quality = den > 0 ? (double)(accuracy ? rows[i].correct : rows[i].passed) / (double)den : 0;
    }
    const char *why = NULL;
    int pick = recommend(b, rows, o->margin, &why);
    int pm = pick >= 0 ? b->model[pick] : -1;
    bool keep = pm >= 0 && pm == b->kind->tiers[0].model;
    Buf diff;
    buf_init(&diff, 0);
    if (pm >= 0 && !keep && (rc = kind_change(cfg, b->kind, pm, &diff, err))) {
        PQclear(r);
        buf_free(&diff);
        return rc;
    }
    int best = 0;
    for (int i = 1; i < b->n; i++)
        if (rows[i].quality > rows[best].quality)
            best = i;
    Emit e = {0};
    buf_init(&e.b, 0);
    const char *metric = accuracy ? "accuracy" : "pass rate";
    char rule[512];
    snprintf(rule, sizeof rule,
             "the cheapest model (cost per job, compression left out) whose %s is within %.1f points of the best "
             "(%s, %.1f%%)",
             metric, 100.0 * o->margin, cfg->models[b->model[best]].name, 100.0 * rows[best].quality);
    char change[300] = "";
    if (pm >= 0 && keep)
        snprintf(change, sizeof change, "keep: tiers[0].model of %s is already %s", b->kind->file, cfg->models[pm].name);
    else if (pm >= 0)
        snprintf(change, sizeof change, "set tiers[0].model to %s in %s", cfg->models[pm].name, b->kind->file);
    if (!o->json) {
        emit_text(&e, cfg, o, b, r, rows, accuracy);
        emit(&e, "rule: %s\n", rule);
        if (pm < 0)
            emit(&e, "recommendation: none (%s)\n", why);
        else {
            emit(&e, "recommendation: %s\n", change);
            if (diff.len > 0)
                emit(&e, "%s(the first tier's bar is kept; choose it anew with tierq calibrate)\n", diff.data);
        }
    } else {
        emit(&e, "{\"kind\": ");
        emit_json_str(&e, b->kind->name);
        emit(&e, ", \"from_run\": ");
        emit_json_str(&e, o->from_run);
        emit(&e, ", \"sample\": %ld, \"metric\": \"%s\", \"pass_bar\": %.6f, \"margin\": %.6f,\n \"models\": [",
             o->sample, accuracy ? "accuracy" : "pass_rate", pass_bar(b->kind), o->margin);
        for (int i = 0; i < b->n; i++) {
            emit(&e, "%s\n  {\"model\": ", i ? "," : "");
            emit_json_str(&e, cfg->models[b->model[i]].name);
            emit(&e, ", \"run\": ");
            emit_json_str(&e, b->run[i]);
            emit(&e,
                 ", \"jobs\": %ld, \"done\": %ld, \"failed\": %ld, \"pending\": %ld, \"cost_usd\": %s,"
                 " \"compress_cost_usd\": %s, \"cost_per_1k_jobs_usd\": %s, \"latency_p50_ms\": %s,"
                 " \"latency_p95_ms\": %s, \"with_expected\": %ld, \"correct\": %ld, \"passed\": %ld, \"quality\": %.6f}",
                 rows[i].jobs, rows[i].done, rows[i].failed, rows[i].pending, json_num(r, i, C_COST),
                 json_num(r, i, C_COMPRESS), json_num(r, i, C_PER1K), json_num(r, i, C_P50), json_num(r, i, C_P95),
                 rows[i].with_expected, rows[i].correct, rows[i].passed, rows[i].quality);
        }
        emit(&e, "],\n \"rule\": ");
        emit_json_str(&e, rule);
        emit(&e, ",\n \"recommendation\": ");
        if (pm < 0) {
            emit(&e, "null, \"no_recommendation\": ");
            emit_json_str(&e, why);
        } else {
            emit(&e, "{\"model\": ");
            emit_json_str(&e, cfg->models[pm].name);
            emit(&e, ", \"change\": ");
            emit_json_str(&e, change);
            emit(&e, ", \"diff\": ");
            emit_json_str(&e, diff.len ? diff.data : NULL);
            emit(&e, "}");
        }
        emit(&e, "}\n");
    }
    PQclear(r);
    buf_free(&diff);
    rc = e.rc;
    if (!rc && fwrite(e.b.data, 1, e.b.len, out) != e.b.len)
        rc = tq_err(err, TQ_EIO, "cannot write the table");
    else if (rc)
        tq_err(err, rc, "out of memory");
    buf_free(&e.b);
    return rc;
}
