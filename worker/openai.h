/* openai.h — the OpenAI-compatible chat completions protocol, with no I/O.
 *
 * This module turns a logical request into the JSON body for POST {base}/chat/completions, turns a
 * response or error body into plain structs, and decides what a failed call means (retry, fail the
 * job, or stop sending to the provider). It never touches sockets, clocks (callers pass `now`),
 * the database or the log, so every function is safe to call from any thread and never blocks.
 *
 * Providers differ (DESIGN.md §4): OpenAI, DeepSeek, vLLM, llama.cpp, Ollama and Qwen all speak
 * "OpenAI-compatible" with their own details, and some omit whole blocks. Parsing is defensive:
 * missing optional fields are reported as absent, never guessed, and nothing from the body is
 * trusted to be well formed.
 *
 * Secrets: nothing here formats an API key or request header. Provider error messages are copied
 * from the response body only, and substrings that look like keys ("sk-...", "Bearer ...") are
 * redacted on the way in, because some providers echo part of the key back ("Incorrect API key
 * provided: sk-abc1****wxyz"). Callers still register the real key with log_add_secret. */
#ifndef TQ_OPENAI_H
#define TQ_OPENAI_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- request ---------------------------------------------------------------------------------- */

/* Which field carries the output limit: older servers (vLLM, llama.cpp, Ollama, DeepSeek) only know
 * max_tokens; OpenAI wants max_completion_tokens and rejects max_tokens for reasoning models. */
typedef enum { OAI_MAX_TOKENS = 0, OAI_MAX_COMPLETION_TOKENS } OaiMaxTokensField;

/* Where the system text goes: its own system message (the default), prepended to the user message
 * with a blank line (models that reject the system role), or nowhere (models that take one user
 * message and their instructions in extra fields, such as Qwen-MT). */
typedef enum { OAI_SYSTEM_MESSAGE = 0, OAI_SYSTEM_IN_USER, OAI_SYSTEM_OMIT } OaiSystemAs;

/* A single-turn chat request. All pointers are borrowed for the duration of oai_build_request.
 * Text may hold any bytes: quotes, control characters, invalid UTF-8 and NUL are escaped or
 * replaced by U+FFFD (json_put_string), so the body is always valid JSON. */
typedef struct OaiRequest {
    const char *model;      /* required, non-empty */
    const char *system;     /* NULL: no system message. Emitted first, byte-identical for a given
                             * input, so providers can serve the shared prefix from their cache. */
    size_t system_len;      /* bytes of system; 0 means strlen(system) */
    const char *user;       /* required (may be "") */
    size_t user_len;        /* bytes of user; 0 means strlen(user). Set it to carry embedded NULs. */
    int64_t max_tokens;     /* 0: omit; < 0 is TQ_EINVAL */
    OaiMaxTokensField max_tokens_field;
    double temperature;     /* < 0: omit; NaN/inf is TQ_EINVAL */
    bool logprobs;          /* ask for per-token logprobs (choices[].logprobs.content) */
    int top_logprobs;       /* 0: omit; only sent when logprobs; 0..20 */
    bool json_object;       /* response_format {"type":"json_object"} */
    bool has_seed;
    int64_t seed;
    OaiSystemAs system_as;
    const char *extra_members; /* NULL, or raw JSON members ",\"k\":v,..." appended to the object as
                                * they are (prompt_extra_body builds them; valid JSON by contract) */
} OaiRequest;

/* Append the JSON body for the request to out. Returns 0; TQ_EINVAL for a missing model or user or
 * an out-of-range parameter (message names the field); TQ_ELIMIT if out's cap is reached. On
 * failure out is restored to its length before the call (nothing half-written stays behind). */
int oai_build_request(const OaiRequest *req, Buf *out, TqErr *err);

/* ---- response --------------------------------------------------------------------------------- */

typedef struct OaiUsage {
    bool present;              /* false: no usable usage block (absent, null, or without integer
                                * prompt_tokens and completion_tokens); the caller estimates and
                                * marks the call as estimated. The counts below are then 0. */
    int64_t prompt_tokens;     /* includes cached_tokens, as providers report it */
    int64_t cached_tokens;     /* prompt_tokens_details.cached_tokens (OpenAI, Qwen, vLLM, llama.cpp)
                                * or prompt_cache_hit_tokens (DeepSeek); clamped to prompt_tokens */
    int64_t completion_tokens; /* includes reasoning_tokens */
    int64_t reasoning_tokens;  /* completion_tokens_details.reasoning_tokens; clamped */
    int64_t total_tokens;      /* as reported, or prompt + completion when absent */
} OaiUsage;

/* Summary of choices[0].logprobs.content[].logprob (or the legacy logprobs.token_logprobs[]). */
typedef struct OaiLogprobs {
    bool present;        /* true only when at least one token carried a numeric logprob */
    int n_tokens;        /* tokens counted */
    double sum_logprob;  /* sum of natural-log probabilities (<= 0); mean = sum / n_tokens */
    double min_logprob;  /* the least confident token */
} OaiLogprobs;

/* One token of choices[0].logprobs.content: where its text sits in the decoded content. */
typedef struct OaiTokenLogprob {
    uint32_t start, len;  /* byte range in OaiResponse.content (the tokens' texts laid end to end) */
    float logprob;
} OaiTokenLogprob;

/* A parsed chat.completion, first choice only. Strings are malloc'd, valid UTF-8 with NUL replaced
 * by U+FFFD, and owned by the struct; release with oai_response_free. */
typedef struct OaiResponse {
    char *id;            /* "" when absent */
    char *model;         /* "" when absent (the model that actually served, may differ from asked) */
    char *content;       /* message.content decoded; "" when null (refusal, tool call, filter).
                          * Content given as an array of {type:"text",text} parts is joined. */
    size_t content_len;  /* strlen(content) */
    char *refusal;       /* message.refusal, NULL when absent, null or empty */
    char *finish_reason; /* "stop", "length", "content_filter", "tool_calls",
                          * "insufficient_system_resource", ...; "" when absent or null */
    bool has_reasoning;  /* message.reasoning_content (DeepSeek, vLLM) or message.reasoning is a
                          * non-empty string, or the content began with a <think> block (removed);
                          * the reasoning text itself is never kept */
    size_t reasoning_bytes; /* size of that reasoning text, for estimates */
    bool no_choice;      /* choices was present but empty ([]): no answer, yet usage may be billed */
    char *choice_error;  /* choices[0].error.message (OpenRouter: the upstream provider failed while
                          * answering, finish_reason "error"), one cleaned line; NULL when absent */
    OaiUsage usage;
    OaiLogprobs logprobs;
    OaiTokenLogprob *tokens; /* per-token logprobs, only from oai_parse_response_tokens; else NULL */
    int ntokens;
} OaiResponse;

/* Parse a 2xx response body. max_tokens_json caps the jsmn tokens (<= 0: JSON_DEFAULT_MAX_TOKENS).
 *
 * Reasoning is never part of the answer: DeepSeek's message.reasoning_content is not kept, and a
 * reasoning block at the start of the content — "<think>...</think>" as Qwen3 or DeepSeek-R1 emit it
 * when served without a reasoning parser, or content that holds a "</think>" with no opening tag
 * (the chat template opened it) — is cut off together with the whitespace after it, and counted in
 * reasoning_bytes. Content that opens "<think>" and never closes it (cut off while thinking) keeps
 * nothing: content "" with has_reasoning. Token logprobs then cover only the remaining content.
 *
 * `choices: []` (a gateway or a content filter answering with usage but no choice) is not an error
 * here: out->no_choice is set, content is "", and the usage is reported so the call can be charged.
 *
 * Returns 0 and fills out; on failure out is not touched and err says why:
 *   TQ_EPARSE "truncated json"                  body cut short (dropped connection, size cap)
 *   TQ_EPARSE "invalid json near byte N"        not JSON (an HTML page from a proxy, ...)
 *   TQ_EPARSE "response is not a json object"
 *   TQ_EPARSE "response carries an error: ..."  a 200 with an {"error":...} body
 *   TQ_EPARSE "response has no choices"         choices missing or not an array
 *   TQ_EPARSE "choice has no message"
 *   TQ_ELIMIT / TQ_ENOMEM                        token cap reached / out of memory
 * A TQ_EPARSE on a 2xx body is a transport-level fault worth a retry (see OAI_NET_BAD_BODY). */
int oai_parse_response(const char *body, size_t len, int max_tokens_json, OaiResponse *out, TqErr *err);

/* Same, also keeping every token's logprob and byte range (for a batched answer, whose items each
 * need their own confidence). */
int oai_parse_response_tokens(const char *body, size_t len, int max_tokens_json, OaiResponse *out, TqErr *err);

/* Summary of the logprobs of the tokens overlapping content bytes [start, end); present = false when
 * the response kept no tokens or none overlaps. */
void oai_logprobs_in_range(const OaiResponse *r, size_t start, size_t end, OaiLogprobs *out);

/* Free the strings and zero the struct. oai_response_free(NULL) does nothing. */
void oai_response_free(OaiResponse *r);

/* ---- errors ----------------------------------------------------------------------------------- */

#define OAI_ERR_MSG_MAX 400 /* bytes of provider message kept (cut on a UTF-8 boundary, "..." added) */

/* An error response. Fixed-size fields: nothing to free, safe to copy by value. All text is one
 * printable line of valid UTF-8 (control characters become spaces), so it can go straight into a
 * log line or the jobs.last_error column. */
typedef struct OaiError {
    int http_status;
    char type[64];    /* error.type ("invalid_request_error", "BadRequestError"), or error.status
                       * (Gemini); "" when absent */
    char code[64];    /* error.code as text: "rate_limit_exceeded", "insufficient_quota"; an integer
                       * code (vLLM, llama.cpp: 400, 500) as its decimal text; "" when absent/null */
    char param[64];   /* error.param, "" when absent/null */
    char message[OAI_ERR_MSG_MAX + 4];
    bool json;        /* the body was a JSON error document (false: text/HTML/empty body) */
} OaiError;

/* Fill out from an error response. Accepts {"error":{message,type,param,code}} (OpenAI, vLLM >=0.9,
 * llama.cpp), {"object":"error","message",...,"code":400} (older vLLM), {"error":"text"} (Ollama),
 * {"detail":"text"}, a one-element array around any of these (Gemini), and any non-JSON body, whose
 * first bytes become the message (HTML tags stripped). body may be NULL when len is 0. Never fails
 * on body content; returns TQ_EINVAL only when out is NULL. */
int oai_parse_error(int http_status, const char *body, size_t len, OaiError *out);

/* ---- classification ---------------------------------------------------------------------------- */

typedef enum {
    OAI_OK = 0,  /* 2xx: not an error */
    OAI_RETRY,   /* transient: back off (honouring retry-after) and send again */
    OAI_FAIL,    /* the request itself is wrong: fail the job with the provider's message */
    OAI_QUOTA,   /* the account is out of money or quota: stop sending to this provider */
} OaiVerdict;

/* Verdict for an HTTP response. e may be NULL (status only).
 *   2xx                                   OK
 *   402, or any status whose code or type is "insufficient_quota", "billing_not_active",
 *   "billing_hard_limit_reached", "Arrearage" (DashScope, with 400) or "insufficient_balance"
 *                                         QUOTA (OpenAI sends these with 429: not a rate limit)
 *   a context overflow (code context_length_exceeded, llama.cpp's exceed_context_size_error, the
 *   usual words) or a content filter (code content_filter, data_inspection_failed,
 *   content_policy_violation), whatever the status        FAIL (sending again cannot help)
 *   408, 409, 425, 429, 498 (Groq flex), 5xx          RETRY
 *   400, 401, 403, 404, 422, other 4xx    FAIL
 *   1xx, 3xx (redirects are not followed) FAIL;  0 / out of range: RETRY (treated as transport) */
OaiVerdict oai_classify(int http_status, const OaiError *e);

/* Failures below HTTP, named by the caller from its transport's codes (the curl layer maps
 * CURLcode values to these; this module uses libcurl only for curl_getdate, a pure function). */
typedef enum {
    OAI_NET_TIMEOUT = 1, /* request or connect timeout */
    OAI_NET_CONNECT,     /* connection refused, host unreachable, DNS failure */
    OAI_NET_RESET,       /* connection reset or closed mid-response, empty reply */
    OAI_NET_TLS,         /* handshake failure (peer verification stays on; may be a rotating cert) */
    OAI_NET_BAD_BODY,    /* 2xx whose body did not parse: truncated or garbled in transit */
    OAI_NET_TOO_LARGE,   /* the response exceeded our size cap: retrying would pay for it again */
    OAI_NET_INVALID,     /* bad URL or option: our configuration, not the network */
} OaiNetError;

/* RETRY for timeouts, connect/reset/TLS failures and bad bodies; FAIL for TOO_LARGE and INVALID. */
OaiVerdict oai_classify_transport(OaiNetError e);

/* Stable reason strings for ledger rows, jobs.last_error prefixes and alerts. Never NULL. */
const char *oai_verdict_name(OaiVerdict v); /* "ok", "retry", "fail", "quota" */
/* "rate_limited", "quota_exhausted", "server_error", "overloaded", "request_timeout", "conflict",
 * "bad_request", "unauthorized", "payment_required", "forbidden", "not_found", "unprocessable",
 * "context_length_exceeded", "content_filter", "payload_too_large", "http_4xx", "http_other", "ok". */
const char *oai_error_reason(int http_status, const OaiError *e);
/* "http_timeout", "connect_failed", "connection_reset", "tls_failed", "bad_body",
 * "response_too_large", "bad_request_setup". */
const char *oai_net_reason(OaiNetError e);

/* ---- retry-after and rate-limit headers ------------------------------------------------------- */

#define OAI_RETRY_AFTER_CAP_MS 600000 /* 10 minutes: a longer wait is capped, not ignored */

/* Milliseconds to wait before retrying, from the header values (NULL when absent; surrounding
 * whitespace allowed). retry-after-ms wins when valid (float milliseconds, OpenAI); otherwise
 * retry-after as delta-seconds (fractions accepted) or an HTTP-date (IMF-fixdate, RFC 850, asctime)
 * relative to now. Rounds up, never down; a date in the past gives 0; capped at
 * OAI_RETRY_AFTER_CAP_MS. Returns -1 when neither header is present and valid. */
int64_t oai_retry_after_ms(const char *retry_after_ms_header, const char *retry_after_header, time_t now);

/* A Go-style duration as OpenAI sends in x-ratelimit-reset-*: "1s", "6m0s", "20ms", "1h2m3.5s",
 * "250us"/"250µs", "10ns"; a bare number is seconds ("0.5"). Rounded up to whole milliseconds.
 * Returns -1 when empty or malformed, or longer than about 30 years. */
int64_t oai_duration_ms(const char *s);

/* The response headers this module cares about, collected from raw header lines (curl's
 * CURLOPT_HEADERFUNCTION hands them over one by one). Only these names are kept: no other header,
 * and certainly no request header, is ever copied. */
typedef struct OaiHeaders {
    char retry_after[64];       /* raw values, "" when absent */
    char retry_after_ms[32];
    char request_id[96];        /* x-request-id, for support tickets */
    int64_t limit_requests;     /* x-ratelimit-limit-requests, -1 when absent */
    int64_t limit_tokens;       /* x-ratelimit-limit-tokens */
    int64_t remaining_requests; /* x-ratelimit-remaining-requests */
    int64_t remaining_tokens;   /* x-ratelimit-remaining-tokens */
    int64_t reset_requests_ms;  /* x-ratelimit-reset-requests as a duration, -1 when absent/bad */
    int64_t reset_tokens_ms;    /* x-ratelimit-reset-tokens */
} OaiHeaders;

void oai_headers_init(OaiHeaders *h);
/* Feed one raw header line ("Name: value\r\n"; the CRLF is optional). A status line ("HTTP/...")
 * starts a new response and resets h, so headers of a 100-continue or redirect do not leak into the
 * final response. Unknown names and malformed values are ignored. */
void oai_headers_feed(OaiHeaders *h, const char *line, size_t len);
/* oai_retry_after_ms over the collected headers. */
int64_t oai_headers_retry_after_ms(const OaiHeaders *h, time_t now);

/* ---- estimates -------------------------------------------------------------------------------- */

/* Rough token count for text when the provider sends no usage: ASCII bytes / 4 plus one token per
 * non-ASCII character (CJK text runs close to a token per character, so plain bytes / 4 would
 * under-charge it by 3-4x). Rounded up, at least 1. Meant for cost estimates, marked as such. */
int64_t oai_estimate_tokens(const char *text, size_t len);

#endif
