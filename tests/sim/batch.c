#include "batch.h"

#include "err.h"
#include "fmt.h"
#include "hash.h"
#include "json.h"
#include "judge.h"

#include <stdlib.h>
#include <string.h>

#define SALT_GARBLE 0x71374491428a2f98ULL
#define SALT_ALT 0xb5c0fbcfe9b5dba5ULL
#define SALT_MALFORMED 0x3956c25b59f111f1ULL
#define BATCH_MAX_JSON_TOKENS 1000000

void batch_init(Batch *b, size_t cap)
{
    memset(b, 0, sizeof *b);
    buf_init(&b->keys, cap);
    buf_init(&b->raw, cap);
    buf_init(&b->texts, cap);
    buf_init(&b->ans, cap);
    buf_init(&b->tmp, cap);
}

void batch_free(Batch *b)
{
    if (!b)
        return;
    buf_free(&b->keys);
    buf_free(&b->raw);
    buf_free(&b->texts);
    buf_free(&b->ans);
    buf_free(&b->tmp);
    free(b->items);
    free(b->answers);
    free(b->out);
    free(b->spans);
    memset(b, 0, sizeof *b);
}

int batch_is_system(const char *s, size_t n)
{
    const size_t tl = sizeof BATCH_INSTRUCTION_TAGGED - 1;
    if (n >= tl && memcmp(s + n - tl, BATCH_INSTRUCTION_TAGGED, tl) == 0)
        return 2;
    const size_t il = sizeof BATCH_INSTRUCTION - 1;
    return n >= il && memcmp(s + n - il, BATCH_INSTRUCTION, il) == 0 ? 1 : 0;
}

static const char *at(const Buf *b, size_t off) { return (b->data ? b->data : "") + off; }

/* Grow *arr (elements of size sz, capacity *cap) to hold at least need. */
static int grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, nc * sz);
    if (!p)
        return TQ_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

int batch_parse(Batch *b, const char *msg, size_t len)
{
    b->n = 0;
    b->truncated = b->invalid = false;
    buf_reset(&b->keys);
    buf_reset(&b->raw);
    buf_reset(&b->texts);
    /* cheap test first: ordinary prompts never get near the JSON parser */
    size_t i = 0;
    while (i < len && (msg[i] == ' ' || msg[i] == '\n' || msg[i] == '\t' || msg[i] == '\r'))
        i++;
    if (i == len || msg[i] != '{')
        return 0;
    JsonDoc d;
    if (json_parse(&d, msg, len, BATCH_MAX_JSON_TOKENS, NULL))
        return 0;
    int rc = 1;
    if (json_type(&d, 0) != JSON_OBJECT || json_size(&d, 0) < 1) {
        rc = 0;
        goto done;
    }
    size_t n = (size_t)json_size(&d, 0);
    if ((rc = grow((void **)&b->items, &b->cap, n, sizeof *b->items)))
        goto done;
    rc = 1;
    int k = 1;
    for (size_t j = 0; j < n; j++, k = json_skip(&d, k + 1)) {
        if (json_type(&d, k + 1) != JSON_STRING) {
            rc = 0;
            goto done;
        }
        BatchItem *it = &b->items[j];
        memset(it, 0, sizeof *it);
        it->key_off = b->keys.len;
        it->raw_off = b->raw.len;
        int e;
        if ((e = json_string(&d, k, &b->keys, NULL)) || (e = json_string(&d, k + 1, &b->raw, NULL))) {
            rc = e == TQ_ENOMEM ? e : 0; /* a string that does not decode: not a batch */
            goto done;
        }
        it->key_len = b->keys.len - it->key_off;
        it->raw_len = b->raw.len - it->raw_off;
    }
    b->n = n;
    /* b->raw is complete: markers may now point into it */
    for (size_t j = 0; j < n; j++) {
        BatchItem *it = &b->items[j];
        const char *s = at(&b->raw, it->raw_off);
        it->raw_hash = hash_fnv1a64(s, it->raw_len);
        it->text_off = b->texts.len;
        if (memmem(s, it->raw_len, "[[sim:", 6)) {
            it->nmk = fault_scan(s, it->raw_len, it->mk, FAULT_MAX_MARKERS, &b->texts);
        } else if ((rc = buf_append(&b->texts, s, it->raw_len))) {
            b->n = 0;
            goto done;
        }
        it->text_len = b->texts.len - it->text_off;
    }
    rc = 1;
done:
    json_doc_free(&d);
    if (rc != 1)
        b->n = 0;
    return rc;
}

size_t batch_judge_items(const Batch *b, const AnswerKey *key)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        JudgeItem ji;
        n += judge_parse(key, at(&b->texts, b->items[i].text_off), b->items[i].text_len, &ji);
    }
    return n;
}

Fault batch_request_fault(Batch *b, FaultState *fs, const char *model)
{
    for (size_t i = 0; i < b->n; i++) {
        BatchItem *it = &b->items[i];
        if (!it->nmk)
            continue;
        Fault f = fault_from_markers(fs, it->raw_hash, it->mk, it->nmk, model, false);
        if (f != FAULT_NONE)
            return f;
    }
    return FAULT_NONE;
}

void batch_plan(Batch *b, FaultState *fs, const char *model, uint64_t garble_hash, double garble_rate,
                SimStats *st)
{
    b->truncated = b->invalid = false;
    for (size_t i = 0; i < b->n; i++) {
        BatchItem *it = &b->items[i];
        it->fault = it->garble = FAULT_NONE;
        if (!it->nmk)
            continue;
        Fault f = fault_from_markers(fs, it->raw_hash, it->mk, it->nmk, model, true);
        if (f == FAULT_NONE)
            continue;
        st->faults[f]++;
        if (f == FAULT_BATCH_TRUNCATED)
            b->truncated = true;
        else if (f == FAULT_BATCH_INVALID)
            b->invalid = true;
        else
            it->fault = f;
    }
    if (garble_rate > 0 && b->n > 0) {
        uint64_t h = hash_mix64(garble_hash ^ SALT_GARBLE);
        if ((double)(h >> 11) * (1.0 / 9007199254740992.0) < garble_rate) {
            const int nf = FAULT_BATCH_INVALID - FAULT_BATCH_MISSING + 1;
            Fault f = (Fault)(FAULT_BATCH_MISSING + (int)(hash_mix64(h ^ 1) % (uint64_t)nf));
            size_t i = (size_t)(hash_mix64(h ^ 2) % b->n);
            st->faults[f]++;
            st->batch_garble++;
            if (f == FAULT_BATCH_TRUNCATED)
                b->truncated = true;
            else if (f == FAULT_BATCH_INVALID)
                b->invalid = true;
            else
                b->items[i].garble = f;
        }
    }
}

/* ---- composing a reply ---- */

static const char *const second_thoughts[] = {"I'm not sure about that.", "It depends on the context."};

/* Answer item i (alt: a different answer, for batch_dup and batch_unknown) into b->answers. */
static int answer_item(Batch *b, const AnswerKey *key, const AnswerQuery *base, bool judge_system, size_t i, bool alt,
                       ModelStats *count)
{
    BatchAnswer *ba = &b->answers[alt ? b->n + i : i];
    if (ba->done)
        return 0;
    const BatchItem *it = &b->items[i];
    AnswerQuery q = *base;
    q.prompt = at(&b->texts, it->text_off);
    q.prompt_len = it->text_len;
    ba->off = b->ans.len;
    int rc;
    JudgeItem ji;
    if (judge_system && judge_parse(key, q.prompt, q.prompt_len, &ji)) {
        Judgement j;
        ba->judge = true;
        if (alt)
            q.variant ^= SALT_ALT;
        rc = judge_compose(&ji, &q, false, &j, &ba->a, &b->ans);
        if (!rc && count) {
            if (j.outcome == JUDGE_RIGHT)
                count->judge_right++;
            else if (j.outcome == JUDGE_FOOLED)
                count->judge_fooled++;
            else
                count->judge_unkeyed++;
        }
    } else {
        if (alt) { /* a keyed item flips between right and wrong; an unkeyed one takes another sample */
            AnswerOutcome o = b->answers[i].a.outcome;
            if (o == ANSWER_CORRECT)
                q.skill = 0;
            else if (o == ANSWER_WRONG)
                q.skill = 1;
            else
                q.variant ^= SALT_ALT;
        }
        rc = answer_compose(key, &q, &ba->a, &b->ans);
        if (!rc && count) {
            if (ba->a.outcome == ANSWER_CORRECT)
                count->correct++;
            else if (ba->a.outcome == ANSWER_WRONG)
                count->wrong++;
            else
                count->unkeyed++;
        }
    }
    if (rc)
        return rc;
    ba->len = b->ans.len - ba->off;
    if (alt) { /* it must differ from the item's answer */
        const BatchAnswer *main = &b->answers[i];
        for (size_t k = 0; k < 2 && ba->len == main->len &&
                           memcmp(at(&b->ans, ba->off), at(&b->ans, main->off), ba->len) == 0;
             k++) {
            b->ans.len = ba->off;
            if ((rc = buf_puts(&b->ans, second_thoughts[k])))
                return rc;
            ba->len = b->ans.len - ba->off;
        }
    }
    ba->done = true;
    return 0;
}

static long find_out(const Batch *b, size_t item)
{
    for (size_t k = 0; k < b->nout; k++)
        if (b->out[k].item == (long)item)
            return (long)k;
    return -1;
}

static void remove_out(Batch *b, size_t k)
{
    memmove(&b->out[k], &b->out[k + 1], (b->nout - k - 1) * sizeof *b->out);
    b->nout--;
}

static int insert_out(Batch *b, size_t k, const BatchOut *o)
{
    int rc = grow((void **)&b->out, &b->ocap, b->nout + 1, sizeof *b->out);
    if (rc)
        return rc;
    memmove(&b->out[k + 1], &b->out[k], (b->nout - k) * sizeof *b->out);
    b->out[k] = *o;
    b->nout++;
    return 0;
}

static bool is_uint(const char *s, size_t n)
{
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n == 1 || s[0] != '0';
}

/* Whether s[0..n) is an id of the request or of the reply so far. */
static bool key_taken(const Batch *b, const char *s, size_t n)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].key_len == n && memcmp(at(&b->keys, b->items[i].key_off), s, n) == 0)
            return true;
    for (size_t k = 0; k < b->nout; k++)
        if (b->out[k].key_len == n && memcmp(at(&b->keys, b->out[k].key_off), s, n) == 0)
            return true;
    return false;
}

/* An id that was not sent: the number after the largest id when all ids are numbers, else
 * "extra1", "extra2", ... Appended to b->keys. */
static int invent_key(Batch *b, size_t *off, size_t *len)
{
    uint64_t max = 0;
    bool numeric = true;
    for (size_t i = 0; i < b->n && numeric; i++) {
        const char *s = at(&b->keys, b->items[i].key_off);
        size_t n = b->items[i].key_len;
        numeric = is_uint(s, n);
        uint64_t v = 0;
        for (size_t k = 0; numeric && k < n; k++)
            v = v * 10 + (uint64_t)(s[k] - '0');
        if (v > max)
            max = v;
    }
    for (;;) {
        size_t o = b->keys.len;
        int rc = numeric ? buf_printf(&b->keys, "%llu", (unsigned long long)(max + ++b->unknown_next))
                         : buf_printf(&b->keys, "extra%zu", ++b->unknown_next);
        if (rc)
            return rc;
        size_t l = b->keys.len - o;
        if (!key_taken(b, at(&b->keys, o), l)) {
            *off = o;
            *len = l;
            return 0;
        }
        b->keys.len = o;
    }
}

static int apply_fault(Batch *b, const AnswerKey *key, const AnswerQuery *base, bool judge_system, size_t i, Fault f)
{
    long pos = find_out(b, i);
    if (pos < 0) /* already gone (missing, merged into another) */
        return 0;
    BatchOut *o = &b->out[pos];
    size_t nx = (i + 1) % b->n;
    int rc = 0;
    switch (f) {
    case FAULT_BATCH_MISSING:
        remove_out(b, (size_t)pos);
        break;
    case FAULT_BATCH_DUP:
    case FAULT_BATCH_UNKNOWN: {
        if ((rc = answer_item(b, key, base, judge_system, i, true, NULL)))
            return rc;
        BatchOut extra = {(long)i, o->key_off, o->key_len, BATCH_VAL_STRING, 1, {b->n + i}};
        if (f == FAULT_BATCH_UNKNOWN) {
            extra.item = -1;
            if ((rc = invent_key(b, &extra.key_off, &extra.key_len)))
                return rc;
        }
        rc = insert_out(b, (size_t)pos + 1, &extra);
        break;
    }
    case FAULT_BATCH_SWAP: {
        long q = nx != i ? find_out(b, nx) : -1;
        if (q >= 0) {
            BatchOut *p = &b->out[q], t = *o;
            o->kind = p->kind, o->nparts = p->nparts;
            memcpy(o->parts, p->parts, sizeof o->parts);
            p->kind = t.kind, p->nparts = t.nparts;
            memcpy(p->parts, t.parts, sizeof p->parts);
        }
        break;
    }
    case FAULT_BATCH_MALFORMED: {
        const BatchAnswer *a = &b->answers[o->parts[0]];
        if (is_uint(at(&b->ans, a->off), a->len))
            o->kind = BATCH_VAL_NUMBER; /* a judge's score, say */
        else
            o->kind = hash_mix64(b->items[i].raw_hash ^ SALT_MALFORMED) & 1 ? BATCH_VAL_INDEX : BATCH_VAL_OBJECT;
        break;
    }
    case FAULT_BATCH_MERGE: {
        long q = nx != i ? find_out(b, nx) : -1;
        if (q >= 0) {
            const BatchOut *p = &b->out[q];
            for (int k = 0; k < p->nparts && o->nparts < BATCH_MAX_PARTS; k++)
                o->parts[o->nparts++] = p->parts[k];
            remove_out(b, (size_t)q);
        }
        break;
    }
    default: break;
    }
    return rc;
}

static int add_span(Batch *b, size_t off, size_t len, size_t answer)
{
    int rc = grow((void **)&b->spans, &b->scap, b->nspans + 1, sizeof *b->spans);
    if (!rc)
        b->spans[b->nspans++] = (AnswerSpan){off, len, &b->answers[answer].a};
    return rc;
}

/* The escaped form of s[0..n) without the quotes, appended to out. */
static int put_escaped(Batch *b, Buf *out, const char *s, size_t n)
{
    buf_reset(&b->tmp);
    int rc = json_put_string(&b->tmp, s, n);
    return rc ? rc : buf_append(out, b->tmp.data + 1, b->tmp.len - 2);
}

/* The parts of o, joined by BATCH_MERGE_SEP, each a span; escaped for a JSON string or raw. In a
 * tagged batch each part starts with its own item's id, "[id] ", outside the span (confident
 * punctuation): a part moved under another id keeps the tag of the item it answers. */
static int put_parts(Batch *b, const BatchOut *o, bool escaped, Buf *text)
{
    int rc = 0;
    for (int k = 0; rc == 0 && k < o->nparts; k++) {
        const BatchAnswer *a = &b->answers[o->parts[k]];
        if (k)
            rc = buf_puts(text, BATCH_MERGE_SEP);
        if (!rc && b->tagged && o->kind == BATCH_VAL_STRING) {
            size_t item = o->parts[k] < b->n ? o->parts[k] : o->parts[k] - b->n;
            const BatchItem *it = &b->items[item];
            rc = buf_putc(text, '[');
            if (!rc)
                rc = escaped ? put_escaped(b, text, at(&b->keys, it->key_off), it->key_len)
                             : buf_append(text, at(&b->keys, it->key_off), it->key_len);
            if (!rc)
                rc = buf_puts(text, "] ");
        }
        size_t start = text->len;
        if (!rc)
            rc = escaped ? put_escaped(b, text, at(&b->ans, a->off), a->len)
                         : buf_append(text, at(&b->ans, a->off), a->len);
        if (!rc)
            rc = add_span(b, start, text->len - start, o->parts[k]);
    }
    return rc;
}

static int render_json(Batch *b, Buf *text)
{
    int rc = buf_putc(text, '{');
    for (size_t k = 0; rc == 0 && k < b->nout; k++) {
        const BatchOut *o = &b->out[k];
        if (k)
            rc = buf_putc(text, ',');
        if (!rc)
            rc = json_put_string(text, at(&b->keys, o->key_off), o->key_len);
        if (!rc)
            rc = buf_putc(text, ':');
        if (rc)
            break;
        switch (o->kind) {
        case BATCH_VAL_STRING:
        case BATCH_VAL_OBJECT:
            rc = buf_puts(text, o->kind == BATCH_VAL_OBJECT ? "{\"answer\":\"" : "\"");
            if (!rc)
                rc = put_parts(b, o, true, text);
            if (!rc)
                rc = buf_puts(text, o->kind == BATCH_VAL_OBJECT ? "\"}" : "\"");
            break;
        case BATCH_VAL_NUMBER: { /* the first part only: it is a number, "7; 3" would not be */
            BatchOut first = *o;
            first.nparts = 1;
            rc = put_parts(b, &first, false, text);
            break;
        }
        case BATCH_VAL_INDEX: {
            size_t start = text->len;
            rc = fmt_u64(text, (uint64_t)o->item + 1);
            if (!rc)
                rc = add_span(b, start, text->len - start, o->parts[0]);
            break;
        }
        }
    }
    if (!rc)
        rc = buf_putc(text, '}');
    return rc;
}

/* batch_invalid: the answers as prose lines, not JSON. */
static int render_invalid(Batch *b, Buf *text)
{
    int rc = buf_puts(text, BATCH_INVALID_HEAD);
    for (size_t k = 0; rc == 0 && k < b->nout; k++) {
        const BatchOut *o = &b->out[k];
        rc = buf_putc(text, '\n');
        if (!rc)
            rc = buf_append(text, at(&b->keys, o->key_off), o->key_len);
        if (!rc)
            rc = buf_puts(text, ": ");
        if (!rc)
            rc = put_parts(b, o, false, text);
    }
    return rc;
}

int batch_compose(Batch *b, const AnswerKey *key, const AnswerQuery *base, bool judge_system, ModelStats *count,
                  Buf *text)
{
    size_t n = b->n;
    int rc = grow((void **)&b->answers, &b->acap, 2 * n, sizeof *b->answers);
    if (!rc)
        rc = grow((void **)&b->out, &b->ocap, n, sizeof *b->out);
    if (rc)
        return rc;
    memset(b->answers, 0, 2 * n * sizeof *b->answers);
    buf_reset(&b->ans);
    b->nout = b->nspans = 0;
    b->unknown_next = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = answer_item(b, key, base, judge_system, i, false, count)))
            return rc;
        const BatchItem *it = &b->items[i];
        b->out[b->nout++] = (BatchOut){(long)i, it->key_off, it->key_len, BATCH_VAL_STRING, 1, {i}};
    }
    for (size_t i = 0; i < n; i++) {
        const BatchItem *it = &b->items[i];
        if (it->fault != FAULT_NONE && (rc = apply_fault(b, key, base, judge_system, i, it->fault)))
            return rc;
        if (it->garble != FAULT_NONE && (rc = apply_fault(b, key, base, judge_system, i, it->garble)))
            return rc;
    }
    size_t start = text->len;
    rc = b->invalid ? render_invalid(b, text) : render_json(b, text);
    if (rc)
        return rc;
    for (size_t k = 0; k < b->nspans; k++) /* spans relative to the content */
        b->spans[k].off -= start;
    if (b->truncated) { /* cut in the middle, never inside a UTF-8 character */
        size_t len = text->len - start, cut = len / 2;
        const char *s = text->data + start;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
        text->len = start + cut;
        text->data[text->len] = '\0';
    }
    return 0;
}
