/* zdict_bench — would a trained zstd dictionary pay for the response cache's short answers?
 *
 * Reads stored answers on stdin, one per line as psql prints a bytea (`\x` and the hex digits of one
 * zstd frame: `psql -tA -c "SELECT answer_z FROM tierq.cache WHERE kind = 'k' ORDER BY key"`), and
 * decompresses each. Answers at even positions train a dictionary (ZDICT_trainFromBuffer); those at
 * odd positions are compressed one by one, each as its own frame, the way the cache stores them:
 *   (a) a plain frame at the level, with its content checksum (what common/zpack.c writes today);
 *   (b) the same with the dictionary (checksum and dictionary id in the frame);
 *   (c) the raw bytes;
 *   (e) per answer the smaller of (a) and (c) with one byte to say which (store raw unless it pays);
 * and, as the floor zstd could reach with the dictionary, (d) magicless frames without checksum, content
 * size or dictionary id. Every compressed answer is decompressed again and compared. One line per
 * figure on stdout; the dictionary is tried at each capacity given (bytes, comma-separated).
 *
 * usage: zdict_bench [LEVEL [CAPACITIES]]   (default 3 and 1024,4096,16384)
 * Exit status 0, or 1 with one line on stderr (bad input, an answer over 1 MiB, a zstd error). */
#include <zdict.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_format / ZSTD_f_zstd1_magicless (stable in practice since 1.4) */
#include <zstd.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZB_MAX_ANSWER (1u << 20) /* a bench of short answers: refuse larger ones rather than grow */
#define ZB_MAX_ANSWERS 4000000
#define ZB_MAX_DICT (1u << 20)

typedef struct Answers {
    char *data;     /* every answer, concatenated */
    size_t len, cap;
    size_t *size;   /* size[i]: answer i's length */
    size_t *off;    /* off[i]: where it starts in data */
    size_t n, ncap;
} Answers;

typedef struct Totals {
    size_t raw, plain, dict, bare;
    size_t smaller, nsmaller; /* per answer the smaller of raw + 1 tag byte and its plain frame; frames chosen */
} Totals;

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "zdict_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return -1;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return fail("out of memory", NULL);
    *p = q;
    *cap = c;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One line `\x<hex>` into frame (bytes in *flen). */
static int parse_line(const char *line, size_t len, unsigned char *frame, size_t cap, size_t *flen)
{
    if (len < 2 || line[0] != '\\' || line[1] != 'x' || (len - 2) % 2 != 0 || (len - 2) / 2 > cap)
        return fail("a line is not a bytea in hex form (\\x...) of a frame up to 1 MiB", NULL);
    for (size_t i = 2; i < len; i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        if (hi < 0 || lo < 0)
            return fail("a line holds a character that is not a hex digit", NULL);
        frame[(i - 2) / 2] = (unsigned char)(hi * 16 + lo);
    }
    *flen = (len - 2) / 2;
    return 0;
}

static int add_answer(Answers *a, const unsigned char *frame, size_t flen)
{
    /* tierq stores an answer as it is when a frame would not be smaller (no zstd magic in front) */
    static const unsigned char magic[4] = {0x28, 0xB5, 0x2F, 0xFD};
    bool framed = flen >= 4 && memcmp(frame, magic, 4) == 0;
    unsigned long long raw = framed ? ZSTD_getFrameContentSize(frame, flen) : flen;
    if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN)
        return fail("a stored answer is not a zstd frame with its content size", NULL);
    if (raw > ZB_MAX_ANSWER)
        return fail("a stored answer is over 1 MiB", NULL);
    if (a->n >= ZB_MAX_ANSWERS)
        return fail("more answers than this bench reads", NULL);
    if (grow((void **)&a->data, &a->cap, a->len + (size_t)raw + 1, 1) ||
        grow((void **)&a->size, &a->ncap, a->n + 1, sizeof *a->size))
        return -1;
    size_t ncap = a->ncap;
    void *off = realloc(a->off, ncap * sizeof *a->off);
    if (!off)
        return fail("out of memory", NULL);
    a->off = off;
    size_t got = flen;
    if (framed)
        got = ZSTD_decompress(a->data + a->len, (size_t)raw + 1, frame, flen);
    else
        memcpy(a->data + a->len, frame, flen);
    if (ZSTD_isError(got))
        return fail("a stored answer does not decompress", ZSTD_getErrorName(got));
    if (got != raw)
        return fail("a stored answer decompresses to another length than its frame says", NULL);
    a->off[a->n] = a->len;
    a->size[a->n] = got;
    a->len += got;
    a->n++;
    return 0;
}

static int read_answers(FILE *in, Answers *a)
{
    int rc = -1;
    char *line = NULL;
    size_t lcap = 0;
    unsigned char *frame = malloc(ZB_MAX_ANSWER);
    if (!frame)
        return fail("out of memory", NULL);
    ssize_t got;
    errno = 0;
    while ((got = getline(&line, &lcap, in)) >= 0) {
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        size_t flen;
        if (parse_line(line, len, frame, ZB_MAX_ANSWER, &flen) || add_answer(a, frame, flen))
            goto cleanup;
    }
    if (ferror(in)) {
        fail("reading stdin", strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(line);
    free(frame);
    return rc;
}

static int zcheck(size_t r, const char *what)
{
    return ZSTD_isError(r) ? fail(what, ZSTD_getErrorName(r)) : 0;
}

/* Compress src with cx as set up, decompress with dx (dictionary referenced or not) and compare;
 * *out: the frame's size. */
static int roundtrip(ZSTD_CCtx *cx, ZSTD_DCtx *dx, const char *src, size_t len, unsigned char *buf, size_t cap,
                     char *back, size_t *out)
{
    size_t n = ZSTD_compress2(cx, buf, cap, src, len);
    if (zcheck(n, "compress"))
        return -1;
    size_t m = ZSTD_decompressDCtx(dx, back, ZB_MAX_ANSWER, buf, n);
    if (zcheck(m, "decompress"))
        return -1;
    if (m != len || memcmp(back, src, len) != 0)
        return fail("an answer did not survive compression", NULL);
    *out = n;
    return 0;
}

/* The measured half (odd positions), one frame per answer: plain, and with dict when dict_len > 0. */
static int measure(const Answers *a, int level, const void *dict, size_t dict_len, Totals *t)
{
    int rc = -1;
    size_t cap = ZSTD_compressBound(ZB_MAX_ANSWER);
    unsigned char *buf = malloc(cap);
    char *back = malloc(ZB_MAX_ANSWER);
    ZSTD_CCtx *plain = ZSTD_createCCtx(), *withd = ZSTD_createCCtx(), *bare = ZSTD_createCCtx();
    ZSTD_DCtx *dplain = ZSTD_createDCtx(), *dwith = ZSTD_createDCtx(), *dbare = ZSTD_createDCtx();
    if (!buf || !back || !plain || !withd || !bare || !dplain || !dwith || !dbare) {
        fail("out of memory", NULL);
        goto cleanup;
    }
    if (zcheck(ZSTD_CCtx_setParameter(plain, ZSTD_c_compressionLevel, level), "level") ||
        zcheck(ZSTD_CCtx_setParameter(plain, ZSTD_c_checksumFlag, 1), "checksum"))
        goto cleanup;
    if (dict_len > 0) {
        if (zcheck(ZSTD_CCtx_setParameter(withd, ZSTD_c_compressionLevel, level), "level") ||
            zcheck(ZSTD_CCtx_setParameter(withd, ZSTD_c_checksumFlag, 1), "checksum") ||
            zcheck(ZSTD_CCtx_loadDictionary(withd, dict, dict_len), "load dictionary") ||
            zcheck(ZSTD_DCtx_loadDictionary(dwith, dict, dict_len), "load dictionary") ||
            zcheck(ZSTD_CCtx_setParameter(bare, ZSTD_c_compressionLevel, level), "level") ||
            zcheck(ZSTD_CCtx_setParameter(bare, ZSTD_c_format, ZSTD_f_zstd1_magicless), "format") ||
            zcheck(ZSTD_CCtx_setParameter(bare, ZSTD_c_contentSizeFlag, 0), "content size") ||
            zcheck(ZSTD_CCtx_setParameter(bare, ZSTD_c_dictIDFlag, 0), "dictionary id") ||
            zcheck(ZSTD_CCtx_loadDictionary(bare, dict, dict_len), "load dictionary") ||
            zcheck(ZSTD_DCtx_setParameter(dbare, ZSTD_d_format, ZSTD_f_zstd1_magicless), "format") ||
            zcheck(ZSTD_DCtx_loadDictionary(dbare, dict, dict_len), "load dictionary"))
            goto cleanup;
    }
    *t = (Totals){0};
    for (size_t i = 1; i < a->n; i += 2) {
        const char *src = a->data + a->off[i];
        size_t len = a->size[i], n;
        t->raw += len;
        if (roundtrip(plain, dplain, src, len, buf, cap, back, &n))
            goto cleanup;
        t->plain += n;
        t->smaller += n < len + 1 ? n : len + 1;
        t->nsmaller += n < len + 1;
        if (dict_len == 0)
            continue;
        if (roundtrip(withd, dwith, src, len, buf, cap, back, &n))
            goto cleanup;
        t->dict += n;
        if (roundtrip(bare, dbare, src, len, buf, cap, back, &n))
            goto cleanup;
        t->bare += n;
    }
    rc = 0;
cleanup:
    free(buf);
    free(back);
    ZSTD_freeCCtx(plain);
    ZSTD_freeCCtx(withd);
    ZSTD_freeCCtx(bare);
    ZSTD_freeDCtx(dplain);
    ZSTD_freeDCtx(dwith);
    ZSTD_freeDCtx(dbare);
    return rc;
}

/* The training half (even positions, empty answers left out) as ZDICT wants it. */
static int training_set(const Answers *a, char **samples, size_t **sizes, unsigned *n, size_t *bytes)
{
    size_t cnt = 0, tot = 0;
    for (size_t i = 0; i < a->n; i += 2)
        if (a->size[i] > 0)
            cnt++, tot += a->size[i];
    *samples = malloc(tot ? tot : 1);
    *sizes = malloc((cnt ? cnt : 1) * sizeof **sizes);
    if (!*samples || !*sizes)
        return fail("out of memory", NULL);
    size_t k = 0, at = 0;
    for (size_t i = 0; i < a->n; i += 2) {
        if (a->size[i] == 0)
            continue;
        memcpy(*samples + at, a->data + a->off[i], a->size[i]);
        (*sizes)[k++] = a->size[i];
        at += a->size[i];
    }
    *n = (unsigned)cnt;
    *bytes = tot;
    return 0;
}

static double per(size_t bytes, size_t n)
{
    return n ? (double)bytes / (double)n : 0;
}

int main(int argc, char **argv)
{
    int level = argc > 1 ? atoi(argv[1]) : 3;
    const char *caps = argc > 2 ? argv[2] : "1024,4096,16384";
    int rc = 1;
    Answers a = {0};
    char *samples = NULL;
    size_t *sizes = NULL;
    void *dict = malloc(ZB_MAX_DICT);
    if (level < 1 || level > 19 || !dict) {
        fprintf(stderr, "usage: zdict_bench [LEVEL 1-19 [CAPACITIES]] < answers (one bytea per line)\n");
        goto cleanup;
    }
    if (read_answers(stdin, &a))
        goto cleanup;
    size_t measured = a.n / 2;
    if (measured == 0) {
        printf("fewer than 2 answers: nothing to measure\n");
        rc = 0;
        goto cleanup;
    }
    Totals t;
    if (measure(&a, level, NULL, 0, &t))
        goto cleanup;
    printf("%zu answers: %zu train the dictionary, %zu measured one by one (mean %.1f bytes raw)\n", a.n,
           a.n - measured, measured, per(t.raw, measured));
    printf("(c) raw:                 %8zu bytes\n", t.raw);
    printf("(a) zstd -%d + checksum:  %8zu bytes (%.1f per answer, %.2f x raw)\n", level, t.plain,
           per(t.plain, measured), (double)t.plain / (double)(t.raw ? t.raw : 1));
    printf("(e) smaller of (a), (c): %8zu bytes (%.1f per answer, %.2f x raw; the frame for %zu of %zu, 1 tag byte each)\n",
           t.smaller, per(t.smaller, measured), (double)t.smaller / (double)(t.raw ? t.raw : 1), t.nsmaller, measured);
    unsigned nsamples;
    size_t train_bytes;
    if (training_set(&a, &samples, &sizes, &nsamples, &train_bytes))
        goto cleanup;
    for (const char *p = caps; *p;) {
        char *end;
        unsigned long cap = strtoul(p, &end, 10);
        if (end == p || cap < 256 || cap > ZB_MAX_DICT) {
            fprintf(stderr, "zdict_bench: capacities are bytes between 256 and %u, comma-separated\n", ZB_MAX_DICT);
            goto cleanup;
        }
        p = *end == ',' ? end + 1 : end;
        size_t dlen = ZDICT_trainFromBuffer(dict, cap, samples, sizes, nsamples);
        if (ZDICT_isError(dlen)) {
            printf("(b) dictionary of up to %lu bytes: training on %u answers (%zu bytes) failed: %s\n", cap, nsamples,
                   train_bytes, ZDICT_getErrorName(dlen));
            continue;
        }
        if (measure(&a, level, dict, dlen, &t))
            goto cleanup;
        printf("(b) dictionary %5zu bytes (capacity %lu, trained on %zu bytes): %8zu bytes (%.1f per answer, %.2f x raw);"
               " floor (magicless, no checksum, size or id) %zu (%.1f per answer)\n",
               dlen, cap, train_bytes, t.dict, per(t.dict, measured), (double)t.dict / (double)(t.raw ? t.raw : 1),
               t.bare, per(t.bare, measured));
    }
    rc = 0;
cleanup:
    free(a.data);
    free(a.size);
    free(a.off);
    free(samples);
    free(sizes);
    free(dict);
    return rc;
}
