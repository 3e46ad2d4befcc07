#include "compress.h"

#include "hash.h"
#include "sim.h"
#include "utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SALT_COMPRESS 0x7137449123ef65cdULL
#define SALT_KEEP 0xe9b5dba58189dbbcULL
#define SALT_ORDER 0x3956c25bf348b538ULL

#define COMPRESS_MAX_FACTS 4096
#define COMPRESS_SEGMENT_MAX 512 /* a longer line is cut at a space into pieces of about this size */

/* README "Compression requests" says why these values are plausible. */
const CompressParams COMPRESS_PARAMS_DEFAULT = {
    .mode = COMPRESS_EXTRACT,
    .skill = -1,
    .reference_ratio = 20,
    .shape = 2,
    .question_boost = 0.6,
};

const char *compress_mode_name(CompressMode m) { return m == COMPRESS_TRUNCATE ? "truncate" : "extract"; }

bool compress_is_system(const char *s, size_t n, int64_t *target)
{
    static const char mark[] = "in at most ";
    const size_t pl = sizeof COMPRESS_SYSTEM_PREFIX - 1;
    if (n < pl || memcmp(s, COMPRESS_SYSTEM_PREFIX, pl) != 0)
        return false;
    const char *end = s + n;
    for (const char *at = s; (at = memmem(at, (size_t)(end - at), mark, sizeof mark - 1)); at++) {
        const char *p = at + sizeof mark - 1;
        int64_t v = 0;
        const char *digits = p;
        while (p < end && *p >= '0' && *p <= '9' && v < 1000000000)
            v = v * 10 + (*p++ - '0');
        if (p > digits && v >= 1 && end - p >= 7 && memcmp(p, " tokens", 7) == 0) {
            *target = v;
            return true;
        }
    }
    return false;
}

bool compress_parse(const char *msg, size_t len, CompressItem *it)
{
    const size_t ql = sizeof COMPRESS_QUESTION_PREFIX - 1, sl = sizeof COMPRESS_DOCUMENT_SEP - 1,
                 dl = sizeof COMPRESS_DOCUMENT_PREFIX - 1;
    if (len >= ql && memcmp(msg, COMPRESS_QUESTION_PREFIX, ql) == 0) {
        const char *q = msg + ql, *end = msg + len;
        const char *sep = memmem(q, (size_t)(end - q), COMPRESS_DOCUMENT_SEP, sl);
        if (!sep)
            return false;
        it->question = q;
        it->question_len = (size_t)(sep - q);
        it->doc = sep + sl;
        it->doc_len = (size_t)(end - it->doc);
        return true;
    }
    if (len >= dl && memcmp(msg, COMPRESS_DOCUMENT_PREFIX, dl) == 0) {
        it->question = NULL;
        it->question_len = 0;
        it->doc = msg + dl;
        it->doc_len = len - dl;
        return true;
    }
    return false;
}

double compress_keep_probability(const CompressParams *p, double skill, double ratio)
{
    double s = p->skill >= 0 ? p->skill : skill;
    if (ratio <= 1 || s >= 1)
        return 1;
    if (s <= 0)
        return 0;
    double x = log(ratio) / log(p->reference_ratio);
    return pow(s, pow(x, p->shape));
}

static double unit(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

/* ---- extract ---- */

typedef enum { SEG_FREE = 0, SEG_MUST, SEG_LOST, SEG_PICKED } SegState;

typedef struct Segment {
    size_t off, len; /* within the document, without the newline */
    SegState state;
} Segment;

typedef struct Ranked {
    uint64_t rank;
    size_t seg;
} Ranked;

static int by_rank(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    return x->rank < y->rank ? -1 : x->rank > y->rank ? 1 : (x->seg > y->seg) - (x->seg < y->seg);
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ')
            return false;
    return true;
}

/* Cut the document into lines, and lines longer than COMPRESS_SEGMENT_MAX into pieces at a space
 * (or a character boundary). Returns the count, or 0 with *out NULL when out of memory. */
static size_t segments(const char *doc, size_t len, Segment **out)
{
    size_t cap = 64, n = 0;
    Segment *s = malloc(cap * sizeof *s);
    for (size_t off = 0; s && off <= len;) {
        const char *nl = memchr(doc + off, '\n', len - off);
        size_t line_end = nl ? (size_t)(nl - doc) : len;
        size_t piece = line_end - off;
        if (piece > COMPRESS_SEGMENT_MAX) {
            size_t cut = utf8_cut(doc + off, piece, COMPRESS_SEGMENT_MAX);
            size_t sp = cut;
            while (sp > COMPRESS_SEGMENT_MAX / 2 && doc[off + sp - 1] != ' ')
                sp--;
            piece = sp > COMPRESS_SEGMENT_MAX / 2 ? sp : cut ? cut : piece;
        }
        if (n == cap) {
            Segment *g = realloc(s, (cap *= 2) * sizeof *s);
            if (!g) {
                free(s);
                s = NULL;
                break;
            }
            s = g;
        }
        s[n++] = (Segment){off, piece, SEG_FREE};
        off += piece;
        if (off == line_end) {
            if (!nl)
                break;
            off++; /* the newline */
        }
    }
    *out = s;
    return s ? n : 0;
}

/* Mark the segments overlapping doc[from, from+n) as state (a kept fact's lines stay kept). */
static void mark(Segment *seg, size_t nseg, size_t from, size_t n, SegState state)
{
    for (size_t i = 0; i < nseg; i++)
        if (seg[i].off < from + n && from < seg[i].off + seg[i].len && seg[i].state != SEG_MUST)
            seg[i].state = state;
}

static int extract(const AnswerKey *key, const CompressItem *it, const CompressParams *p, double skill, uint64_t base,
                   Buf *out)
{
    const char *doc = it->doc;
    size_t len = it->doc_len, budget = (size_t)it->target * 4;
    double ratio = (double)((len + 3) / 4) / (double)it->target;
    AnswerKeyItem *facts = calloc(COMPRESS_MAX_FACTS, sizeof *facts);
    Segment *seg = NULL;
    Ranked *order = NULL;
    int rc = TQ_ENOMEM;
    if (!facts)
        goto cleanup;
    size_t nfacts = answer_key_facts(key, doc, len, facts, COMPRESS_MAX_FACTS);
    AnswerKeyItem asked;
    bool has_asked = it->question && answer_key_lookup(key, it->question, it->question_len, &asked);
    size_t nseg = segments(doc, len, &seg);
    if (!seg)
        goto cleanup;
    double p_fact = compress_keep_probability(p, skill, ratio);
    double p_asked = 1 - (1 - p_fact) * (1 - p->question_boost);
    /* kept facts first, so a line holding a kept and a lost fact stays */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t f = 0; f < nfacts; f++) {
            const char *e = facts[f].expected;
            size_t en = facts[f].expected_len;
            if (!en)
                continue;
            bool is_asked = has_asked && asked.expected == e;
            uint64_t h = hash_mix64(base ^ hash_mix64(hash_fnv1a64(e, en) ^ SALT_KEEP));
            bool keep = unit(h) < (is_asked ? p_asked : p_fact);
            if (keep != (pass == 0))
                continue;
            for (const char *at = doc; (at = memmem(at, (size_t)(doc + len - at), e, en)); at += en) {
                mark(seg, nseg, (size_t)(at - doc), en, keep ? SEG_MUST : SEG_LOST);
                if (keep)
                    break; /* its first line is enough */
            }
        }
    }
    size_t used = 0, nfree = 0;
    for (size_t i = 0; i < nseg; i++)
        if (seg[i].state == SEG_MUST)
            used += seg[i].len + 1;
    if (!(order = malloc((nseg ? nseg : 1) * sizeof *order)))
        goto cleanup;
    for (size_t i = 0; i < nseg; i++)
        if (seg[i].state == SEG_FREE && !is_blank(doc + seg[i].off, seg[i].len))
            order[nfree++] = (Ranked){hash_mix64(base ^ (i + 1) * SALT_ORDER), i};
    qsort(order, nfree, sizeof *order, by_rank);
    for (size_t k = 0; k < nfree; k++) {
        Segment *s = &seg[order[k].seg];
        if (used + s->len + 1 <= budget + 1) { /* the last line needs no newline */
            s->state = SEG_PICKED;
            used += s->len + 1;
        }
    }
    rc = 0;
    bool first = true;
    for (size_t i = 0; rc == 0 && i < nseg; i++) {
        if (seg[i].state != SEG_MUST && seg[i].state != SEG_PICKED)
            continue;
        /* pieces of one cut line join without a newline */
        bool joined = i > 0 && seg[i - 1].off + seg[i - 1].len == seg[i].off;
        if (!first && !joined)
            rc = buf_putc(out, '\n');
        if (!rc)
            rc = buf_append(out, doc + seg[i].off, seg[i].len);
        first = false;
    }
cleanup:
    free(facts);
    free(seg);
    free(order);
    return rc;
}

int compress_compose(const AnswerKey *key, const CompressItem *it, const CompressParams *params, double skill,
                     uint64_t seed, const char *model, uint64_t variant, const char *msg, size_t msg_len, Buf *out,
                     CompressResult *res)
{
    const CompressParams *p = params ? params : &COMPRESS_PARAMS_DEFAULT;
    size_t start = out->len;
    size_t budget = (size_t)it->target * 4;
    int rc;
    if (it->doc_len <= budget)
        rc = buf_append(out, it->doc, it->doc_len); /* already short enough: nothing to lose */
    else if (p->mode == COMPRESS_TRUNCATE)
        rc = buf_append(out, it->doc, utf8_cut(it->doc, it->doc_len, budget));
    else {
        uint64_t hm = hash_fnv1a64(model, strlen(model));
        uint64_t base = hash_mix64(seed ^ hash_mix64(hm ^ hash_mix64(hash_fnv1a64(msg, msg_len) ^ variant ^
                                                                     (uint64_t)it->target * SALT_COMPRESS)));
        rc = extract(key, it, p, skill, base, out);
    }
    if (rc || !res)
        return rc;
    /* count what survived, whatever the mode */
    AnswerKeyItem facts[64];
    size_t n = answer_key_facts(key, it->doc, it->doc_len, facts, sizeof facts / sizeof facts[0]);
    res->facts = (uint32_t)n;
    res->kept = 0;
    const char *o = out->data ? out->data + start : "";
    size_t on = out->len - start;
    for (size_t i = 0; i < n; i++)
        if (facts[i].expected_len && memmem(o, on, facts[i].expected, facts[i].expected_len))
            res->kept++;
    return 0;
}
