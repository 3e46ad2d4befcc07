#include "migrate.h"

#include "buf.h"
#include "cost.h"
#include "db.h"
#include "migrations.h"
#include "pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any constant works; it only has to be the same in every tierq process. */
#define MIGRATE_LOCK_KEY "7244103921"

static const char *const SQL_BOOTSTRAP =
    "CREATE SCHEMA IF NOT EXISTS tierq;"
    "CREATE TABLE IF NOT EXISTS tierq.schema_migrations ("
    "  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())";

int migrate_apply(PGconn *c, int *applied, TqErr *err)
{
    int n = 0;
    int rc = db_exec(c, "begin", "BEGIN", 0, NULL, err);
    if (rc)
        return rc;
    const char *lock[] = {MIGRATE_LOCK_KEY};
    if ((rc = db_exec(c, "migration lock", "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock, err)) ||
        (rc = db_exec_script(c, "create schema", SQL_BOOTSTRAP, err)))
        goto cleanup;
    for (int i = 0; i < tq_migration_count; i++) {
        const TqMigration *m = &tq_migrations[i];
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *p[] = {ver, m->name};
        PGresult *r = db_query(c, "read applied migrations",
                               "SELECT 1 FROM tierq.schema_migrations WHERE version = $1::int", 1, p, err);
        if (!r) {
            rc = TQ_EDB;
            goto cleanup;
        }
        int done = PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        char what[160];
        snprintf(what, sizeof what, "migration %s", m->name);
        if ((rc = db_exec_script(c, what, m->sql, err)) ||
            (rc = db_exec(c, "record migration",
                          "INSERT INTO tierq.schema_migrations (version, name) VALUES ($1::int, $2)", 2, p, err)))
            goto cleanup;
        n++;
    }
    rc = db_exec(c, "commit", "COMMIT", 0, NULL, err);
    if (!rc && applied)
        *applied = n;
    return rc;
cleanup:
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

int migrate_latest_version(void) { return tq_migrations[tq_migration_count - 1].version; }

int migrate_current_version(PGconn *c, TqErr *err)
{
    PGresult *r = db_query(c, "read schema version",
                           "SELECT CASE WHEN to_regclass('tierq.schema_migrations') IS NULL THEN 0 "
                           "ELSE (SELECT coalesce(max(version), 0) FROM tierq.schema_migrations) END",
                           0, NULL, err);
    if (!r)
        return TQ_EDB;
    int v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* A price in micro-USD per million tokens, as the decimal text of tierq.models (numeric(14,6)). */
static void price_text(char *out, size_t cap, int64_t micro) { cost_format_usd(out, cap, micro * 1000000, 6); }

int migrate_sync_config(PGconn *c, const TqConfig *cfg, TqErr *err)
{
    enum { M_NAME, M_PROV, M_IN, M_CIN, M_OUT, M_N };
    enum { K_NAME, K_HASH, K_FIRST, K_BASE, K_ATT, K_PARAMS, K_SHADOW, K_N };
    Buf m[M_N], k[K_N];
    for (int i = 0; i < M_N; i++)
        pgarray_begin(&m[i]);
    for (int i = 0; i < K_N; i++)
        pgarray_begin(&k[i]);
    int rc = 0;
    for (int i = 0; i < cfg->nmodels && !rc; i++) {
        const TqModel *md = &cfg->models[i];
        char in[32], cin[32], out[32];
        price_text(in, sizeof in, md->prices.input);
        price_text(cin, sizeof cin, md->prices.cached_input);
        price_text(out, sizeof out, md->prices.output);
        rc = pgarray_add_text(&m[M_NAME], md->name) || pgarray_add_text(&m[M_PROV], cfg->providers[md->provider].name) ||
             pgarray_add_text(&m[M_IN], in) || pgarray_add_text(&m[M_CIN], cin) || pgarray_add_text(&m[M_OUT], out);
    }
    for (int i = 0; i < cfg->nkinds && !rc; i++) {
        const TqKind *kd = &cfg->kinds[i];
        char att[16], shadow[128];
        snprintf(att, sizeof att, "%d", kd->max_attempts);
        snprintf(shadow, sizeof shadow, "{\"rate\": %.6g, \"min_agreement\": %.6g, \"window\": %d, \"boost\": %.6g}",
                 kd->shadow.rate, kd->shadow.min_agreement, kd->shadow.window, kd->shadow.boost);
        Buf params;
        buf_init(&params, 0);
        rc = pgarray_add_text(&k[K_NAME], kd->name) || pgarray_add_text(&k[K_HASH], kd->hash) ||
             pgarray_add_text(&k[K_FIRST], cfg->models[kd->tiers[0].model].name) ||
             pgarray_add_text(&k[K_BASE], cfg->models[kd->baseline_model].name) || pgarray_add_text(&k[K_ATT], att) ||
             config_kind_params_json(kd, &params) || pgarray_add_text(&k[K_PARAMS], params.data) ||
             pgarray_add_text(&k[K_SHADOW], shadow);
        buf_free(&params);
    }
    for (int i = 0; i < M_N && !rc; i++)
        rc = pgarray_end(&m[i]);
    for (int i = 0; i < K_N && !rc; i++)
        rc = pgarray_end(&k[i]);
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory building config sync");
        goto cleanup;
    }
    const char *mp[] = {m[0].data, m[1].data, m[2].data, m[3].data, m[4].data};
    const char *kp[] = {k[0].data, k[1].data, k[2].data, k[3].data, k[4].data, k[5].data, k[6].data};
    if ((rc = db_exec(c, "begin", "BEGIN", 0, NULL, err)))
        goto cleanup;
    rc = db_exec(c, "sync models",
                 "INSERT INTO tierq.models AS t (name, provider, input_usd_per_mtok, cached_input_usd_per_mtok, "
                 "  output_usd_per_mtok, synced_at) "
                 "SELECT u.n, u.p, u.i, u.c, u.o, now() "
                 "FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[]) AS u(n, p, i, c, o) "
                 "ON CONFLICT (name) DO UPDATE SET provider = excluded.provider, "
                 "  input_usd_per_mtok = excluded.input_usd_per_mtok, "
                 "  cached_input_usd_per_mtok = excluded.cached_input_usd_per_mtok, "
                 "  output_usd_per_mtok = excluded.output_usd_per_mtok, synced_at = now() "
                 "WHERE (t.provider, t.input_usd_per_mtok, t.cached_input_usd_per_mtok, t.output_usd_per_mtok) "
                 "  IS DISTINCT FROM (excluded.provider, excluded.input_usd_per_mtok, "
                 "  excluded.cached_input_usd_per_mtok, excluded.output_usd_per_mtok)",
                 5, mp, err);
    if (!rc)
        rc = db_exec(c, "sync kinds",
                     "INSERT INTO tierq.kinds AS t (name, config_hash, first_model, baseline_model, max_attempts, "
                     "  params, shadow, in_config, synced_at) "
                     "SELECT u.n, u.h, u.f, u.b, u.a, u.p, u.s, true, now() "
                     "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) "
                     "  AS u(n, h, f, b, a, p, s) "
                     "ON CONFLICT (name) DO UPDATE SET config_hash = excluded.config_hash, "
                     "  first_model = excluded.first_model, baseline_model = excluded.baseline_model, "
                     "  max_attempts = excluded.max_attempts, params = excluded.params, shadow = excluded.shadow,"
                     "  in_config = true, synced_at = now() "
                     "WHERE (t.config_hash, t.params, t.shadow, t.in_config) IS DISTINCT FROM "
                     "  (excluded.config_hash, excluded.params, excluded.shadow, true)",
                     7, kp, err);
    if (!rc)
        rc = db_exec(c, "retire kinds",
                     "UPDATE tierq.kinds SET in_config = false, synced_at = now() "
                     "WHERE in_config AND NOT (name = ANY ($1::text[]))",
                     1, kp, err);
    if (!rc)
        rc = db_exec(c, "commit", "COMMIT", 0, NULL, err);
    else
        PQclear(PQexec(c, "ROLLBACK"));
cleanup:
    for (int i = 0; i < M_N; i++)
        buf_free(&m[i]);
    for (int i = 0; i < K_N; i++)
        buf_free(&k[i]);
    return rc;
}
