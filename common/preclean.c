#include "preclean.h"

#include "hash.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool is_tag_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '/' || c == '!' || c == '?'; }

static bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'; }

/* Length of a tag starting at s[0] == '<', or 0 when it does not look like one: after '<' (and '/',
 * '!' or '?') a name, then a blank, '>' or '/'. So "<p>", "</div>", "<a href=...>" are tags and
 * "<jane@example.org>", "<https://example.org>", "a < b" are text. */
static size_t tag_len(const char *s, size_t n)
{
    if (n < 3 || !is_tag_start(s[1]))
        return 0;
    size_t i = 1;
    if (s[i] == '/' || s[i] == '!' || s[i] == '?')
        i++;
    size_t name = i;
    while (i < n && is_name_char(s[i]))
        i++;
    if (i == name && s[name - 1] != '!') /* "<!--" and "<!DOCTYPE" are markup too */
        return 0;
    if (i >= n || !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '>' || s[i] == '/' || s[name - 1] == '!'))
        return 0;
    for (; i < n && i < 512; i++) {
        if (s[i] == '>')
            return i + 1;
        if (s[i] == '<')
            return 0;
    }
    return 0;
}

static const struct {
    const char *entity;
    char c;
} ENTITIES[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&apos;", '\''}, {"&nbsp;", ' '}};

/* Pass 1: tags out, entities decoded, blanks collapsed, line-end spaces cut, CRs dropped. */
static int clean_inline(const char *in, size_t len, Buf *out)
{
    int rc = 0;
    bool blank = false; /* a space is pending */
    for (size_t i = 0; i < len && !rc; i++) {
        char c = in[i];
        size_t t;
        if (c == '<' && (t = tag_len(in + i, len - i)) > 0) {
            i += t - 1;
            blank = true; /* a tag separated words */
            continue;
        }
        if (c == '&') {
            size_t k = 0;
            while (k < sizeof ENTITIES / sizeof *ENTITIES &&
                   strncmp(in + i, ENTITIES[k].entity, strlen(ENTITIES[k].entity)) != 0)
                k++;
            if (k < sizeof ENTITIES / sizeof *ENTITIES) {
                i += strlen(ENTITIES[k].entity) - 1;
                c = ENTITIES[k].c;
            }
        }
        if (c == '\r')
            continue;
        if (c == ' ' || c == '\t') {
            blank = true;
            continue;
        }
        if (c == '\n') {
            blank = false; /* spaces before a newline are cut */
            rc = buf_putc(out, '\n');
            continue;
        }
        if (blank && out->len > 0 && out->data[out->len - 1] != '\n')
            rc = buf_putc(out, ' ');
        blank = false;
        if (!rc)
            rc = buf_putc(out, c);
    }
    return rc;
}

typedef struct Seen {
    uint64_t *slots; /* open addressing; 0 = empty */
    size_t cap, n;
} Seen;

/* True when h was already there; inserts it otherwise. */
static bool seen_add(Seen *s, uint64_t h)
{
    if (h == 0)
        h = 1;
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        uint64_t *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return false; /* no memory: keep the line */
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                for (size_t j = s->slots[i] & (nc - 1);; j = (j + 1) & (nc - 1))
                    if (!ns[j]) {
                        ns[j] = s->slots[i];
                        break;
                    }
        free(s->slots);
        s->slots = ns;
        s->cap = nc;
    }
    for (size_t j = h & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (s->slots[j] == h)
            return true;
        if (!s->slots[j]) {
            s->slots[j] = h;
            s->n++;
            return false;
        }
    }
}

int preclean_context(const char *in, size_t len, Buf *out)
{
    size_t start = out->len;
    Buf mid;
    buf_init(&mid, 0);
    int rc = clean_inline(in, len, &mid);
    Seen seen = {0};
    int blanks = 0;
    for (size_t i = 0; i < mid.len && !rc;) {
        const char *line = mid.data + i;
        const char *nl = memchr(line, '\n', mid.len - i);
        size_t n = nl ? (size_t)(nl - line) : mid.len - i;
        i += n + (nl ? 1 : 0);
        if (n == 0) {
            if (++blanks > 1 || out->len == start)
                continue; /* one blank line between paragraphs, none at the top */
            rc = buf_putc(out, '\n');
            continue;
        }
        if (n >= PRECLEAN_REPEAT_MIN && seen_add(&seen, hash_fnv1a64(line, n)))
            continue;
        blanks = 0;
        rc = buf_append(out, line, n) || buf_putc(out, '\n');
    }
    while (!rc && out->len > start && out->data[out->len - 1] == '\n') /* no newline at the end */
        out->len--;
    if (rc)
        out->len = start;
    if (out->data)
        out->data[out->len] = '\0';
    free(seen.slots);
    buf_free(&mid);
    return rc;
}
