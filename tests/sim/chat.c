#include "chat.h"

#include "answer.h"
#include "batch.h"
#include "compress.h"
#include "faults.h"
#include "fmt.h"
#include "hash.h"
#include "json.h"
#include "judge.h"
#include "outage.h"
#include "ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SALT_LATENCY 0x9b05688c2b3e6c1fULL
#define SALT_FAULT 0x1f83d9abfb41bd6bULL
#define SALT_ID 0x5be0cd19137e2179ULL
#define SALT_VARIANT 0xcbbb9d5dc1059ed8ULL
#define SALT_REASONING 0x629a292a367cd507ULL
#define CHAT_MAX_TOKENS 2000000 /* jsmn tokens per request body */
#define CHAT_MAX_N 128
#define CHAT_MAX_ESTIMATE ((int64_t)1 << 40) /* max_tokens counted at admission, so n * it cannot overflow */

typedef struct ChatReq {
    const SimModel *model;
    int64_t prompt_tokens;
    bool has_system;        /* the first message is a system (or developer) message */
    bool judge_system;      /* ... and it starts with JUDGE_SYSTEM_PREFIX: maybe a judge request */
    bool batch_system;      /* ... and it ends with BATCH_INSTRUCTION: maybe a batch request */
    bool batch_tagged;      /* ... the tagged variant: answers start with "[id] " */
    bool compress_system;   /* ... and it asks to shorten a document: maybe a compression request */
    int64_t compress_target; /* ... to at most this many tokens */
    uint64_t system_hash;
    int64_t system_tokens;
    int last_user;          /* token index of the last user message's content, -1 if none */
    int64_t max_tokens;     /* 0 = no limit */
    bool has_temperature;
    double temperature;
    bool logprobs;
    int top_logprobs;
    bool json_mode;         /* response_format json_object or json_schema */
    int n;
    bool has_seed;
    int64_t seed;
} ChatReq;

/* Tokens of a text: one per 4 bytes, rounded up. */
static int64_t tokens_of(size_t bytes) { return (int64_t)((bytes + 3) / 4); }

/* The text of a message content at token c: a string, or an array of parts whose "text" fields are
 * joined. *s points at raw JSON bytes when they need no decoding, else into sim->tmp. Returns 0,
 * or -1 when the content has a type a chat message cannot have. */
static int content_text(Sim *sim, const JsonDoc *d, int c, const char **s, size_t *n)
{
    *s = "";
    *n = 0;
    if (c < 0 || json_is_null(d, c))
        return 0;
    JsonType t = json_type(d, c);
    if (t == JSON_STRING) {
        size_t rn;
        const char *raw = json_raw(d, c, &rn);
        if (!memchr(raw, '\\', rn)) {
            *s = raw;
            *n = rn;
            return 0;
        }
        buf_reset(&sim->tmp);
        if (json_string(d, c, &sim->tmp, NULL))
            return -1;
    } else if (t == JSON_ARRAY) {
        buf_reset(&sim->tmp);
        int k = c + 1;
        for (int i = 0; i < json_size(d, c); i++, k = json_skip(d, k)) {
            int text = json_get(d, k, "text");
            if (text >= 0 && json_string(d, text, &sim->tmp, NULL))
                return -1;
        }
    } else {
        return -1;
    }
    *s = sim->tmp.data ? sim->tmp.data : "";
    *n = sim->tmp.len;
    return 0;
}

static int bad_request(SimReply *rep, const char *msg, const char *param, const char *code)
{
    return reply_error(rep, 400, msg, "invalid_request_error", param, code);
}

/* Fill cr from the parsed body. Returns 0, or 1 after writing a 4xx reply into rep, or a negative
 * TQ_E* code when the reply itself could not be built. */
static int parse_request(Sim *sim, const JsonDoc *d, ChatReq *cr, SimReply *rep)
{
    memset(cr, 0, sizeof *cr);
    cr->last_user = -1;
    buf_reset(&sim->labels);
    buf_reset(&sim->received);
    bool keep_received = answer_key_docs(sim->answers) > 0; /* only context rows read it */
    cr->n = 1;
    int rc;
    if (json_type(d, 0) != JSON_OBJECT)
        return (rc = bad_request(rep, "The request body must be a JSON object.", NULL, NULL)) ? rc : 1;
    int model = json_get(d, 0, "model");
    if (json_type(d, model) != JSON_STRING)
        return (rc = bad_request(rep, "You must provide a model parameter.", "model", NULL)) ? rc : 1;
    size_t mlen;
    const char *mname = json_raw(d, model, &mlen);
    cr->model = catalog_find(&sim->catalog, mname, mlen);
    if (!cr->model) {
        char msg[300];
        snprintf(msg, sizeof msg, "The model `%.*s` does not exist", mlen > 200 ? 200 : (int)mlen, mname);
        rc = reply_error(rep, 404, msg, "invalid_request_error", "model", "model_not_found");
        return rc ? rc : 1;
    }
    sim->stats.models[cr->model->index].requests++;

    int msgs = json_get(d, 0, "messages");
    if (json_type(d, msgs) != JSON_ARRAY || json_size(d, msgs) < 1)
        return (rc = bad_request(rep, "Missing required parameter: 'messages'.", "messages",
                                 "missing_required_parameter"))
                   ? rc
                   : 1;
    int k = msgs + 1;
    for (int i = 0; i < json_size(d, msgs); i++, k = json_skip(d, k)) {
        int role = json_get(d, k, "role");
        if (json_type(d, role) != JSON_STRING)
            return (rc = bad_request(rep, "Missing required parameter: 'messages[].role'.", "messages",
                                     "missing_required_parameter"))
                       ? rc
                       : 1;
        int content = json_get(d, k, "content");
        const char *s;
        size_t n;
        if (content_text(sim, d, content, &s, &n))
            return (rc = bad_request(rep, "Invalid type for 'messages[].content'.", "messages", "invalid_type"))
                       ? rc
                       : 1;
        cr->prompt_tokens += tokens_of(n) + 4;
        if (keep_received && (buf_append(&sim->received, s, n) || buf_putc(&sim->received, '\n')))
            return TQ_ENOMEM;
        bool system = json_eq(d, role, "system") || json_eq(d, role, "developer");
        if (i == 0 && system) {
            buf_reset(&sim->labels);
            if (answer_offered_labels(s, n, &sim->labels))
                return TQ_ENOMEM;
            cr->has_system = true;
            cr->system_hash = hash_fnv1a64(s, n);
            cr->system_tokens = tokens_of(n) + 4;
            cr->judge_system = judge_is_system(s, n);
            int bs = batch_is_system(s, n);
            cr->batch_system = bs > 0;
            cr->batch_tagged = bs == 2;
            cr->compress_system = compress_is_system(s, n, &cr->compress_target);
        }
        if (json_eq(d, role, "user"))
            cr->last_user = content;
    }

    int v;
    int64_t iv;
    if ((v = json_get(d, 0, "max_completion_tokens")) < 0 || json_is_null(d, v))
        v = json_get(d, 0, "max_tokens");
    if (v >= 0 && !json_is_null(d, v)) {
        if (json_int64(d, v, &iv) || iv < 1)
            return (rc = bad_request(rep, "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1.",
                                     "max_tokens", "integer_below_min_value"))
                       ? rc
                       : 1;
        cr->max_tokens = iv;
    }
    if ((v = json_get(d, 0, "temperature")) >= 0 && !json_is_null(d, v)) {
        if (json_double(d, v, &cr->temperature) || cr->temperature < 0 || cr->temperature > 2)
            return (rc = bad_request(rep, "Invalid 'temperature': expected a number between 0 and 2.",
                                     "temperature", "invalid_value"))
                       ? rc
                       : 1;
        cr->has_temperature = true;
    }
    if ((v = json_get(d, 0, "logprobs")) >= 0 && !json_is_null(d, v) && json_bool(d, v, &cr->logprobs))
        return (rc = bad_request(rep, "Invalid type for 'logprobs': expected a boolean.", "logprobs",
                                 "invalid_type"))
                   ? rc
                   : 1;
    if ((v = json_get(d, 0, "top_logprobs")) >= 0 && !json_is_null(d, v)) {
        if (json_int64(d, v, &iv) || iv < 0 || iv > 20)
            return (rc = bad_request(rep, "Invalid 'top_logprobs': expected an integer between 0 and 20.",
                                     "top_logprobs", "invalid_value"))
                       ? rc
                       : 1;
        cr->top_logprobs = (int)iv;
    }
    if ((v = json_get(d, 0, "response_format")) >= 0 && !json_is_null(d, v)) {
        int type = json_get(d, v, "type");
        if (json_eq(d, type, "json_object") || json_eq(d, type, "json_schema"))
            cr->json_mode = true;
        else if (!json_eq(d, type, "text"))
            return (rc = bad_request(rep, "Invalid 'response_format.type': expected text, json_object or json_schema.",
                                     "response_format", "invalid_value"))
                       ? rc
                       : 1;
    }
    if ((v = json_get(d, 0, "n")) >= 0 && !json_is_null(d, v)) {
        if (json_int64(d, v, &iv) || iv < 1 || iv > CHAT_MAX_N)
            return (rc = bad_request(rep, "Invalid 'n': expected an integer between 1 and 128.", "n",
                                     "invalid_value"))
                       ? rc
                       : 1;
        cr->n = (int)iv;
    }
    if ((v = json_get(d, 0, "seed")) >= 0 && !json_is_null(d, v)) {
        if (json_int64(d, v, &cr->seed))
            return (rc = bad_request(rep, "Invalid type for 'seed': expected an integer.", "seed", "invalid_type"))
                       ? rc
                       : 1;
        cr->has_seed = true;
    }
    return 0;
}

/* Which sample a choice is: at temperature 0 every choice is the same (deterministic) sample;
 * otherwise choice i and the request's seed pick independent samples. Choice 0 without a seed is
 * the base sample, so a plain request always gets the same answer. */
static uint64_t choice_variant(const ChatReq *cr, int i)
{
    if (cr->has_temperature && cr->temperature == 0)
        return 0;
    if (i == 0 && !cr->has_seed)
        return 0;
    return hash_mix64(((uint64_t)i << 32) ^ (uint64_t)cr->seed ^ SALT_VARIANT) | 1;
}

/* Replace text by {"answer": text} unless it already is a JSON object, as a model in JSON mode
 * would answer. */
static int json_wrap(Sim *sim)
{
    JsonDoc d;
    if (json_parse(&d, sim->text.data ? sim->text.data : "", sim->text.len, 4096, NULL) == 0) {
        bool object = json_type(&d, 0) == JSON_OBJECT;
        json_doc_free(&d);
        if (object)
            return 0;
    }
    buf_reset(&sim->tmp);
    int rc = buf_puts(&sim->tmp, "{\"answer\":");
    if (!rc)
        rc = json_put_string(&sim->tmp, sim->text.data ? sim->text.data : "", sim->text.len);
    if (!rc)
        rc = buf_putc(&sim->tmp, '}');
    if (!rc) {
        Buf t = sim->text;
        sim->text = sim->tmp;
        sim->tmp = t;
    }
    return rc;
}

static int fill_oversized(Buf *text, size_t bytes)
{
    static const char filler[] = "This answer is far too long for any client to accept in one piece. ";
    buf_reset(text);
    int rc = buf_reserve(text, bytes);
    while (rc == 0 && text->len < bytes)
        rc = buf_append(text, filler, sizeof filler - 1);
    return rc;
}


static void hex16(uint64_t v, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
    out[16] = '\0';
}

typedef struct ChatTotals {
    int64_t completion_tokens;
    int64_t reasoning_tokens;
} ChatTotals;

/* A judge request: the score as content, stats of the first choice. */
static int judge_choice(Sim *sim, const ChatReq *cr, const JudgeItem *judge, const AnswerQuery *q, int i, Answer *a)
{
    Judgement j;
    int rc = judge_compose(judge, q, cr->json_mode, &j, a, &sim->text);
    if (rc == 0 && i == 0) {
        ModelStats *ms = &sim->stats.models[cr->model->index];
        if (j.outcome == JUDGE_RIGHT)
            ms->judge_right++;
        else if (j.outcome == JUDGE_FOOLED)
            ms->judge_fooled++;
        else
            ms->judge_unkeyed++;
    }
    return rc;
}

/* A compression request: the shortened document as content, stats of the first choice. Its logprobs
 * are those of a sure answer (confidence the model's mean for a correct one). */
static int compress_choice(Sim *sim, const ChatReq *cr, const CompressItem *it, const AnswerQuery *q, int i,
                           Answer *a)
{
    const SimModel *m = cr->model;
    CompressResult res = {0, 0};
    memset(a, 0, sizeof *a);
    a->outcome = ANSWER_CORRECT;
    a->confidence = m->answer.correct.mean;
    a->token_spread = m->answer.token_spread;
    a->stream = hash_mix64(hash_fnv1a64(q->prompt, q->prompt_len) ^ q->variant ^ q->seed);
    int rc = compress_compose(sim->answers, it, &m->compress, m->skill, q->seed, m->name, q->variant, q->prompt,
                              q->prompt_len, &sim->text, &res);
    if (rc == 0 && i == 0) {
        ModelStats *ms = &sim->stats.models[m->index];
        ms->compress_requests++;
        ms->compress_facts += res.facts;
        ms->compress_facts_kept += res.kept;
    }
    return rc;
}

/* The content of the empty and echo_long faults: nothing, or the document (the prompt when the
 * request is no compression request) twice — longer than what was sent. */
static int fill_fault_content(Sim *sim, Fault fault, const CompressItem *compress, const char *prompt,
                              size_t prompt_len)
{
    buf_reset(&sim->text);
    if (fault == FAULT_EMPTY)
        return 0;
    const char *s = compress ? compress->doc : prompt;
    size_t n = compress ? compress->doc_len : prompt_len;
    int rc = buf_append(&sim->text, s, n);
    if (!rc)
        rc = buf_puts(&sim->text, "\n\n");
    return rc ? rc : buf_append(&sim->text, s, n);
}

/* judge is NULL for an ordinary request; batch is set for a batch request (sim->batch parsed);
 * compress is set for a compression request. */
static int put_choice(Sim *sim, const ChatReq *cr, const JudgeItem *judge, const CompressItem *compress, bool batch,
                      Fault fault, int i, uint64_t prompt_hash, const char *prompt, size_t prompt_len, Buf *b,
                      ChatTotals *tot)
{
    const SimModel *m = cr->model;
    AnswerQuery q = {.seed = sim->cfg->seed,
                     .model = m->name,
                     .skill = m->skill,
                     .params = &m->answer,
                     .judge = &m->judge,
                     .prompt = prompt,
                     .prompt_len = prompt_len,
                     .variant = choice_variant(cr, i),
                     .labels = sim->labels.data,
                     .labels_len = sim->labels.len,
                     .received = answer_key_docs(sim->answers) ? (sim->received.data ? sim->received.data : "") : NULL,
                     .received_len = sim->received.len};
    Answer a;
    buf_reset(&sim->text);
    ModelStats *ms = &sim->stats.models[m->index];
    int rc;
    if (batch)
        rc = batch_compose(&sim->batch, sim->answers, &q, cr->judge_system, i == 0 ? ms : NULL, &sim->text);
    else if (compress)
        rc = compress_choice(sim, cr, compress, &q, i, &a);
    else
        rc = judge ? judge_choice(sim, cr, judge, &q, i, &a) : answer_compose(sim->answers, &q, &a, &sim->text);
    if (rc)
        return rc;
    if ((fault == FAULT_EMPTY || fault == FAULT_ECHO_LONG) &&
        (rc = fill_fault_content(sim, fault, compress, prompt, prompt_len)))
        return rc;
    if (i == 0 && !judge && !batch && !compress) {
        if (a.outcome == ANSWER_CORRECT)
            ms->correct++;
        else if (a.outcome == ANSWER_WRONG)
            ms->wrong++;
        else
            ms->unkeyed++;
    }
    /* a batch reply is a JSON object already (or, faulted, must stay as it is) */
    if (cr->json_mode && !judge && !batch && !compress && fault != FAULT_EMPTY && (rc = json_wrap(sim)))
        return rc;
    bool oversized = fault == FAULT_OVERSIZED && i == 0;
    if (oversized && (rc = fill_oversized(&sim->text, sim->cfg->oversized_bytes)))
        return rc;
    const char *text = sim->text.data ? sim->text.data : "";
    size_t len = sim->text.len;
    const char *finish = "stop";
    int64_t ctoks = tokens_of(len) + 1;
    /* an oversized reply ignores max_tokens: it plays a server that misbehaves */
    if (!oversized && cr->max_tokens > 0 && ctoks > cr->max_tokens) {
        /* A judge's score is one token: max_tokens 1 keeps it whole (the limit only leaves no room
         * for the end of the message); other answers lose their last token's worth. */
        size_t keep = judge ? (size_t)cr->max_tokens * 4 : (size_t)(cr->max_tokens - 1) * 4;
        len = utf8_cut(text, len, keep);
        ctoks = cr->max_tokens;
        finish = "length";
    }
    int64_t rtoks = 0;
    if (m->reasoning) /* thinking grows with the prompt, varies per prompt and sample */
        rtoks = 48 + (int64_t)(hash_mix64(prompt_hash ^ q.variant ^ SALT_REASONING) % 464) +
                (cr->prompt_tokens / 4 > 1024 ? 1024 : cr->prompt_tokens / 4);
    tot->completion_tokens += ctoks + rtoks;
    tot->reasoning_tokens += rtoks;

    rc = fmt_kv(b, i ? ",{\"index\":" : "{\"index\":", i);
    if (!rc)
        rc = buf_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":");
    if (!rc)
        rc = json_put_string(b, text, len);
    if (!rc)
        rc = buf_puts(b, ",\"refusal\":null");
    if (!rc && m->reasoning && m->usage == USAGE_DEEPSEEK)
        rc = buf_puts(b, ",\"reasoning_content\":\"Let me work through this step by step before answering.\"");
    if (!rc)
        rc = buf_puts(b, "},\"logprobs\":");
    if (!rc) {
        if (cr->logprobs && m->logprobs && !oversized)
            rc = batch ? answer_put_logprobs_spans(b, text, len, sim->batch.spans, sim->batch.nspans,
                                                   cr->top_logprobs)
                       : answer_put_logprobs(b, text, len, &a, cr->top_logprobs);
        else
            rc = buf_puts(b, "null");
    }
    if (!rc)
        rc = buf_puts(b, ",\"finish_reason\":\"");
    if (!rc)
        rc = buf_puts(b, finish);
    if (!rc)
        rc = buf_puts(b, "\"}");
    return rc;
}

static int put_usage(const ChatReq *cr, int64_t cached, const ChatTotals *tot, Buf *b)
{
    int64_t p = cr->prompt_tokens, c = tot->completion_tokens;
    int rc = fmt_kv(b, ",\"usage\":{\"prompt_tokens\":", p);
    if (!rc)
        rc = fmt_kv(b, ",\"completion_tokens\":", c);
    if (!rc)
        rc = fmt_kv(b, ",\"total_tokens\":", p + c);
    if (cr->model->usage == USAGE_DEEPSEEK) {
        if (!rc)
            rc = fmt_kv(b, ",\"prompt_cache_hit_tokens\":", cached);
        if (!rc)
            rc = fmt_kv(b, ",\"prompt_cache_miss_tokens\":", p - cached);
        if (!rc && cr->model->reasoning)
            rc = fmt_kv(b, ",\"completion_tokens_details\":{\"reasoning_tokens\":", tot->reasoning_tokens);
        if (!rc && cr->model->reasoning)
            rc = buf_putc(b, '}');
    } else {
        if (!rc)
            rc = fmt_kv(b, ",\"prompt_tokens_details\":{\"cached_tokens\":", cached);
        if (!rc)
            rc = fmt_kv(b, ",\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":",
                        tot->reasoning_tokens);
        if (!rc)
            rc = buf_puts(b, ",\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}");
    }
    if (!rc)
        rc = buf_putc(b, '}');
    return rc;
}

/* Answer an admitted request. *fault_out gets the fault chosen; *used_tokens the prompt and
 * completion tokens of the answer when one was computed (left alone otherwise). */
static int answer_admitted(Sim *sim, const ChatReq *cr, const JsonDoc *d, const HttpReq *req, SimReply *rep,
                           Fault *fault_out, int64_t *used_tokens)
{
    const SimModel *m = cr->model;
    ModelStats *ms = &sim->stats.models[m->index];
    uint64_t seq = ++sim->seq;
    double fault_u = sim_unit(hash_mix64(sim->cfg->seed ^ seq * SALT_FAULT));

    /* The prompt is the last user message; markers in it choose faults and are not part of it. */
    const char *s;
    size_t n;
    content_text(sim, d, cr->last_user, &s, &n); /* validated by parse_request */
    buf_reset(&sim->prompt);
    int rc = buf_append(&sim->prompt, s, n);
    if (rc)
        return rc;
    const char *prompt = sim->prompt.data ? sim->prompt.data : "";
    size_t prompt_len = sim->prompt.len;
    uint64_t prompt_hash = hash_fnv1a64(prompt, prompt_len);
    bool batch = false;
    if (cr->batch_system) {
        sim->batch.tagged = cr->batch_tagged;
        if ((rc = batch_parse(&sim->batch, prompt, prompt_len)) < 0)
            return rc;
        batch = rc == 1;
    }
    JudgeItem judge_item;
    const JudgeItem *judge = NULL;
    CompressItem compress_item;
    const CompressItem *compress = NULL;
    Fault fault;
    if (batch) {
        /* Items carry their own markers, counted per item text; a request-level fault of any item
         * fails the whole call, as a provider would. */
        ms->batch_requests++;
        ms->batch_items += sim->batch.n;
        if (cr->judge_system)
            ms->judge_requests += batch_judge_items(&sim->batch, sim->answers);
        fault = batch_request_fault(&sim->batch, &sim->faults, m->name);
        if (fault == FAULT_NONE)
            fault = fault_from_rate(&sim->faults, fault_u);
    } else {
        FaultMarker mk[FAULT_MAX_MARKERS];
        int nmk = 0;
        if (memmem(prompt, prompt_len, "[[sim:", 6)) {
            buf_reset(&sim->stripped);
            nmk = fault_scan(prompt, prompt_len, mk, FAULT_MAX_MARKERS, &sim->stripped);
            if (nmk > 0) {
                prompt = sim->stripped.data ? sim->stripped.data : "";
                prompt_len = sim->stripped.len;
            }
        }
        if (cr->judge_system && judge_parse(sim->answers, prompt, prompt_len, &judge_item)) {
            judge = &judge_item;
            ms->judge_requests++;
        } else if (cr->compress_system && compress_parse(prompt, prompt_len, &compress_item)) {
            compress_item.target = cr->compress_target;
            compress = &compress_item;
        }
        fault = fault_choose(&sim->faults, prompt_hash, mk, nmk, m->name, fault_u);
    }
    *fault_out = fault;
    if (fault != FAULT_NONE)
        sim->stats.faults[fault]++;
    if (fault_is_error(fault))
        return fault_error_reply(fault, rep);

    uint64_t id = hash_mix64(sim->cfg->seed ^ seq ^ SALT_ID);
    char hex[17];
    hex16(id, hex);
    if ((rc = buf_puts(&rep->headers, "x-request-id: req_")) || (rc = buf_append(&rep->headers, hex, 16)) ||
        (rc = buf_puts(&rep->headers, "\r\n")))
        return rc;
    double lat_u = sim_unit(hash_mix64(sim->cfg->seed ^ seq * SALT_LATENCY));
    if (fault == FAULT_DROP) {
        rep->action = REPLY_DROP;
        rep->delay_ms = catalog_latency_ms(m, lat_u, 0);
        return 0;
    }
    if (fault == FAULT_INVALID) {
        rep->content_type = "text/html; charset=utf-8";
        rep->delay_ms = catalog_latency_ms(m, lat_u, 0);
        return buf_puts(&rep->body, "<html><head><title>oops</title></head><body>upstream returned "
                                    "an error page</body></html>\n");
    }

    if (batch) /* batch faults are chosen (and their counters used up) only for a reply that is sent */
        batch_plan(&sim->batch, &sim->faults, m->name,
                   sim->cfg->batch_garble > 0 ? hash_mix64(sim->cfg->seed ^ hash_fnv1a64(req->body ? req->body : "", req->body_len)) : 0,
                   sim->cfg->batch_garble, &sim->stats);

    Buf *b = &rep->body;
    rc = buf_puts(b, "{\"id\":\"chatcmpl-sim");
    if (!rc)
        rc = buf_append(b, hex, 16);
    if (!rc)
        rc = fmt_kv(b, "\",\"object\":\"chat.completion\",\"created\":", (int64_t)sim->now_s);
    if (!rc)
        rc = buf_puts(b, ",\"model\":");
    if (!rc)
        rc = json_put_cstr(b, m->name);
    if (!rc)
        rc = buf_puts(b, ",\"system_fingerprint\":\"fp_tierq_sim\",\"choices\":[");
    ChatTotals tot = {0, 0};
    for (int i = 0; rc == 0 && i < cr->n; i++)
        rc = put_choice(sim, cr, judge, compress, batch, fault, i, prompt_hash, prompt, prompt_len, b, &tot);
    if (!rc)
        rc = buf_putc(b, ']');

    int64_t cached = 0;
    if (cr->has_system) {
        bool seen = pcache_seen(&sim->pcache, hash_mix64(hash_fnv1a64(m->name, strlen(m->name)) ^ cr->system_hash));
        if (seen && cr->system_tokens >= sim->cfg->cache_min_tokens)
            cached = cr->system_tokens;
    }
    if (!rc && fault != FAULT_NOUSAGE && m->usage != USAGE_NONE)
        rc = put_usage(cr, cached, &tot, b);
    if (!rc)
        rc = buf_putc(b, '}');
    if (rc)
        return rc;

    *used_tokens = cr->prompt_tokens + tot.completion_tokens;
    ms->answered++;
    ms->prompt_tokens += (uint64_t)cr->prompt_tokens;
    ms->cached_tokens += (uint64_t)cached;
    ms->completion_tokens += (uint64_t)tot.completion_tokens;
    ms->reasoning_tokens += (uint64_t)tot.reasoning_tokens;

    rep->delay_ms = fault == FAULT_SLOW ? sim->cfg->slow_ms : catalog_latency_ms(m, lat_u, tot.completion_tokens);
    if (fault == FAULT_TRUNCATED)
        rep->action = REPLY_TRUNCATE;
    return 0;
}

/* Outages, then rate limits, then the answer; the rate-limit headers on every reply of a limited
 * model but an injected 429 fault (it carries its own) and a dropped connection. */
static int answer_request(Sim *sim, const ChatReq *cr, const JsonDoc *d, const HttpReq *req, SimReply *rep)
{
    const SimModel *m = cr->model;
    ModelStats *ms = &sim->stats.models[m->index];
    int64_t now = sim->now_ms;
    DownMode down = outage_mode(&sim->outages, m, now - sim->stats.started_ms);
    if (down != DOWN_NO) {
        ms->outage++;
        return outage_reply(down, rep);
    }
    int64_t per_choice = cr->max_tokens < CHAT_MAX_ESTIMATE ? cr->max_tokens : CHAT_MAX_ESTIMATE;
    int64_t charged = cr->prompt_tokens + (int64_t)cr->n * per_choice;
    RateCheck rc = ratelimit_admit(&sim->limits, m->index, m->rpm, m->tpm, charged, now);
    int err;
    if (rc.verdict != RATE_OK) {
        ms->rate_limited++;
        err = ratelimit_reply(&rc, m->name, rep);
        return err ? err : ratelimit_headers(&sim->limits, m->index, m->rpm, m->tpm, now, rep);
    }
    Fault fault = FAULT_NONE;
    int64_t used = charged; /* no answer computed: the admission charge stands */
    if ((err = answer_admitted(sim, cr, d, req, rep, &fault, &used)))
        return err;
    ratelimit_correct(&sim->limits, m->index, m->tpm, charged, used, now);
    if (fault == FAULT_429 || rep->action == REPLY_DROP)
        return 0;
    return ratelimit_headers(&sim->limits, m->index, m->rpm, m->tpm, now, rep);
}

int chat_handle(Sim *sim, const HttpReq *req, SimReply *rep)
{
    sim->stats.chat_requests++;
    JsonDoc d;
    TqErr err = {0};
    if (json_parse(&d, req->body ? req->body : "", req->body_len, CHAT_MAX_TOKENS, &err))
        return bad_request(rep,
                           "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                           "using your HTTP library correctly.)",
                           NULL, NULL);
    ChatReq cr;
    int rc = parse_request(sim, &d, &cr, rep);
    if (rc == 0)
        rc = answer_request(sim, &cr, &d, req, rep);
    json_doc_free(&d);
    return rc < 0 ? rc : 0;
}
