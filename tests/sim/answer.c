#include "answer.h"

#include "fmt.h"
#include "hash.h"
#include "json.h"
#include "sim.h"
#include "u64map.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Salts keep the draws made from one base hash independent of each other. */
#define SALT_DIFFICULTY 0x6a09e667f3bcc908ULL
#define SALT_CORRECT 0xbb67ae8584caa73bULL
#define SALT_CONFIDENCE 0x3c6ef372fe94f82bULL
#define SALT_WRONG 0xa54ff53a5f1d36f1ULL
#define SALT_TOKENS 0x510e527fade682d1ULL
#define SALT_PUNCT 0x243f6a8885a308d3ULL

#define ANSWER_SHORT_BYTES 48 /* a wrong short answer is another answer of the same kind */
#define ANSWER_GENERIC_WORDS 8

/* The constants the simulator had before they became per-model settings: with them every draw is
 * what it always was (tests/sim/README.md, "Models", explains why these values are plausible). */
const AnswerParams ANSWER_PARAMS_DEFAULT = {
    .difficulty_sensitivity = 2.5,
    .difficulty_pivot = 0.65,
    .kind_offsets = NULL,
    .nkind_offsets = 0,
    .correct = {0.90, 0.07, 0.30, 0.999},
    .wrong = {0.62, 0.15, 0.05, 0.99},
    .unkeyed = {0.80, 0.12, 0.05, 0.999},
    .token_spread = 0.03,
};

typedef struct AkEntry {
    const char *prompt; /* points into AnswerKey.text */
    size_t prompt_len;
    const char *expected;
    size_t expected_len;
    uint32_t kind;
    uint32_t distinct_id; /* position of expected in its kind's distinct list */
    uint32_t doc;         /* the row's context document, AK_NONE without a context */
    uint32_t next_fact;   /* the next row of the same document, AK_NONE at the end */
} AkEntry;

#define AK_NONE UINT32_MAX

/* A context document: the rows whose context column holds this text are its facts. */
typedef struct AkDoc {
    const char *text; /* points into AnswerKey.text */
    size_t len;
    uint32_t first_fact; /* an entry, linked through next_fact */
    uint32_t nfacts;
} AkDoc;

typedef struct AkKind {
    const char *name;
    size_t name_len;
    const char **distinct; /* distinct expected values, owned array of borrowed strings */
    size_t *distinct_len;
    size_t ndistinct, cap;
    bool has_long; /* some expected value is longer than ANSWER_SHORT_BYTES */
    bool labels;   /* a label set: 2..ANSWER_MAX_LABELS distinct values, all short */
} AkKind;

struct AnswerKey {
    Buf text;          /* the file, decoded in place */
    AkEntry *entries;
    size_t n, cap;
    AkKind *kinds;
    size_t nkinds, kcap;
    U64Map by_prompt;  /* fnv(prompt) -> entry */
    U64Map by_kind;    /* fnv(kind) -> kind */
    U64Map distinct;   /* hash(kind, expected) -> distinct id */
    AkDoc *docs;       /* the distinct non-empty contexts (optional column "context") */
    size_t ndocs, dcap;
    U64Map by_doc;     /* fnv(context) -> doc */
    U64Map by_head;    /* head_hash(context) -> doc: finds a document a client cleaned up before sending */
};

/* ---- COPY text format ---- */

static int hexdig(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode s[0..n) in place (the output is never longer than the input); NUL-terminate; return the
 * decoded length. A lone \N (SQL NULL) decodes to the empty string. */
static size_t copy_unescape(char *s, size_t n)
{
    if (n == 2 && s[0] == '\\' && s[1] == 'N') {
        s[0] = '\0';
        return 0;
    }
    size_t r = 0, w = 0;
    while (r < n) {
        char c = s[r++];
        if (c != '\\' || r >= n) {
            s[w++] = c;
            continue;
        }
        char e = s[r++];
        switch (e) {
        case 'b': s[w++] = '\b'; break;
        case 'f': s[w++] = '\f'; break;
        case 'n': s[w++] = '\n'; break;
        case 'r': s[w++] = '\r'; break;
        case 't': s[w++] = '\t'; break;
        case 'v': s[w++] = '\v'; break;
        case 'x': {
            int v = 0, k = 0;
            while (k < 2 && r < n && hexdig(s[r]) >= 0)
                v = v * 16 + hexdig(s[r++]), k++;
            if (k == 0)
                s[w++] = 'x';
            else
                s[w++] = (char)v;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', k = 1;
                while (k < 3 && r < n && s[r] >= '0' && s[r] <= '7')
                    v = v * 8 + (s[r++] - '0'), k++;
                s[w++] = (char)(v & 0xff);
            } else {
                s[w++] = e; /* \\ and any other escaped character stand for themselves */
            }
        }
    }
    s[w] = '\0';
    return w;
}

/* ---- loading ---- */

#define AK_MAX_COLS 64

/* Split line[0..n) at tabs; returns the number of fields (at most AK_MAX_COLS are recorded). */
static int split_tabs(char *line, size_t n, char **start, size_t *len)
{
    int f = 0;
    size_t b = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || line[i] == '\t') {
            if (f < AK_MAX_COLS) {
                start[f] = line + b;
                len[f] = i - b;
            }
            f++;
            b = i + 1;
        }
    }
    return f;
}

static int add_kind(AnswerKey *k, const char *name, size_t len, uint32_t *out)
{
    uint64_t h = hash_fnv1a64(name, len);
    int created = 0;
    uint64_t *slot = u64map_upsert(&k->by_kind, h, &created);
    if (!slot)
        return TQ_ENOMEM;
    if (!created) {
        *out = (uint32_t)*slot;
        return 0;
    }
    if (k->nkinds == k->kcap) {
        size_t nc = k->kcap ? k->kcap * 2 : 8;
        AkKind *nk = realloc(k->kinds, nc * sizeof *nk);
        if (!nk)
            return TQ_ENOMEM;
        k->kinds = nk;
        k->kcap = nc;
    }
    AkKind *kd = &k->kinds[k->nkinds];
    memset(kd, 0, sizeof *kd);
    kd->name = name;
    kd->name_len = len;
    *slot = k->nkinds;
    *out = (uint32_t)k->nkinds++;
    return 0;
}

static int add_distinct(AnswerKey *k, AkEntry *e)
{
    AkKind *kd = &k->kinds[e->kind];
    uint64_t h = hash_mix64(hash_fnv1a64(e->expected, e->expected_len) ^ ((uint64_t)e->kind + 1) * SALT_WRONG);
    int created = 0;
    uint64_t *slot = u64map_upsert(&k->distinct, h, &created);
    if (!slot)
        return TQ_ENOMEM;
    if (!created) {
        e->distinct_id = (uint32_t)*slot;
        return 0;
    }
    if (kd->ndistinct == kd->cap) {
        size_t nc = kd->cap ? kd->cap * 2 : 16;
        const char **nd = realloc(kd->distinct, nc * sizeof *nd);
        if (!nd)
            return TQ_ENOMEM;
        kd->distinct = nd;
        size_t *nl = realloc(kd->distinct_len, nc * sizeof *nl);
        if (!nl)
            return TQ_ENOMEM;
        kd->distinct_len = nl;
        kd->cap = nc;
    }
    if (e->expected_len > ANSWER_SHORT_BYTES)
        kd->has_long = true;
    kd->distinct[kd->ndistinct] = e->expected;
    kd->distinct_len[kd->ndistinct] = e->expected_len;
    *slot = kd->ndistinct;
    e->distinct_id = (uint32_t)kd->ndistinct++;
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* A document's identity that survives a client's clean-up (whitespace collapsed, markup and repeated
 * lines dropped further down): its first 256 bytes that are not blanks. */
static uint64_t head_hash(const char *s, size_t n)
{
    uint64_t h = HASH_FNV_INIT;
    size_t taken = 0;
    for (size_t i = 0; i < n && taken < 256; i++)
        if (!is_space(s[i])) {
            h = hash_fnv1a64_more(h, s + i, 1);
            taken++;
        }
    return h;
}

/* The document of a context text, added when new; *out = its index. */
static int add_doc(AnswerKey *k, const char *text, size_t len, uint32_t *out)
{
    int created = 0;
    uint64_t *slot = u64map_upsert(&k->by_doc, hash_fnv1a64(text, len), &created);
    if (!slot)
        return TQ_ENOMEM;
    if (!created) { /* a 64-bit collision of two different texts would merge their facts: accepted */
        *out = (uint32_t)*slot;
        return 0;
    }
    if (k->ndocs == k->dcap) {
        size_t nc = k->dcap ? k->dcap * 2 : 64;
        AkDoc *nd = realloc(k->docs, nc * sizeof *nd);
        if (!nd)
            return TQ_ENOMEM;
        k->docs = nd;
        k->dcap = nc;
    }
    k->docs[k->ndocs] = (AkDoc){text, len, AK_NONE, 0};
    *slot = k->ndocs;
    int hc = 0;
    uint64_t *hs = u64map_upsert(&k->by_head, head_hash(text, len), &hc);
    if (hs && hc)
        *hs = k->ndocs; /* two documents with one head: the first keeps it */
    *out = (uint32_t)k->ndocs++;
    return 0;
}

static int add_entry(AnswerKey *k, AkEntry *e, const char *context, size_t context_len, size_t *dups)
{
    int created = 0;
    uint64_t *slot = u64map_upsert(&k->by_prompt, hash_fnv1a64(e->prompt, e->prompt_len), &created);
    if (!slot)
        return TQ_ENOMEM;
    if (!created) { /* the same prompt twice (or a 64-bit hash collision): the first row wins */
        (*dups)++;
        return 0;
    }
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 1024;
        AkEntry *ne = realloc(k->entries, nc * sizeof *ne);
        if (!ne)
            return TQ_ENOMEM;
        k->entries = ne;
        k->cap = nc;
    }
    int rc = add_distinct(k, e);
    if (rc)
        return rc;
    e->doc = e->next_fact = AK_NONE;
    if (context_len) {
        if ((rc = add_doc(k, context, context_len, &e->doc)))
            return rc;
        AkDoc *d = &k->docs[e->doc];
        e->next_fact = d->first_fact;
        d->first_fact = (uint32_t)k->n;
        d->nfacts++;
    }
    *slot = k->n;
    k->entries[k->n++] = *e;
    return 0;
}

int answer_key_load(AnswerKey **out, const char *path, TqErr *err)
{
    *out = NULL;
    AnswerKey *k = calloc(1, sizeof *k);
    if (!k)
        return tq_err(err, TQ_ENOMEM, "out of memory loading the answer key");
    buf_init(&k->text, 0);
    u64map_init(&k->by_prompt, 0);
    u64map_init(&k->by_kind, 0);
    u64map_init(&k->distinct, 0);
    u64map_init(&k->by_doc, 0);
    u64map_init(&k->by_head, 0);
    int rc = sim_read_file(path, &k->text, err);
    if (rc)
        goto cleanup;
    char *p = k->text.data, *end = k->text.data + k->text.len;
    int col_kind = -1, col_prompt = -1, col_expected = -1, col_context = -1, ncols = 0;
    size_t lineno = 0, dups = 0;
    char *fs[AK_MAX_COLS];
    size_t fl[AK_MAX_COLS];
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *line = p;
        p = nl ? nl + 1 : end;
        lineno++;
        size_t len = (size_t)(le - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (lineno == 1) {
            ncols = split_tabs(line, len, fs, fl);
            for (int c = 0; c < ncols && c < AK_MAX_COLS; c++) {
                if (fl[c] == 4 && memcmp(fs[c], "kind", 4) == 0) col_kind = c;
                else if (fl[c] == 6 && memcmp(fs[c], "prompt", 6) == 0) col_prompt = c;
                else if (fl[c] == 8 && memcmp(fs[c], "expected", 8) == 0) col_expected = c;
                else if (fl[c] == 7 && memcmp(fs[c], "context", 7) == 0) col_context = c;
            }
            if (col_kind < 0 || col_prompt < 0 || col_expected < 0) {
                rc = tq_err(err, TQ_EINVAL, "%s: the header line must name the columns kind, prompt and expected",
                            path);
                goto cleanup;
            }
            continue;
        }
        if (len == 0)
            continue;
        int nf = split_tabs(line, len, fs, fl);
        if (nf != ncols) {
            rc = tq_err(err, TQ_EINVAL, "%s:%zu: %d fields, the header has %d", path, lineno, nf, ncols);
            goto cleanup;
        }
        AkEntry e = {0};
        size_t kind_len = copy_unescape(fs[col_kind], fl[col_kind]);
        e.prompt = fs[col_prompt];
        e.prompt_len = copy_unescape(fs[col_prompt], fl[col_prompt]);
        e.expected = fs[col_expected];
        e.expected_len = copy_unescape(fs[col_expected], fl[col_expected]);
        const char *context = col_context >= 0 ? fs[col_context] : NULL;
        size_t context_len = col_context >= 0 ? copy_unescape(fs[col_context], fl[col_context]) : 0;
        if ((rc = add_kind(k, fs[col_kind], kind_len, &e.kind)) ||
            (rc = add_entry(k, &e, context, context_len, &dups))) {
            rc = tq_err(err, rc, "out of memory loading the answer key");
            goto cleanup;
        }
    }
    if (lineno == 0) {
        rc = tq_err(err, TQ_EINVAL, "%s: empty file (the header line kind\\tprompt\\texpected is required)", path);
        goto cleanup;
    }
    for (size_t i = 0; i < k->nkinds; i++)
        k->kinds[i].labels =
            k->kinds[i].ndistinct >= 2 && k->kinds[i].ndistinct <= ANSWER_MAX_LABELS && !k->kinds[i].has_long;
    /* The distinct-value index is only needed while loading. */
    u64map_free(&k->distinct);
    (void)dups;
    *out = k;
    k = NULL;
    rc = 0;
cleanup:
    answer_key_free(k);
    return rc;
}

void answer_key_free(AnswerKey *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->nkinds; i++) {
        free(k->kinds[i].distinct);
        free(k->kinds[i].distinct_len);
    }
    free(k->kinds);
    free(k->entries);
    u64map_free(&k->by_prompt);
    u64map_free(&k->by_kind);
    u64map_free(&k->distinct);
    u64map_free(&k->by_doc);
    u64map_free(&k->by_head);
    free(k->docs);
    buf_free(&k->text);
    free(k);
}

size_t answer_key_rows(const AnswerKey *k) { return k ? k->n : 0; }
size_t answer_key_kinds(const AnswerKey *k) { return k ? k->nkinds : 0; }
size_t answer_key_docs(const AnswerKey *k) { return k ? k->ndocs : 0; }


static const AkEntry *key_find(const AnswerKey *k, const char *s, size_t n)
{
    if (!k)
        return NULL;
    uint64_t *v = u64map_get(&k->by_prompt, hash_fnv1a64(s, n));
    if (!v)
        return NULL;
    const AkEntry *e = &k->entries[*v];
    return e->prompt_len == n && memcmp(e->prompt, s, n) == 0 ? e : NULL;
}

/* The entry for a prompt: exact, else with the surrounding whitespace a client may add trimmed. */
static const AkEntry *key_lookup(const AnswerKey *k, const char *s, size_t n)
{
    const AkEntry *e = key_find(k, s, n);
    if (e || !k)
        return e;
    size_t n0 = n;
    while (n && is_space(*s))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    return n != n0 ? key_find(k, s, n) : NULL;
}

static void fill_item(const AnswerKey *k, const AkEntry *e, AnswerKeyItem *out)
{
    out->expected = e->expected;
    out->expected_len = e->expected_len;
    out->labels = k->kinds[e->kind].labels;
    out->kind = k->kinds[e->kind].name;
    out->kind_len = k->kinds[e->kind].name_len;
    out->context = e->doc == AK_NONE ? NULL : k->docs[e->doc].text;
    out->context_len = e->doc == AK_NONE ? 0 : k->docs[e->doc].len;
}

bool answer_key_lookup(const AnswerKey *k, const char *prompt, size_t len, AnswerKeyItem *out)
{
    const AkEntry *e = key_lookup(k, prompt, len);
    if (!e)
        return false;
    fill_item(k, e, out);
    return true;
}

static const AkDoc *doc_find(const AnswerKey *k, const char *s, size_t n)
{
    uint64_t *v = u64map_get(&k->by_doc, hash_fnv1a64(s, n));
    const AkDoc *d = v ? &k->docs[*v] : NULL;
    if (d && d->len == n && memcmp(d->text, s, n) == 0)
        return d;
    /* not as stored: the same document cleaned up by the client (its facts are what it still holds) */
    v = u64map_get(&k->by_head, head_hash(s, n));
    return v ? &k->docs[*v] : NULL;
}

size_t answer_key_facts(const AnswerKey *k, const char *doc, size_t len, AnswerKeyItem *out, size_t max)
{
    if (!k || !k->ndocs)
        return 0;
    const AkDoc *d = doc_find(k, doc, len);
    if (!d) {
        size_t n0 = len;
        while (len && is_space(*doc))
            doc++, len--;
        while (len && is_space(doc[len - 1]))
            len--;
        if (len == n0 || !(d = doc_find(k, doc, len)))
            return 0;
    }
    size_t n = 0;
    for (uint32_t i = d->first_fact; i != AK_NONE && n < max; i = k->entries[i].next_fact)
        fill_item(k, &k->entries[i], &out[n++]);
    return n;
}

/* A prompt that is not in the key as a whole may hold a question of a context row as its first or
 * last paragraph (the question above or below the document in one message). Only rows with a
 * context are found this way, and only when the key has any. */
static const AkEntry *paragraph_lookup(const AnswerKey *k, const char *s, size_t n)
{
    if (!k || !k->ndocs)
        return NULL;
    const char *first = memmem(s, n, "\n\n", 2);
    if (!first)
        return NULL;
    const AkEntry *e = key_lookup(k, s, (size_t)(first - s));
    if (e && e->doc != AK_NONE)
        return e;
    const char *last = first;
    for (const char *p; (p = memmem(last + 2, (size_t)(s + n - last - 2), "\n\n", 2));)
        last = p;
    e = key_lookup(k, last + 2, (size_t)(s + n - last - 2));
    return e && e->doc != AK_NONE ? e : NULL;
}

/* ---- draws ---- */

static double unit(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

/* Standard normal from two independent 64-bit hashes (Box-Muller). */
double answer_gauss(uint64_t h1, uint64_t h2)
{
    double u1 = 1.0 - unit(h1); /* (0,1] */
    double u2 = unit(h2);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

double answer_difficulty(const char *prompt, size_t len)
{
    return unit(hash_mix64(hash_fnv1a64(prompt, len) ^ SALT_DIFFICULTY));
}

double answer_kind_offset(const AnswerParams *p, const char *kind, size_t len)
{
    for (size_t i = 0; i < p->nkind_offsets; i++)
        if (p->kind_offsets[i].kind_len == len && memcmp(p->kind_offsets[i].kind, kind, len) == 0)
            return p->kind_offsets[i].offset;
    return 0;
}

double answer_p_correct(const AnswerParams *p, double skill, double difficulty)
{
    if (skill <= 0)
        return 0;
    if (skill >= 1)
        return 1;
    return pow(skill, exp(p->difficulty_sensitivity * (difficulty - p->difficulty_pivot)));
}

double answer_confidence(const AnswerConfidence *c, double z) { return clampd(c->mean + c->spread * z, c->min, c->max); }

/* ---- answer texts ---- */

static int generic_answer(const char *prompt, size_t len, Buf *out)
{
    int rc = buf_puts(out, "Answer:");
    size_t i = 0;
    int words = 0;
    size_t start_len = out->len;
    while (rc == 0 && i < len && words < ANSWER_GENERIC_WORDS && out->len - start_len < 160) {
        while (i < len && is_space(prompt[i]))
            i++;
        size_t b = i;
        while (i < len && !is_space(prompt[i]))
            i++;
        if (i > b) {
            rc = buf_putc(out, ' ');
            if (!rc)
                rc = buf_append(out, prompt + b, i - b);
            words++;
        }
    }
    if (rc == 0 && words == 0)
        rc = buf_puts(out, " (empty prompt)");
    return rc;
}

static const char *const evasive[] = {
    "I'm not sure about that.",
    "It depends on the context.",
    "I cannot determine that from the information given.",
    "There is not enough information to answer this.",
};

static size_t count_words(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_space(s[i]) && (i == 0 || is_space(s[i - 1])))
            w++;
    return w;
}

/* The expected text with about 30% of its words dropped and one adjacent pair swapped. */
static int degrade(const char *s, size_t n, uint64_t r, Buf *out)
{
    size_t start = out->len;
    size_t words = count_words(s, n);
    size_t swap_at = words >= 3 ? (size_t)(hash_mix64(r) % (words - 1)) : (size_t)-1;
    const char *held = NULL; /* word waiting to be written after its right neighbour */
    size_t held_len = 0, w = 0, i = 0;
    int rc = 0;
    while (rc == 0 && i < n) {
        while (i < n && is_space(s[i]))
            i++;
        size_t b = i;
        while (i < n && !is_space(s[i]))
            i++;
        if (i == b)
            break;
        size_t idx = w++;
        if (unit(hash_mix64(r ^ (idx + 1) * SALT_TOKENS)) < 0.3 && words > 1 && idx != swap_at &&
            idx != swap_at + 1)
            continue;
        if (idx == swap_at) {
            held = s + b;
            held_len = i - b;
            continue;
        }
        if (out->len > start)
            rc = buf_putc(out, ' ');
        if (!rc)
            rc = buf_append(out, s + b, i - b);
        if (!rc && held) {
            rc = buf_putc(out, ' ');
            if (!rc)
                rc = buf_append(out, held, held_len);
            held = NULL;
        }
    }
    if (!rc && held) {
        if (out->len > start)
            rc = buf_putc(out, ' ');
        if (!rc)
            rc = buf_append(out, held, held_len);
    }
    if (rc)
        return rc;
    size_t got = out->len - start;
    if (got == 0 || (got == n && memcmp(out->data + start, s, n) == 0)) {
        out->len = start;
        out->data[start] = '\0';
        rc = buf_puts(out, evasive[hash_mix64(r ^ SALT_WRONG) % (sizeof evasive / sizeof evasive[0])]);
    }
    return rc;
}

static int wrong_answer(const AnswerKey *k, const AkEntry *e, uint64_t r, Buf *out)
{
    const AkKind *kd = &k->kinds[e->kind];
    bool short_answer = e->expected_len <= ANSWER_SHORT_BYTES && count_words(e->expected, e->expected_len) <= 3;
    if (kd->ndistinct >= 2 && (kd->labels || short_answer)) {
        size_t j = (size_t)(r % (kd->ndistinct - 1));
        if (j >= e->distinct_id)
            j++;
        return buf_append(out, kd->distinct[j], kd->distinct_len[j]);
    }
    return degrade(e->expected, e->expected_len, r, out);
}

int answer_offered_labels(const char *system, size_t len, Buf *out)
{
    static const char mark[] = "one of: ";
    const char *at = memmem(system, len, mark, sizeof mark - 1);
    if (!at)
        return 0;
    const char *s = at + sizeof mark - 1, *end = system + len;
    const char *e = s;
    while (e < end && *e != '\n' && !(*e == '.' && (e + 1 == end || e[1] == ' ' || e[1] == '\n')))
        e++;
    return buf_append(out, s, (size_t)(e - s));
}

/* Whether word w[0..n) occurs in s[0..len) as a whole word, ASCII case ignored. */
static bool has_word(const char *s, size_t len, const char *w, size_t n)
{
    for (size_t i = 0; n && i + n <= len; i++) {
        if (strncasecmp(s + i, w, n) != 0)
            continue;
        bool left = i == 0 || !isalnum((unsigned char)s[i - 1]);
        bool right = i + n == len || !isalnum((unsigned char)s[i + n]);
        if (left && right)
            return true;
    }
    return false;
}

/* An unkeyed prompt in a request that offers labels: the one label the prompt names, else one by
 * the prompt's hash. */
static int offered_label(const AnswerQuery *q, const AnswerParams *ap, uint64_t base, double z, Answer *a, Buf *text)
{
    const char *l = q->labels, *end = q->labels + q->labels_len;
    const char *named = NULL, *pick = NULL;
    size_t named_len = 0, pick_len = 0;
    int nnamed = 0, n = 0;
    for (const char *p = l; p < end;) {
        const char *c = memmem(p, (size_t)(end - p), ", ", 2);
        const char *e = c ? c : end;
        if (e > p) {
            n++;
            if (has_word(q->prompt, q->prompt_len, p, (size_t)(e - p)) && nnamed++ == 0) {
                named = p;
                named_len = (size_t)(e - p);
            }
        }
        p = c ? c + 2 : end;
    }
    if (nnamed == 1) {
        a->confidence = answer_confidence(&ap->correct, z);
        return buf_append(text, named, named_len);
    }
    uint64_t k = hash_mix64(base ^ SALT_WRONG) % (uint64_t)(n ? n : 1);
    for (const char *p = l; p < end && !pick;) {
        const char *c = memmem(p, (size_t)(end - p), ", ", 2);
        const char *e = c ? c : end;
        if (e > p && k-- == 0) {
            pick = p;
            pick_len = (size_t)(e - p);
        }
        p = c ? c + 2 : end;
    }
    return pick ? buf_append(text, pick, pick_len) : generic_answer(q->prompt, q->prompt_len, text);
}

/* Whether the expected answer of a context row is in the text the model was sent. */
static bool fact_received(const AnswerQuery *q, const AkEntry *e)
{
    const char *s = q->received ? q->received : q->prompt;
    size_t n = q->received ? q->received_len : q->prompt_len;
    return e->expected_len == 0 || memmem(s, n, e->expected, e->expected_len) != NULL;
}

int answer_compose(const AnswerKey *key, const AnswerQuery *q, Answer *a, Buf *text)
{
    uint64_t hp = hash_fnv1a64(q->prompt, q->prompt_len);
    uint64_t hm = hash_fnv1a64(q->model, strlen(q->model));
    uint64_t base = hash_mix64(q->seed ^ hash_mix64(hm ^ hash_mix64(hp ^ q->variant)));
    const AnswerParams *p = q->params ? q->params : &ANSWER_PARAMS_DEFAULT;
    memset(a, 0, sizeof *a);
    a->difficulty = answer_difficulty(q->prompt, q->prompt_len);
    a->stream = hash_mix64(base ^ SALT_TOKENS);
    a->token_spread = p->token_spread;
    double z = answer_gauss(hash_mix64(base ^ SALT_CONFIDENCE), hash_mix64(base ^ SALT_CONFIDENCE ^ 1));

    const AkEntry *e = key_lookup(key, q->prompt, q->prompt_len);
    if (!e)
        e = paragraph_lookup(key, q->prompt, q->prompt_len);
    if (!e) {
        a->outcome = ANSWER_UNKEYED;
        a->confidence = answer_confidence(&p->unkeyed, z);
        if (q->labels && q->labels_len)
            return offered_label(q, p, base, z, a, text);
        return generic_answer(q->prompt, q->prompt_len, text);
    }
    if (p->nkind_offsets) /* no offsets, no lookup: the default path stays as cheap as before */
        a->difficulty += answer_kind_offset(p, key->kinds[e->kind].name, key->kinds[e->kind].name_len);
    a->p_correct = answer_p_correct(p, q->skill, a->difficulty);
    bool right = unit(hash_mix64(base ^ SALT_CORRECT)) < a->p_correct;
    if (e->doc != AK_NONE && !fact_received(q, e)) {
        /* The answer is in the document only, and the model did not get it: no skill helps. A model
         * that would have been right says so; one that would have been wrong guesses as always. */
        a->outcome = ANSWER_WRONG;
        a->p_correct = 0;
        a->confidence = answer_confidence(&p->wrong, z);
        if (right)
            return buf_puts(text, ANSWER_NOT_STATED);
        return wrong_answer(key, e, hash_mix64(base ^ SALT_WRONG), text);
    }
    if (right) {
        a->outcome = ANSWER_CORRECT;
        a->confidence = answer_confidence(&p->correct, z);
        return buf_append(text, e->expected, e->expected_len);
    }
    a->outcome = ANSWER_WRONG;
    a->confidence = answer_confidence(&p->wrong, z);
    return wrong_answer(key, e, hash_mix64(base ^ SALT_WRONG), text);
}

/* ---- logprobs ---- */

/* End of the token starting at i: a token is a leading space or newline run of one byte plus up
 * to 4 bytes of non-space text, never ending inside a UTF-8 character. */
static size_t token_end(const char *s, size_t n, size_t i)
{
    if (s[i] == '\n')
        return i + 1;
    size_t j = i;
    if (s[j] == ' ')
        j++;
    size_t limit = j + 4;
    while (j < n && j < limit && !is_space(s[j]))
        j++;
    if (j == i) /* a tab or CR on its own */
        j = i + 1;
    while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80)
        j++;
    return j;
}

static const char *const alternatives[] = {" the", " a", " I", " it", " is", " not", " and", " of", " to",
                                           " in", " that", " this", " for", " yes", " no", " maybe",
                                           " none", " one", " on", " with", " as"};

static int put_token(Buf *out, const char *tok, size_t len, double p)
{
    int rc = buf_puts(out, "{\"token\":");
    if (!rc)
        rc = json_put_string(out, tok, len);
    if (!rc)
        rc = buf_puts(out, ",\"logprob\":");
    if (!rc)
        rc = fmt_fixed6(out, log(p));
    if (!rc)
        rc = buf_puts(out, ",\"bytes\":[");
    for (size_t k = 0; rc == 0 && k < len; k++) {
        if (k)
            rc = buf_putc(out, ',');
        if (!rc)
            rc = fmt_u64(out, (unsigned char)tok[k]);
    }
    if (!rc)
        rc = buf_putc(out, ']');
    return rc;
}

/* One entry of logprobs.content: {token, logprob, bytes, top_logprobs}; h picks the alternatives. */
static int put_entry(Buf *out, const char *tok, size_t len, double p, uint64_t h, int top_logprobs)
{
    int rc = put_token(out, tok, len, p);
    if (!rc)
        rc = buf_puts(out, ",\"top_logprobs\":[");
    if (!rc && top_logprobs > 0) {
        /* The token itself plus alternatives sharing the remaining mass geometrically. */
        double probs[21];
        const char *toks[21];
        size_t lens[21];
        int m = 0;
        probs[m] = p, toks[m] = tok, lens[m] = len, m++;
        double rest = 1.0 - p, share = 0.55;
        size_t na = sizeof alternatives / sizeof alternatives[0];
        size_t first = (size_t)(h % na);
        for (size_t k = 0; m < top_logprobs && k < na; k++) {
            const char *alt = alternatives[(first + k) % na];
            if (strlen(alt) == len && memcmp(alt, tok, len) == 0)
                continue;
            double q = clampd(rest * share, 1e-9, 1.0);
            rest -= q;
            probs[m] = q, toks[m] = alt, lens[m] = strlen(alt), m++;
        }
        for (int x = 1; x < m; x++) /* insertion sort, most likely first */
            for (int y = x; y > 0 && probs[y] > probs[y - 1]; y--) {
                double tp = probs[y];
                probs[y] = probs[y - 1], probs[y - 1] = tp;
                const char *tt = toks[y];
                toks[y] = toks[y - 1], toks[y - 1] = tt;
                size_t tl = lens[y];
                lens[y] = lens[y - 1], lens[y - 1] = tl;
            }
        for (int x = 0; rc == 0 && x < m; x++) {
            if (x)
                rc = buf_putc(out, ',');
            if (!rc)
                rc = put_token(out, toks[x], lens[x], probs[x]);
            if (!rc)
                rc = buf_putc(out, '}');
        }
    }
    if (!rc)
        rc = buf_puts(out, "]}");
    return rc;
}

/* The tokens of text[from..to): with an answer, the first has probability a->confidence and
 * the later ones confidence + N(0, a->token_spread); without one (JSON punctuation),
 * ANSWER_PUNCT_P each. */
static int put_run(Buf *out, const char *text, size_t from, size_t to, const Answer *a, int top_logprobs,
                   size_t *ntok)
{
    int rc = 0;
    size_t i = from, t = 0;
    while (rc == 0 && i < to) {
        size_t j = token_end(text, to, i);
        uint64_t h;
        double p;
        if (a) {
            h = hash_mix64(a->stream + t);
            p = a->confidence;
            if (t > 0)
                p += a->token_spread * answer_gauss(h, hash_mix64(h ^ SALT_CONFIDENCE));
            p = clampd(p, 0.01, 0.99995);
        } else {
            h = hash_mix64(SALT_PUNCT + i);
            p = ANSWER_PUNCT_P;
        }
        if (*ntok)
            rc = buf_putc(out, ',');
        if (!rc)
            rc = put_entry(out, text + i, j - i, p, h, top_logprobs);
        i = j;
        t++;
        (*ntok)++;
    }
    return rc;
}

int answer_put_logprobs_spans(Buf *out, const char *text, size_t len, const AnswerSpan *spans, size_t nspans,
                              int top_logprobs)
{
    if (top_logprobs < 0)
        top_logprobs = 0;
    if (top_logprobs > 20)
        top_logprobs = 20;
    int rc = buf_puts(out, "{\"content\":[");
    size_t at = 0, ntok = 0;
    for (size_t k = 0; rc == 0 && k <= nspans && at < len; k++) {
        size_t from = k < nspans ? spans[k].off : len, to = k < nspans ? spans[k].off + spans[k].len : len;
        if (from > len)
            from = len;
        if (to > len)
            to = len;
        if (from > at) /* punctuation before the span */
            rc = put_run(out, text, at, from, NULL, top_logprobs, &ntok);
        if (!rc && k < nspans && to > from)
            rc = put_run(out, text, from, to, spans[k].answer, top_logprobs, &ntok);
        if (to > at)
            at = to;
    }
    if (!rc)
        rc = buf_puts(out, "],\"refusal\":null}");
    return rc;
}

int answer_put_logprobs(Buf *out, const char *text, size_t len, const Answer *a, int top_logprobs)
{
    AnswerSpan all = {0, len, a};
    return answer_put_logprobs_spans(out, text, len, &all, 1, top_logprobs);
}
