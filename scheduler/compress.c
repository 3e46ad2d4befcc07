#include "compress.h"

#include "cache.h"
#include "db.h"
#include "log.h"
#include "openai.h"
#include "pgarray.h"
#include "preclean.h"
#include "sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A compressed context is at most what a context may be (sql/006: 4 MiB); stored ones above are refused. */
#define COMPRESS_MAX_TEXT (4 << 20)

void compress_need_free(CompressNeed *need)
{
    free(need->cleaned);
    *need = (CompressNeed){0};
}

static void compress_key(const TqConfig *cfg, const TqKind *kind, const char *cleaned, const char *question,
                         bool prompt, char hex[65])
{
    const TqModel *m = &cfg->models[kind->compress.model];
    Sha256 s;
    sha256_init(&s);
    sha256_field(&s, "tierq-compress-v1");
    sha256_field(&s, prompt ? "prompt" : "context");
    sha256_field(&s, cleaned);
    /* the compressor as it is asked: our name, the name sent, where it is, the target */
    sha256_field(&s, m->name);
    sha256_field(&s, m->api_model);
    sha256_field(&s, cfg->providers[m->provider].base_url);
    sha256_field_int(&s, kind->compress.target_tokens);
    sha256_field(&s, question);
    uint8_t d[SHA256_BYTES];
    sha256_final(&s, d);
    sha256_hex(d, hex);
}

QueueJob *compress_apply(QueueJob *job, const char *text, bool prompt, int compression, int tokens_before,
                         int tokens_after, int64_t spent_pico)
{
    QueueJob *nj = prompt ? job_with_prompt(job, text, strlen(text)) : job_with_context(job, text, strlen(text));
    job_free(job);
    if (!nj)
        return NULL;
    nj->compression = compression;
    nj->context_tokens_before = tokens_before;
    nj->context_tokens_after = tokens_after;
    nj->cost_so_far_pico += spent_pico;
    return nj;
}

int compress_prepare(const TqConfig *cfg, const TqKind *kind, QueueJob **jobp, CompressNeed *need)
{
    *need = (CompressNeed){0};
    QueueJob *job = *jobp;
    if (!kind || !kind->compress.enabled || job->original_context || job->original_prompt)
        return 0;
    /* the context; or, for a kind that says so, the prompt of a job without one */
    bool prompt = !(job->context && *job->context);
    if (prompt && !kind->compress.prompt)
        return 0;
    const char *text = prompt ? job->prompt : job->context;
    size_t len = strlen(text);
    int64_t tokens = oai_estimate_tokens(text, len);
    if (tokens <= kind->compress.threshold_tokens)
        return 0;
    Buf clean;
    buf_init(&clean, 0);
    if (preclean_context(text, len, &clean) != 0) {
        buf_free(&clean);
        return TQ_ENOMEM;
    }
    int64_t cleaned = oai_estimate_tokens(clean.data ? clean.data : "", clean.len);
    if (cleaned <= kind->compress.threshold_tokens) {
        /* free: the cleaned context is what the tiers see */
        QueueJob *nj = prompt ? job_with_prompt(job, clean.data ? clean.data : "", clean.len)
                              : job_with_context(job, clean.data ? clean.data : "", clean.len);
        buf_free(&clean);
        if (!nj)
            return TQ_ENOMEM;
        nj->compression = JOB_COMPRESSION_CLEANED;
        nj->context_tokens_before = (int)tokens;
        nj->context_tokens_after = (int)cleaned;
        job_free(job);
        *jobp = nj;
        return 0;
    }
    need->needed = true;
    need->prompt = prompt;
    need->tokens_before = (int)cleaned;
    need->cleaned = buf_take(&clean);
    if (!need->cleaned) {
        need->needed = false;
        return TQ_ENOMEM;
    }
    compress_key(cfg, kind, need->cleaned, kind->compress.question_aware && !prompt ? job->prompt : NULL, prompt,
                 need->key);
    return 0;
}

static const char *const SQL_PROBE =
    "SELECT c.key, c.text_z, c.raw_len, c.tokens_after, c.tokens_before FROM unnest($1::text[]) AS u(key)"
    " CROSS JOIN LATERAL (SELECT * FROM tierq.compressed e WHERE e.key = u.key AND e.expires_at > now() LIMIT 1) c";
static const char *const SQL_TOUCH =
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) AS u(key, n, ttl)),"
    " lk AS (SELECT c.key FROM tierq.compressed c WHERE c.key = ANY ($1::text[]) ORDER BY c.key FOR UPDATE)"
    " UPDATE tierq.compressed c SET uses = c.uses + u.n, last_used_at = now(),"
    "   expires_at = greatest(c.expires_at, now() + make_interval(secs => u.ttl))"
    " FROM lk JOIN u ON u.key = lk.key WHERE c.key = lk.key";

int compress_lookup(PGconn *c, const TqConfig *cfg, QueueJob *const *jobs, const CompressNeed *needs, int n,
                    char **texts, int *after, TqErr *err)
{
    for (int i = 0; i < n; i++) {
        texts[i] = NULL;
        after[i] = 0;
    }
    Buf keys;
    pgarray_begin(&keys);
    int rc = 0, nkeys = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!needs[i].needed)
            continue;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = needs[j].needed && strcmp(needs[j].key, needs[i].key) == 0;
        if (!seen) {
            rc = pgarray_add_text(&keys, needs[i].key);
            nkeys++;
        }
    }
    rc = rc || pgarray_end(&keys);
    if (rc || nkeys == 0) {
        buf_free(&keys);
        return rc ? tq_err(err, TQ_ENOMEM, "out of memory") : 0;
    }
    const char *p[1] = {keys.data};
    PGresult *r = db_query(c, "compressed context lookup", SQL_PROBE, 1, p, err);
    buf_free(&keys);
    if (!r)
        return TQ_EDB;
    Buf touch, counts, ttls, bad;
    pgarray_begin(&touch);
    pgarray_begin(&counts);
    pgarray_begin(&ttls);
    pgarray_begin(&bad);
    int ntouch = 0, nbad = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *key = PQgetvalue(r, row, 0);
        size_t flen = 0;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 1), &flen);
        Buf text;
        buf_init(&text, 0);
        char why[200] = "its bytes could not be read";
        int tokens_after = atoi(PQgetvalue(r, row, 3));
        bool ok = bytes && cache_unpack_text(bytes, flen, atoll(PQgetvalue(r, row, 2)), COMPRESS_MAX_TEXT, &text, why,
                                             sizeof why) == 0;
        if (ok && !(tokens_after > 0 && tokens_after < atoi(PQgetvalue(r, row, 4)))) {
            ok = false;
            snprintf(why, sizeof why, "its token counts (%d after, %s before) are not a compression", tokens_after,
                     PQgetvalue(r, row, 4));
        }
        if (bytes)
            PQfreemem(bytes);
        int uses = 0, ttl = 0;
        for (int i = 0; ok && i < n; i++) {
            if (!needs[i].needed || texts[i] || strcmp(needs[i].key, key) != 0)
                continue;
            if ((texts[i] = strdup(text.data)) != NULL) {
                after[i] = tokens_after;
                uses++;
                const TqKind *kd = config_kind(cfg, jobs[i]->kind);
                ttl = kd ? kd->cache.ttl_s : 0;
            }
        }
        buf_free(&text);
        if (ok && uses > 0 && !pgarray_add_text(&touch, key) && !pgarray_add_int64(&counts, uses) &&
            !pgarray_add_int64(&ttls, ttl))
            ntouch++;
        if (!ok) {
            log_msg(LOG_WARN, "compress", "stored compressed context %.16s... cannot be used (%s): compressed again, and"
                    " the entry is deleted", key, why);
            if (pgarray_add_text(&bad, key) == 0)
                nbad++;
        }
    }
    PQclear(r);
    TqErr e2 = {0};
    if (ntouch > 0 && !pgarray_end(&touch) && !pgarray_end(&counts) && !pgarray_end(&ttls)) {
        const char *tp[3] = {touch.data, counts.data, ttls.data};
        if (db_exec(c, "compressed context uses", SQL_TOUCH, 3, tp, &e2))
            log_msg(LOG_WARN, "compress", "stored compressions used but not counted: %s", e2.msg);
    }
    if (nbad > 0 && !pgarray_end(&bad)) {
        const char *bp[1] = {bad.data};
        if (db_exec(c, "compressed context delete",
                    "DELETE FROM tierq.compressed WHERE key IN (SELECT key FROM tierq.compressed WHERE key = ANY ($1::text[])"
                    " ORDER BY key FOR UPDATE)", 1, bp, &e2))
            log_msg(LOG_WARN, "compress", "%s", e2.msg);
    }
    buf_free(&touch);
    buf_free(&counts);
    buf_free(&ttls);
    buf_free(&bad);
    return 0;
}

int compress_upkeep(PGconn *c, int limit, int64_t *deleted, TqErr *err)
{
    char lim[24];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[1] = {lim};
    /* through the (kind, expires_at) index, kind by kind (tierq.kinds holds every kind ever synced) */
    PGresult *r = db_query(c, "compressed context expiry",
                           "DELETE FROM tierq.compressed WHERE key IN (SELECT e.key FROM tierq.kinds k CROSS JOIN LATERAL"
                           " (SELECT c.key FROM tierq.compressed c WHERE c.kind = k.name AND c.expires_at <= now()"
                           "  ORDER BY c.expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) e LIMIT $1)",
                           1, p, err);
    if (!r)
        return TQ_EDB;
    *deleted = atoll(PQcmdTuples(r));
    PQclear(r);
    return 0;
}
