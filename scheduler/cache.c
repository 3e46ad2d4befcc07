#include "cache.h"

#include "cachekey.h"
#include "cost.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "pgarray.h"
#include "utf8.h"
#include "zpack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job's params.temperature and params.cache, where given (the INSERT check and the claim's
 * parse hold their types; anything unreadable here leaves the defaults). A job pinned to one model
 * (params.model) never uses the cache: it is measuring that model, and its answer is not the kind's. */
static void read_params(const QueueJob *job, double *temperature, bool *cache)
{
    if (!job->params || strcmp(job->params, "{}") == 0)
        return;
    JsonDoc d;
    TqErr err = {0};
    if (json_parse(&d, job->params, strlen(job->params), 4096, &err) != 0)
        return;
    int v = json_get(&d, 0, "temperature");
    double t;
    if (v >= 0 && json_double(&d, v, &t) == 0)
        *temperature = t;
    v = json_get(&d, 0, "cache");
    bool on;
    if (v >= 0 && json_bool(&d, v, &on) == 0)
        *cache = on;
    if (json_get(&d, 0, "model") >= 0)
        *cache = false;
    json_doc_free(&d);
}

void cache_prepare_job(const TqConfig *cfg, const TqKind *kind, QueueJob *job, bool no_cache, bool read_only,
                       bool all_tiers)
{
    job->cache_key[0] = '\0';
    job->cache_flags = 0;
    if (!kind || !kind->cache.enabled || no_cache || all_tiers)
        return;
    /* the job's temperature, else the kind's (0 unless its file says otherwise: always sent) */
    double temperature = kind->temperature;
    bool wanted = true;
    read_params(job, &temperature, &wanted);
    if (!wanted || (!(temperature == 0) && !kind->cache.nondeterministic))
        return;
    cache_key(cfg, kind, job, job->cache_key);
    job->cache_flags = JOB_CACHE_LOOKUP | (read_only ? 0u : JOB_CACHE_STORE);
}

bool cache_answer_reusable(const CallJob *cj)
{
    if (cj->outcome != CALL_JOB_DONE || cj->cache_hit || !cj->job || !cj->result || !cj->reason ||
        strlen(cj->result) > CACHE_MAX_ANSWER)
        return false;
    return strcmp(cj->reason, "accepted") == 0 || strcmp(cj->reason, "agreed") == 0 ||
           strcmp(cj->reason, "final_tier") == 0;
}

bool cache_answer_storable(const CallJob *cj)
{
    return cache_answer_reusable(cj) && (cj->job->cache_flags & JOB_CACHE_STORE);
}

void cache_hit_free(CacheHit *h)
{
    if (!h)
        return;
    free(h->answer);
    h->answer = NULL;
}

void cache_complete_job(CallJob *cj, CacheHit *h)
{
    cj->outcome = CALL_JOB_DONE;
    free(cj->result);
    cj->result = h->answer;
    h->answer = NULL;
    cj->quality = h->quality;
    cj->reason = "cache_hit";
    cj->answer_tier = h->tier;
    cj->answer_model = h->model;
    cj->baseline_pico = h->baseline_pico;
    cj->cache_hit = true;
    cj->cache_saved_pico = h->cost_pico;
}

static const unsigned char ZSTD_MAGIC[4] = {0x28, 0xB5, 0x2F, 0xFD};

static bool is_zstd_frame(const void *bytes, size_t n) { return n >= 4 && memcmp(bytes, ZSTD_MAGIC, 4) == 0; }

/* Below this a frame (about 17 bytes of header and checksum) is never smaller than the text: measured
 * on the demo's answers, not one of 12,223 short ones shrank. */
#define CACHE_COMPRESS_MIN 128

int cache_pack_answer(const char *answer, size_t len, int level, Buf *out, TqErr *err)
{
    Buf z;
    buf_init(&z, 0);
    bool magic = is_zstd_frame(answer, len); /* not UTF-8: always framed, so it cannot pass for one */
    int rc = len >= CACHE_COMPRESS_MIN || magic ? zpack_pack(answer, len, level, &z, err) : 0;
    const unsigned char *bytes = (const unsigned char *)z.data;
    size_t n = z.len;
    /* Short answers (a label, a sentence) come out larger as a frame (about 17 bytes of header and
     * checksum): they are stored as they are. Text never starts with the frame's magic (0xB5 cannot
     * follow '(' in UTF-8), so the first four bytes tell the two apart. */
    if (!rc && !magic && (len < CACHE_COMPRESS_MIN || z.len >= len)) {
        bytes = (const unsigned char *)answer;
        n = len;
    }
    if (!rc)
        rc = buf_puts(out, "\\x");
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char b = bytes[i];
        char two[2] = {hexd[b >> 4], hexd[b & 15]};
        rc = buf_append(out, two, 2);
    }
    buf_free(&z);
    return rc;
}

/* The probe reads, locks nothing, and costs one primary-key probe per key whatever the table's size:
 * the LIMIT keeps the planner from turning it into a scan of the whole cache (which it chose for
 * "key = ANY(...)" on a table of 20,000 entries: 11 ms a claim, growing with the cache). */
static const char *const SQL_PROBE =
    "SELECT c.key, c.answer_z, c.raw_len, c.model, c.tier, c.quality, c.cost_usd, c.baseline_cost_usd"
    " FROM unnest($1::text[]) AS u(key)"
    " CROSS JOIN LATERAL (SELECT * FROM tierq.cache e WHERE e.key = u.key AND e.expires_at > now() LIMIT 1) c";
/* Only for the keys served: count the hits and slide the expiry. Locked in key order, like every
 * statement that locks several entries: two claims that share keys wait, never in a circle. */
static const char *const SQL_TOUCH =
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) AS u(key, n, ttl)),"
    " lk AS (SELECT c.key FROM tierq.cache c WHERE c.key = ANY ($1::text[]) ORDER BY c.key FOR UPDATE)"
    " UPDATE tierq.cache c SET hits = c.hits + u.n, last_hit_at = now(), last_used_at = now(),"
    "   expires_at = greatest(c.expires_at, now() + make_interval(secs => u.ttl))"
    " FROM lk JOIN u ON u.key = lk.key WHERE c.key = lk.key";

/* The claim's asking jobs, as indices sorted by key: each key once in the lookup, and a returned
 * row finds its jobs by binary search (claims of thousands stay O(n log n)). */
static int by_key(const void *a, const void *b, void *jobs)
{
    QueueJob *const *j = jobs;
    return strcmp(j[*(const int *)a]->cache_key, j[*(const int *)b]->cache_key);
}

/* The first position in order[0..m) whose job's key is key, or m. */
static int first_with_key(QueueJob *const *jobs, const int *order, int m, const char *key)
{
    int lo = 0, hi = m;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(jobs[order[mid]]->cache_key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int cache_unpack_text(const unsigned char *bytes, size_t n, long long raw, size_t max_len, Buf *out, char *why,
                      size_t whycap)
{
    TqErr err = {0};
    size_t start = out->len;
    if (raw < 1 || (unsigned long long)raw > max_len)
        snprintf(why, whycap, "its recorded length %lld is out of range (1 to %zu)", raw, max_len);
    else if (!is_zstd_frame(bytes, n) && (n != (size_t)raw || buf_append(out, (const char *)bytes, n) != 0))
        snprintf(why, whycap, "it holds %zu bytes as they are (not a zstd frame), not the %lld recorded", n, raw);
    else if (is_zstd_frame(bytes, n) && zpack_unpack(bytes, n, (size_t)raw, max_len, out, &err) != 0)
        snprintf(why, whycap, "%.150s", err.msg);
    else if (!out->data || strlen(out->data + start) != (size_t)raw) /* a Buf keeps a NUL after its data */
        snprintf(why, whycap, "its text holds a NUL byte");
    else if (!utf8_valid(out->data + start, (size_t)raw))
        snprintf(why, whycap, "its text is not UTF-8");
    else if (!out->data[start + strspn(out->data + start, " \t\r\n")])
        snprintf(why, whycap, "its text is blank");
    else
        return 0;
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return TQ_EINVAL;
}

/* Every check an entry must pass to be served. The table is only written by tierq, but a row is
 * input like any other: one whose answer is empty, not UTF-8, larger than a response may be, or whose
 * model, tier, quality or costs could not have come from this kind would put a job in `done` without
 * a real answer, fail its write-back (quality out of range) again and again, or skew the report.
 * Decodes the answer into text (NUL-terminated) or says why not. */
static bool entry_servable(const TqConfig *cfg, const TqKind *kd, const PGresult *r, int i, Buf *text,
                           CacheHit *out, char *why, size_t whycap)
{
    size_t flen = 0;
    unsigned char *frame = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 1), &flen);
    long long raw = atoll(PQgetvalue(r, i, 2));
    const char *model_name = PQgetvalue(r, i, 3);
    int tier = atoi(PQgetvalue(r, i, 4));
    double q = PQgetisnull(r, i, 5) ? NAN : atof(PQgetvalue(r, i, 5));
    int64_t cost = -1, base = -1;
    bool ok = false;
    if (!frame)
        snprintf(why, whycap, "its bytes could not be read");
    else if (!kd || tier < 1 || tier > kd->ntiers || strcmp(cfg->models[kd->tiers[tier - 1].model].name, model_name) != 0)
        snprintf(why, whycap, "its model %.64s at tier %d is not the kind's", model_name, tier);
    else if (!PQgetisnull(r, i, 5) && !(q >= 0 && q <= 1))
        snprintf(why, whycap, "its quality %.32s is not between 0 and 1", PQgetvalue(r, i, 5));
    else if (cost_parse_usd(PQgetvalue(r, i, 6), &cost) != 0 || cost_parse_usd(PQgetvalue(r, i, 7), &base) != 0 ||
             cost > CACHE_MAX_USD * COST_PICO_PER_USD || base > CACHE_MAX_USD * COST_PICO_PER_USD)
        snprintf(why, whycap, "its costs are not plausible");
    else
        ok = cache_unpack_text(frame, flen, raw, CACHE_MAX_ANSWER, text, why, whycap) == 0;
    if (frame)
        PQfreemem(frame);
    if (ok)
        *out = (CacheHit){.model = kd->tiers[tier - 1].model, .tier = tier - 1, .quality = q, .cost_pico = cost,
                          .baseline_pico = base};
    return ok;
}

/* Fill every job whose key is row i's from row i of r; false when the row cannot be served. An
 * entry over what is left of the lookup's byte budget is a miss, kept (*over set). */
static bool serve_row(const TqConfig *cfg, const PGresult *r, int i, QueueJob *const *jobs, const int *order, int m,
                      CacheHit *hits, int *nhits, int64_t *budget, bool *over, char *why, size_t whycap)
{
    const char *key = PQgetvalue(r, i, 0);
    int at = first_with_key(jobs, order, m, key);
    const TqKind *kd = at < m ? config_kind(cfg, jobs[order[at]]->kind) : NULL;
    long long raw = atoll(PQgetvalue(r, i, 2));
    *over = false;
    if (raw > *budget) {
        *over = true;
        return false;
    }
    Buf text;
    buf_init(&text, 0);
    CacheHit proto;
    bool ok = entry_servable(cfg, kd, r, i, &text, &proto, why, whycap);
    if (ok) {
        *budget -= raw;
        for (int k = at; k < m && strcmp(jobs[order[k]]->cache_key, key) == 0; k++) {
            int j = order[k];
            if (hits[j].answer)
                continue;
            hits[j] = proto;
            hits[j].answer = strdup(text.data);
            if (hits[j].answer)
                (*nhits)++;
        }
    }
    buf_free(&text);
    return ok;
}

int cache_lookup(PGconn *c, const TqConfig *cfg, QueueJob *const *jobs, int n, CacheHit *hits, int *nhits, TqErr *err)
{
    *nhits = 0;
    for (int i = 0; i < n; i++)
        hits[i] = (CacheHit){0};
    Buf keys, touch, counts, ttls;
    pgarray_begin(&keys);
    pgarray_begin(&touch);
    pgarray_begin(&counts);
    pgarray_begin(&ttls);
    int rc = 0, nkeys = 0, m = 0, ntouch = 0;
    int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order)
        rc = TQ_ENOMEM;
    for (int i = 0; i < n && !rc; i++)
        if (jobs[i]->cache_flags & JOB_CACHE_LOOKUP)
            order[m++] = i;
    if (!rc)
        qsort_r(order, (size_t)m, sizeof *order, by_key, (void *)jobs);
    /* each key once, in key order */
    for (int k = 0; k < m && !rc; k++)
        if (k == 0 || strcmp(jobs[order[k]]->cache_key, jobs[order[k - 1]]->cache_key) != 0) {
            rc = pgarray_add_text(&keys, jobs[order[k]]->cache_key);
            nkeys++;
        }
    rc = rc || pgarray_end(&keys);
    PGresult *r = NULL;
    if (rc)
        rc = tq_err(err, TQ_ENOMEM, "out of memory building the cache lookup");
    else if (nkeys > 0) {
        const char *p[1] = {keys.data};
        r = db_query(c, "cache lookup", SQL_PROBE, 1, p, err);
        if (!r)
            rc = TQ_EDB;
    }
    Buf bad;
    pgarray_begin(&bad);
    int nbad = 0;
    int64_t budget = CACHE_LOOKUP_BYTES;
    for (int i = 0; r && i < PQntuples(r); i++) {
        char why[200];
        const char *key = PQgetvalue(r, i, 0);
        bool over = false;
        if (serve_row(cfg, r, i, jobs, order, m, hits, nhits, &budget, &over, why, sizeof why)) {
            /* the hit's count: every job of the claim with its key (the rows come in key order) */
            int at = first_with_key(jobs, order, m, key), same = 0;
            while (at + same < m && strcmp(jobs[order[at + same]]->cache_key, key) == 0)
                same++;
            const TqKind *kd = m > at ? config_kind(cfg, jobs[order[at]]->kind) : NULL;
            if (pgarray_add_text(&touch, key) == 0 && pgarray_add_int64(&counts, same) == 0 &&
                pgarray_add_int64(&ttls, kd ? kd->cache.ttl_s : 0) == 0)
                ntouch++;
            continue;
        }
        if (over)
            continue; /* not now: this claim's hits hold enough answer bytes; its job goes to a model */
        log_msg(LOG_WARN, "cache", "entry %.16s... cannot be served (%s): a miss, and the entry is deleted",
                PQgetvalue(r, i, 0), why);
        if (pgarray_add_text(&bad, PQgetvalue(r, i, 0)) == 0)
            nbad++;
    }
    if (r)
        PQclear(r);
    /* a hit whose count could not be written is still a hit: the entry may expire a little early */
    if (ntouch > 0 && pgarray_end(&touch) == 0 && pgarray_end(&counts) == 0 && pgarray_end(&ttls) == 0) {
        TqErr e2 = {0};
        const char *p[3] = {touch.data, counts.data, ttls.data};
        if (db_exec(c, "cache hits", SQL_TOUCH, 3, p, &e2))
            log_msg(LOG_WARN, "cache", "hits served but not counted: %s", e2.msg);
    }
    if (nbad > 0 && pgarray_end(&bad) == 0) {
        TqErr e2 = {0};
        const char *p[1] = {bad.data};
        /* locked in key order, like every statement that locks several entries */
        if (db_exec(c, "cache delete unservable",
                    "DELETE FROM tierq.cache WHERE key IN (SELECT key FROM tierq.cache WHERE key = ANY ($1::text[])"
                    " ORDER BY key FOR UPDATE)", 1, p, &e2))
            log_msg(LOG_WARN, "cache", "%s", e2.msg);
    }
    buf_free(&bad);
    free(order);
    buf_free(&keys);
    buf_free(&touch);
    buf_free(&counts);
    buf_free(&ttls);
    if (rc)
        for (int i = 0; i < n; i++)
            cache_hit_free(&hits[i]);
    if (rc)
        *nhits = 0;
    return rc;
}

/* Bounded deletes: rows another process is deleting are skipped, not waited for. */
/* Per kind through the (kind, last_used_at) index: an entry unused for the kind's ttl_s ($2, $3) has
 * expired. tierq.kinds keeps every kind ever synced, so entries of a kind whose file was removed go
 * too, after the longest ttl_s there is (366 days). */
static const char *const SQL_EXPIRE =
    "DELETE FROM tierq.cache WHERE key IN (SELECT e.key FROM tierq.kinds k"
    " LEFT JOIN unnest($2::text[], $3::int[]) AS t(kind, ttl) ON t.kind = k.name CROSS JOIN LATERAL"
    " (SELECT c.key FROM tierq.cache c WHERE c.kind = k.name"
    "   AND c.last_used_at <= now() - make_interval(secs => coalesce(t.ttl, 366 * 86400)) AND c.expires_at <= now()"
    "  ORDER BY c.last_used_at LIMIT $1 FOR UPDATE SKIP LOCKED) e LIMIT $1)";
/* Per kind, the entries past its max_entries in order of last use. */
static const char *const SQL_EVICT_KIND =
    "DELETE FROM tierq.cache WHERE key IN (SELECT key FROM tierq.cache WHERE kind = $1"
    " ORDER BY last_used_at DESC, key DESC OFFSET $2 LIMIT $3 FOR UPDATE SKIP LOCKED)";
/* Over the byte budget: the least recently used entries until their bytes cover the excess. */
static const char *const SQL_EVICT_BYTES =
    "WITH total AS (SELECT coalesce(sum(octet_length(answer_z)), 0) AS b FROM tierq.cache),"
    " old AS (SELECT key, sum(octet_length(answer_z)) OVER (ORDER BY last_used_at, key) AS upto,"
    "   octet_length(answer_z) AS own"
    "   FROM (SELECT key, answer_z, last_used_at FROM tierq.cache ORDER BY last_used_at, key LIMIT $2"
    "     FOR UPDATE SKIP LOCKED) o)"
    " DELETE FROM tierq.cache c USING old, total"
    " WHERE c.key = old.key AND total.b > $1::bigint AND old.upto - old.own < total.b - $1::bigint"
    " RETURNING octet_length(c.answer_z)";

int cache_upkeep(PGconn *c, const TqConfig *cfg, int limit, CacheUpkeep *out, TqErr *err)
{
    *out = (CacheUpkeep){0};
    char lim[24], cap[24];
    snprintf(lim, sizeof lim, "%d", limit);
    Buf kinds, ttls;
    pgarray_begin(&kinds);
    pgarray_begin(&ttls);
    int rc = 0;
    for (int k = 0; k < cfg->nkinds && !rc; k++)
        rc = pgarray_add_text(&kinds, cfg->kinds[k].name) || pgarray_add_int64(&ttls, cfg->kinds[k].cache.ttl_s);
    rc = rc || pgarray_end(&kinds) || pgarray_end(&ttls);
    const char *p1[3] = {lim, kinds.data, ttls.data};
    PGresult *r = rc ? NULL : db_query(c, "cache expiry", SQL_EXPIRE, 3, p1, err);
    buf_free(&kinds);
    buf_free(&ttls);
    if (rc)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    if (!r)
        return TQ_EDB;
    out->expired = atoll(PQcmdTuples(r));
    PQclear(r);
    for (int k = 0; k < cfg->nkinds; k++) {
        const TqKind *kd = &cfg->kinds[k];
        snprintf(cap, sizeof cap, "%d", kd->cache.max_entries);
        const char *p[3] = {kd->name, cap, lim};
        if (!(r = db_query(c, "cache eviction", SQL_EVICT_KIND, 3, p, err)))
            return TQ_EDB;
        out->evicted += atoll(PQcmdTuples(r));
        PQclear(r);
    }
    snprintf(cap, sizeof cap, "%lld", (long long)cfg->cache_store.max_bytes);
    const char *p2[2] = {cap, lim};
    if (!(r = db_query(c, "cache eviction", SQL_EVICT_BYTES, 2, p2, err)))
        return TQ_EDB;
    out->evicted += PQntuples(r);
    for (int i = 0; i < PQntuples(r); i++)
        out->evicted_bytes += atoll(PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}
