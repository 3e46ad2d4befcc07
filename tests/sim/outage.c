#include "outage.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define OUTAGE_MAX_SECONDS 31536000.0 /* a year: a start or duration beyond it is a typo */
#define OUTAGE_PROVIDER "provider:"

/* A number of seconds >= 0 (> 0 when positive), s[0..n). Returns 0 and the ms in *ms, or -1. */
static int seconds(const char *s, size_t n, bool positive, int64_t *ms)
{
    char tmp[32];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno || *end || !isdigit((unsigned char)tmp[0]) || !(v >= 0 && v <= OUTAGE_MAX_SECONDS))
        return -1;
    *ms = (int64_t)llround(v * 1000.0);
    return positive && *ms == 0 ? -1 : 0;
}

/* Append a window for every model target[0..len) names (a model, or provider:NAME). Returns how many
 * were added (0: it names none), or -1 when out of memory. */
static long add_windows(Outages *o, const Catalog *cat, const char *target, size_t len, OutageWindow w)
{
    size_t pl = strlen(OUTAGE_PROVIDER);
    bool by_provider = len > pl && memcmp(target, OUTAGE_PROVIDER, pl) == 0;
    long added = 0;
    for (size_t i = 0; i < cat->n; i++) {
        const SimModel *m = &cat->models[i];
        const char *name = by_provider ? m->provider : m->name;
        const char *want = by_provider ? target + pl : target;
        size_t wl = by_provider ? len - pl : len;
        if (!name || strlen(name) != wl || memcmp(name, want, wl) != 0)
            continue;
        OutageWindow *grown = realloc(o->w, (o->n + 1) * sizeof *grown);
        if (!grown)
            return -1;
        o->w = grown;
        w.model = i;
        o->w[o->n++] = w;
        added++;
    }
    return added;
}

/* One spec: the fields from the right, with and then without a mode. */
static int parse_one(Outages *o, const char *spec, size_t pos, const Catalog *cat, TqErr *err)
{
    const char *c[4] = {NULL, NULL, NULL, NULL}; /* the last four ':' from the right */
    size_t nc = 0;
    for (size_t i = strlen(spec); i > 0 && nc < 4; i--)
        if (spec[i - 1] == ':')
            c[nc++] = spec + i - 1;
    const char *end = spec + strlen(spec);
    for (int with_mode = 1; with_mode >= 0; with_mode--) {
        size_t need = with_mode ? 3 : 2; /* colons after the target */
        if (nc < need)
            continue;
        OutageWindow w = {0, 0, 0, DOWN_503};
        const char *start = c[need - 1] + 1, *dur = c[need - 2] + 1;
        const char *dur_end = with_mode ? c[0] : end;
        if (with_mode) {
            const char *mode = c[0] + 1;
            if (strcmp(mode, "503") == 0)
                w.mode = DOWN_503;
            else if (strcmp(mode, "drop") == 0)
                w.mode = DOWN_DROP;
            else
                continue;
        }
        int64_t dur_ms;
        if (seconds(start, (size_t)(c[need - 2] - start), false, &w.start_ms) ||
            seconds(dur, (size_t)(dur_end - dur), true, &dur_ms))
            continue;
        w.end_ms = w.start_ms + dur_ms;
        long added = add_windows(o, cat, spec, (size_t)(c[need - 1] - spec), w);
        if (added < 0)
            return tq_err(err, TQ_ENOMEM, "out of memory reading --outage");
        if (added > 0)
            return 0;
    }
    return tq_err(err, TQ_EINVAL,
                  "--outage number %zu: expected MODEL:START_S:DURATION_S[:503|drop] with MODEL a model of the "
                  "catalog or provider:NAME of one, START_S >= 0 and DURATION_S > 0 seconds",
                  pos);
}

static int by_model(const void *a, const void *b)
{
    const OutageWindow *x = a, *y = b;
    return (x->model > y->model) - (x->model < y->model);
}

int outage_parse(Outages *o, const char *const *specs, size_t n, const Catalog *cat, TqErr *err)
{
    memset(o, 0, sizeof *o);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = parse_one(o, specs[i], i + 1, cat, err);
    if (!rc && !(o->first = calloc(cat->n + 1, sizeof *o->first)))
        rc = tq_err(err, TQ_ENOMEM, "out of memory reading --outage");
    if (rc) {
        outage_free(o);
        return rc;
    }
    if (o->n)
        qsort(o->w, o->n, sizeof *o->w, by_model);
    for (size_t i = 0, k = 0; i <= cat->n; i++) {
        while (k < o->n && o->w[k].model < i)
            k++;
        o->first[i] = k;
    }
    return 0;
}

void outage_free(Outages *o)
{
    if (!o)
        return;
    free(o->w);
    free(o->first);
    memset(o, 0, sizeof *o);
}

DownMode outage_mode(const Outages *o, const SimModel *m, int64_t elapsed_ms)
{
    if (m->down != DOWN_NO)
        return m->down;
    if (!o->first)
        return DOWN_NO;
    for (size_t k = o->first[m->index]; k < o->first[m->index + 1]; k++)
        if (elapsed_ms >= o->w[k].start_ms && elapsed_ms < o->w[k].end_ms)
            return o->w[k].mode;
    return DOWN_NO;
}

int outage_reply(DownMode mode, SimReply *rep)
{
    if (mode == DOWN_DROP) {
        rep->action = REPLY_DROP;
        return 0;
    }
    /* What an OpenAI-compatible gateway answers while the model behind it is unavailable. */
    return reply_error(rep, 503, "The server is currently unavailable. Please try again later.", "server_error",
                       NULL, "service_unavailable");
}
