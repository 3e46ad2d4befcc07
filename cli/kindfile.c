#include "kindfile.h"

#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KINDFILE_CONTEXT 3

const char *kindfile_fmt_bar(char *out, size_t cap, double v)
{
    snprintf(out, cap, "%.6f", v);
    size_t len = strlen(out);
    const char *dot = strchr(out, '.');
    size_t min_len = dot ? (size_t)(dot - out) + 3 : len;
    while (len > min_len && out[len - 1] == '0')
        out[--len] = '\0';
    return out;
}

/* The indentation (spaces and tabs) of the line holding text[at]. */
static size_t indent_of(const char *text, size_t at, const char **start)
{
    size_t ls = at;
    while (ls > 0 && text[ls - 1] != '\n')
        ls--;
    size_t n = 0;
    while (ls + n < at && (text[ls + n] == ' ' || text[ls + n] == '\t'))
        n++;
    *start = text + ls;
    return n;
}

int kindfile_replace_tiers(const char *text, size_t len, const KindFileTier *tiers, int n, Buf *out, TqErr *err)
{
    if (n < 1 || n > 8)
        return tq_err(err, TQ_EINVAL, "a kind has 1 to 8 tiers, not %d", n);
    JsonDoc d;
    if (json_parse(&d, text, len, 0, err))
        return TQ_EINVAL;
    int rc = 0;
    int arr = json_type(&d, 0) == JSON_OBJECT ? json_get(&d, 0, "tiers") : -1;
    if (arr < 0 || json_type(&d, arr) != JSON_ARRAY) {
        rc = tq_err(err, TQ_EINVAL, "no top-level \"tiers\" array");
        goto done;
    }
    size_t alen;
    const char *araw = json_raw(&d, arr, &alen);
    size_t a0 = (size_t)(araw - text), a1 = a0 + alen;
    /* layout of the old array: multi-line when it holds a newline */
    bool lines = memchr(araw, '\n', alen) != NULL;
    const char *ind = "", *close_ind = "";
    size_t ind_n = 0, close_n = 0;
    if (lines) {
        int first = json_size(&d, arr) > 0 ? json_at(&d, arr, 0) : -1;
        if (first >= 0) {
            size_t fl;
            const char *fr = json_raw(&d, first, &fl);
            ind_n = indent_of(text, (size_t)(fr - text), &ind);
        }
        close_n = indent_of(text, a1 - 1, &close_ind);
        if (!ind_n) { /* an empty or odd array: indent two more than its closing bracket */
            ind = "                ";
            ind_n = close_n + 2 < 16 ? close_n + 2 : 16;
        }
    }
    Buf b;
    buf_init(&b, len + 1024);
    rc = buf_append(&b, text, a0) || buf_putc(&b, '[');
    for (int t = 0; t < n && !rc; t++) {
        char bar[32];
        if (lines)
            rc = buf_putc(&b, '\n') || buf_append(&b, ind, ind_n);
        rc = rc || buf_puts(&b, "{\"model\": ") || json_put_cstr(&b, tiers[t].model);
        if (!rc && t + 1 < n)
            rc = buf_printf(&b, ", \"accept\": %s", kindfile_fmt_bar(bar, sizeof bar, tiers[t].accept));
        if (!rc && t > 0 && t + 1 < n && !isnan(tiers[t].agree))
            rc = buf_printf(&b, ", \"accept_if_agrees\": %s", kindfile_fmt_bar(bar, sizeof bar, tiers[t].agree));
        rc = rc || buf_putc(&b, '}') || (t + 1 < n && buf_puts(&b, lines ? "," : ", "));
    }
    if (!rc && lines)
        rc = buf_putc(&b, '\n') || buf_append(&b, close_ind, close_n);
    rc = rc || buf_putc(&b, ']') || buf_append(&b, text + a1, len - a1);
    if (rc) {
        buf_free(&b);
        rc = tq_err(err, TQ_ENOMEM, "out of memory rewriting the tiers");
        goto done;
    }
    JsonDoc check;
    if (json_parse(&check, b.data, b.len, 0, err)) {
        buf_free(&b);
        rc = TQ_EINVAL;
        goto done;
    }
    json_doc_free(&check);
    *out = b;
done:
    json_doc_free(&d);
    return rc;
}

/* Lines of s: offsets of each line's start; the count. A last line without '\n' counts. */
static size_t split_lines(const char *s, size_t n, size_t *starts, size_t cap)
{
    size_t k = 0, i = 0;
    while (i < n && k < cap) {
        starts[k++] = i;
        const char *nl = memchr(s + i, '\n', n - i);
        i = nl ? (size_t)(nl - s) + 1 : n;
    }
    return k;
}

static size_t line_len(size_t n, const size_t *starts, size_t count, size_t i)
{
    return (i + 1 < count ? starts[i + 1] : n) - starts[i];
}

static bool same_line(const char *a, size_t an, const size_t *as, size_t ac, size_t i, const char *b, size_t bn,
                      const size_t *bs, size_t bc, size_t j)
{
    size_t la = line_len(an, as, ac, i), lb = line_len(bn, bs, bc, j);
    return la == lb && memcmp(a + as[i], b + bs[j], la) == 0;
}

static int put_lines(Buf *out, char mark, const char *s, size_t n, const size_t *st, size_t count, size_t from,
                     size_t to)
{
    int rc = 0;
    for (size_t i = from; i < to && !rc; i++) {
        size_t l = line_len(n, st, count, i);
        rc = buf_putc(out, mark) || buf_append(out, s + st[i], l);
        if (!rc && (l == 0 || s[st[i] + l - 1] != '\n'))
            rc = buf_puts(out, "\n\\ No newline at end of file\n");
    }
    return rc;
}

int kindfile_unified_diff(const char *path, const char *a, size_t alen, const char *b, size_t blen, Buf *out)
{
    if (alen == blen && memcmp(a, b, alen) == 0)
        return 0;
    size_t acap = 1, bcap = 1;
    for (size_t i = 0; i < alen; i++)
        acap += a[i] == '\n';
    for (size_t i = 0; i < blen; i++)
        bcap += b[i] == '\n';
    size_t *as = malloc(acap * sizeof *as), *bs = malloc(bcap * sizeof *bs);
    if (!as || !bs) {
        free(as);
        free(bs);
        return TQ_ENOMEM;
    }
    size_t ac = split_lines(a, alen, as, acap), bc = split_lines(b, blen, bs, bcap);
    size_t pre = 0;
    while (pre < ac && pre < bc && same_line(a, alen, as, ac, pre, b, blen, bs, bc, pre))
        pre++;
    size_t suf = 0;
    while (suf < ac - pre && suf < bc - pre &&
           same_line(a, alen, as, ac, ac - 1 - suf, b, blen, bs, bc, bc - 1 - suf))
        suf++;
    size_t ctx0 = pre > KINDFILE_CONTEXT ? pre - KINDFILE_CONTEXT : 0;
    size_t ctx1 = suf > KINDFILE_CONTEXT ? KINDFILE_CONTEXT : suf;
    size_t a_from = ctx0, a_to = ac - suf + ctx1, b_from = ctx0, b_to = bc - suf + ctx1;
    char cwd[1024];
    size_t n = path[0] == '/' && getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
    if (n > 0 && strncmp(path, cwd, n) == 0 && path[n] == '/')
        path += n + 1;
    int rc = buf_printf(out, "--- %s\n+++ %s\n@@ -%zu,%zu +%zu,%zu @@\n", path, path, a_to > a_from ? a_from + 1 : a_from,
                        a_to - a_from, b_to > b_from ? b_from + 1 : b_from, b_to - b_from);
    rc = rc || put_lines(out, ' ', a, alen, as, ac, ctx0, pre);
    rc = rc || put_lines(out, '-', a, alen, as, ac, pre, ac - suf);
    rc = rc || put_lines(out, '+', b, blen, bs, bc, pre, bc - suf);
    rc = rc || put_lines(out, ' ', a, alen, as, ac, ac - suf, ac - suf + ctx1);
    free(as);
    free(bs);
    return rc;
}

int kindfile_read(const char *path, unsigned max, Buf *out, TqErr *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tq_err(err, TQ_EIO, "cannot read %s: %s", path, strerror(errno));
    buf_init(out, max);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(out, chunk, n);
    if (!rc && ferror(f))
        rc = TQ_EIO;
    fclose(f);
    if (rc) {
        buf_free(out);
        return tq_err(err, rc == TQ_EIO ? TQ_EIO : TQ_ELIMIT, "cannot read %s (larger than %u bytes?)", path, max);
    }
    return 0;
}
