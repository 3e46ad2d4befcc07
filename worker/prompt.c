#include "prompt.h"

#include "json.h"
#include "openai.h"
#include "template.h"

#include <string.h>

/* Values for the placeholders of one job. */
typedef struct Vars {
    const TqKind *kind;
    const CallJob *cj;
    Buf labels; /* the joined label list, built on first use */
} Vars;

static const char *var_value(const char *name, size_t len, void *ud)
{
    Vars *v = ud;
    if (len == 6 && memcmp(name, "labels", 6) == 0 && v->kind->reads_labels) {
        if (v->labels.len == 0) {
            char *const *l = v->cj->nlabels > 0 ? v->cj->labels : v->kind->checks.labels;
            int n = v->cj->nlabels > 0 ? v->cj->nlabels : v->kind->checks.nlabels;
            for (int i = 0; i < n; i++)
                if ((i && buf_puts(&v->labels, ", ")) || buf_puts(&v->labels, l[i]))
                    return NULL;
        }
        return v->labels.data ? v->labels.data : "";
    }
    const TqParam *pm = config_kind_param(v->kind, name, len);
    if (!pm)
        return NULL;
    const char *own = v->cj->params ? v->cj->params[pm - v->kind->params] : NULL;
    return own ? own : pm->fallback;
}

int prompt_system(const TqKind *kind, const CallJob *cj, Buf *out, bool *present, TqErr *err)
{
    const char *sys = cj->job && cj->job->system_prompt ? cj->job->system_prompt : kind->system_prompt;
    *present = sys != NULL;
    if (!sys)
        return 0;
    Vars v = {.kind = kind, .cj = cj};
    buf_init(&v.labels, 0);
    int rc = template_expand(sys, strlen(sys), var_value, &v, out, err);
    buf_free(&v.labels);
    return rc;
}

int64_t prompt_system_tokens(const TqKind *kind, const CallJob *cj)
{
    Buf b;
    buf_init(&b, 0);
    bool present = false;
    int64_t n = 0;
    if (prompt_system(kind, cj, &b, &present, NULL) == 0 && present)
        n = oai_estimate_tokens(b.data ? b.data : "", b.len);
    buf_free(&b);
    return n;
}

/* Re-emit the JSON value at token i with placeholders filled into its strings. */
static int emit_value(const JsonDoc *d, int i, Vars *v, Buf *tmp, Buf *out, TqErr *err)
{
    JsonType t = json_type(d, i);
    int rc = 0;
    if (t == JSON_STRING) {
        buf_reset(tmp);
        rc = json_string(d, i, tmp, err);
        if (rc)
            return rc;
        Buf filled;
        buf_init(&filled, 0);
        rc = template_expand(tmp->data ? tmp->data : "", tmp->len, var_value, v, &filled, err);
        if (!rc)
            rc = json_put_string(out, filled.data ? filled.data : "", filled.len);
        buf_free(&filled);
        return rc;
    }
    if (t == JSON_OBJECT || t == JSON_ARRAY) {
        rc = buf_putc(out, t == JSON_OBJECT ? '{' : '[');
        int k = i + 1;
        for (int c = 0; c < json_size(d, i) && !rc; c++) {
            if (c)
                rc = buf_putc(out, ',');
            if (!rc && t == JSON_OBJECT) {
                size_t n;
                const char *raw = json_raw(d, k, &n);
                rc = buf_putc(out, '"') || buf_append(out, raw, n) || buf_puts(out, "\":");
                k++;
            }
            if (!rc)
                rc = emit_value(d, k, v, tmp, out, err);
            k = json_skip(d, k);
        }
        return rc ? rc : buf_putc(out, t == JSON_OBJECT ? '}' : ']');
    }
    size_t n;
    const char *raw = json_raw(d, i, &n);
    return buf_append(out, raw, n);
}

int prompt_extra_body(const TqModel *model, const TqKind *kind, const CallJob *cj, Buf *out, TqErr *err)
{
    if (!model->extra_body)
        return 0;
    JsonDoc d;
    if (json_parse(&d, model->extra_body, strlen(model->extra_body), 0, err) || json_type(&d, 0) != JSON_OBJECT) {
        json_doc_free(&d);
        return tq_err(err, TQ_EINVAL, "models.%s.extra_body is not a JSON object", model->name);
    }
    size_t start = out->len;
    Vars v = {.kind = kind, .cj = cj};
    buf_init(&v.labels, 0);
    Buf tmp;
    buf_init(&tmp, 0);
    int rc = 0;
    int k = 1;
    for (int c = 0; c < json_size(&d, 0) && !rc; c++, k = json_skip(&d, k + 1)) {
        size_t n;
        const char *raw = json_raw(&d, k, &n);
        rc = buf_puts(out, ",\"") || buf_append(out, raw, n) || buf_puts(out, "\":");
        if (!rc)
            rc = emit_value(&d, k + 1, &v, &tmp, out, err);
    }
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        if (!err || !err->msg[0])
            tq_err(err, rc, "cannot build the extra body fields of model %s", model->name);
    }
    buf_free(&tmp);
    buf_free(&v.labels);
    json_doc_free(&d);
    return rc;
}

int64_t prompt_max_tokens(const TqModel *model, int64_t wanted, int64_t input_tokens, bool *capped)
{
    int64_t cap = wanted;
    if (model->max_output_tokens > 0 && cap > model->max_output_tokens)
        cap = model->max_output_tokens; /* the model's hard limit: asking for more is a 400 */
    if (model->context_tokens > 0) {
        /* What the context leaves after the prompt; the prompt is an estimate, so keep a minimum. */
        int64_t room = model->context_tokens - input_tokens;
        int64_t floor = cap < PROMPT_MIN_OUTPUT_TOKENS ? cap : PROMPT_MIN_OUTPUT_TOKENS;
        if (room < floor)
            room = floor;
        if (cap > room)
            cap = room;
    }
    *capped = cap < wanted;
    return cap;
}
