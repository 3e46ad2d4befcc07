#include "batch.h"

#include "json.h"
#include "openai.h"
#include "cost.h"
#include "prompt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char BATCH_INSTRUCTIONS[] =
    "\n\nYou will receive several items as a JSON object mapping item ids to items. Answer each item "
    "independently, following the instructions above. Reply with only a JSON object that maps each item id "
    "to its answer as a string, with exactly the ids you received. Begin each answer with its item id in "
    "square brackets and a space, like \"[1] \".";

int batch_build_body(Call *c, Buf *out, TqErr *err)
{
    const TqModel *m = &c->cfg->models[c->send_model];
    const CallJob *first = NULL;
    for (int i = 0; i < c->njobs && !first; i++)
        if (c->jobs[i].job)
            first = &c->jobs[i];
    if (!first)
        return tq_err(err, TQ_EINVAL, "batch: no job left in the call");
    Buf sys, user, extra;
    buf_init(&sys, 0);
    buf_init(&user, 0);
    buf_init(&extra, 0);
    /* Jobs batch together only with identical params, so the first job's system prompt (its
     * parameters filled in) is every job's. */
    bool has_system = false;
    int rc = prompt_system(c->kind, first, &sys, &has_system, err);
    if (!rc)
        rc = buf_puts(&sys, BATCH_INSTRUCTIONS);
    if (!rc)
        rc = buf_putc(&user, '{');
    int64_t max_tokens = 0;
    const TqModel *sent_to = &c->cfg->models[c->send_model];
    for (int i = 0, k = 0; i < c->njobs && !rc; i++) {
        CallJob *cj = &c->jobs[i];
        if (!cj->job)
            continue;
        /* a prompt compressed for the kind (compress.prompt) goes as the tier should see it */
        int64_t saved = 0;
        const char *prompt = call_job_prompt(c, cj, &saved);
        if (saved > 0) {
            cj->compress_tokens_saved += saved;
            cj->compress_saved_pico = cost_add(cj->compress_saved_pico, cost_of_call(&sent_to->prices, saved, 0, 0));
        }
        char id[16];
        snprintf(id, sizeof id, "%d", i + 1);
        rc = buf_puts(&user, k++ ? ", " : "");
        if (!rc)
            rc = json_put_cstr(&user, id);
        if (!rc)
            rc = buf_puts(&user, ": ");
        if (!rc)
            rc = json_put_cstr(&user, prompt);
        /* each answer's own budget, plus room for its key and quotes */
        max_tokens += cj->max_tokens + 8;
    }
    if (!rc)
        rc = buf_putc(&user, '}');
    if (!rc)
        rc = prompt_extra_body(m, c->kind, first, &extra, err);
    if (rc) {
        buf_free(&sys);
        buf_free(&user);
        buf_free(&extra);
        return err && err->msg[0] ? rc : tq_err(err, rc, "cannot build the batch prompt");
    }
    bool capped = false;
    int64_t input = oai_estimate_tokens(sys.data, sys.len) + oai_estimate_tokens(user.data, user.len);
    max_tokens = prompt_max_tokens(m, max_tokens, input, &capped);
    c->sent_max_tokens = max_tokens;
    c->max_tokens_capped = capped;
    OaiRequest r = {
        .model = m->api_model,
        .system = sys.data,
        .system_len = sys.len,
        .user = user.data,
        .user_len = user.len,
        .max_tokens = max_tokens,
        .max_tokens_field =
            m->max_tokens_field == TQ_MAXTOK_MAX_COMPLETION_TOKENS ? OAI_MAX_COMPLETION_TOKENS : OAI_MAX_TOKENS,
        .temperature = first->temperature,
        .logprobs = m->logprobs && c->kind->checks.logprobs,
        .json_object = m->json_output,
        .system_as = m->system_as == TQ_SYSTEM_AS_USER ? OAI_SYSTEM_IN_USER : OAI_SYSTEM_MESSAGE,
        .extra_members = extra.data,
    };
    rc = oai_build_request(&r, out, err);
    buf_free(&sys);
    buf_free(&user);
    buf_free(&extra);
    return rc;
}

/* Another item's tag inside an answer: "[" digits "] ". */
static bool has_tag(const char *s)
{
    for (const char *p = strchr(s, '['); p; p = strchr(p + 1, '[')) {
        const char *q = p + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p + 1 && q[0] == ']' && q[1] == ' ')
            return true;
    }
    return false;
}

/* Models often wrap a JSON reply in a Markdown code fence ("```json\n{...}\n```") even when asked for
 * JSON only. The object inside is the answer: return its byte range [*start, *end) in content, or
 * the whole content when there is no fence. Offsets stay those of content, so item ranges (and
 * their token logprobs) line up with the reply as sent. */
static void unfence(const char *s, size_t n, size_t *start, size_t *end)
{
    size_t a = 0, b = n;
    while (a < b && isspace((unsigned char)s[a]))
        a++;
    while (b > a && isspace((unsigned char)s[b - 1]))
        b--;
    *start = 0;
    *end = n;
    if (b - a < 6 || memcmp(s + a, "```", 3) != 0 || memcmp(s + b - 3, "```", 3) != 0)
        return;
    size_t open = a + 3;
    while (open < b - 3 && s[open] != '\n') /* the info string: "json", "JSON", "" */
        open++;
    if (open >= b - 3)
        return;
    *start = open + 1;
    *end = b - 3;
}

int batch_split_answers(const char *content, size_t len, int nitems, BatchItem *items, int *unknown, TqErr *err)
{
    memset(items, 0, (size_t)nitems * sizeof *items);
    *unknown = 0;
    JsonDoc d;
    TqErr perr = {0};
    size_t from = 0, to = len;
    unfence(content, len, &from, &to);
    const char *whole = content;
    content += from;
    len = to - from;
    if (json_parse(&d, content, len, 100000, &perr))
        return tq_err(err, TQ_EPARSE, "batch answer is not json: %s", perr.msg);
    if (json_type(&d, 0) != JSON_OBJECT) {
        json_doc_free(&d);
        return tq_err(err, TQ_EPARSE, "batch answer is not a json object");
    }
    int *seen = calloc((size_t)nitems, sizeof *seen);
    if (!seen) {
        json_doc_free(&d);
        return tq_err(err, TQ_ENOMEM, "out of memory");
    }
    int n = json_size(&d, 0);
    int k = 1;
    for (int c = 0; c < n; c++, k = json_skip(&d, k + 1)) {
        size_t klen;
        const char *key = json_raw(&d, k, &klen);
        int id = 0;
        bool digits = klen > 0 && klen < 8;
        for (size_t i = 0; i < klen && digits; i++) {
            if (key[i] < '0' || key[i] > '9')
                digits = false;
            else
                id = id * 10 + (key[i] - '0');
        }
        if (!digits || id < 1 || id > nitems || (klen > 1 && key[0] == '0')) {
            (*unknown)++;
            continue;
        }
        BatchItem *it = &items[id - 1];
        if (++seen[id - 1] > 1) {
            /* Two answers for one id: neither can be trusted to be this item's. */
            free(it->answer);
            it->answer = NULL;
            it->problem = "batch_item_duplicated";
            continue;
        }
        int v = k + 1;
        if (json_type(&d, v) != JSON_STRING) {
            it->problem = "batch_item_malformed";
            continue;
        }
        char *value = json_strdup(&d, v);
        size_t vlen;
        const char *raw = json_raw(&d, v, &vlen);
        if (!value) {
            it->problem = "batch_item_malformed";
            continue;
        }
        /* The answer must carry its own item's tag, "[id] ", and no other: an answer that landed
         * under a neighbour's id, or two answers merged into one value, are caught here. */
        char tag[24];
        int tl = snprintf(tag, sizeof tag, "[%d] ", id);
        if (strncmp(value, tag, (size_t)tl) != 0) {
            free(value);
            it->problem = "batch_item_mislabeled";
            continue;
        }
        if (has_tag(value + tl)) {
            free(value);
            it->problem = "batch_item_merged";
            continue;
        }
        it->answer = strdup(value + tl);
        free(value);
        it->start = (size_t)(raw - whole) + (size_t)tl; /* the tag has no escapes */
        it->end = (size_t)(raw - whole) + vlen;
        if (!it->answer)
            it->problem = "batch_item_malformed";
    }
    for (int i = 0; i < nitems; i++)
        if (!seen[i])
            items[i].problem = "batch_item_missing";
    free(seen);
    json_doc_free(&d);
    return 0;
}

void batch_items_free(BatchItem *items, int n)
{
    for (int i = 0; items && i < n; i++)
        free(items[i].answer);
}

void batch_weights(const Call *c, int64_t *weights)
{
    int live = 0;
    const CallJob *first = NULL;
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job) {
            live++;
            if (!first)
                first = &c->jobs[i];
        }
    /* the shared prefix as sent: the system prompt with its parameters filled in, and the instructions */
    int64_t shared = (first ? prompt_system_tokens(c->kind, first) : 0) +
                     oai_estimate_tokens(BATCH_INSTRUCTIONS, strlen(BATCH_INSTRUCTIONS));
    for (int i = 0; i < c->njobs; i++) {
        const QueueJob *j = c->jobs[i].job;
        weights[i] = j ? shared / (live ? live : 1) + oai_estimate_tokens(j->prompt, strlen(j->prompt)) : 0;
    }
}
