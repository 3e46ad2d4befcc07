/* fuzz_headers.c — response header lines (worker/openai.c): retry-after, rate-limit headers and
 * Go-style durations.
 *
 * Input: header lines as libcurl hands them over, "Name: value\r\n" each (a status line "HTTP/..."
 * starts a new response). Every line goes to oai_headers_feed, then oai_headers_retry_after_ms
 * reads what was collected; every line's text (CR and LF removed) also goes to oai_duration_ms and
 * to oai_retry_after_ms as either header's value. now is fixed (a clock is not input).
 *
 * Checked contracts (openai.h): waits are -1 or in [0, OAI_RETRY_AFTER_CAP_MS]; durations -1 or
 * >= 0; collected values are NUL-terminated printable ASCII; counts -1 or >= 0. */
#include "fuzz.h"

#include "openai.h"

static const time_t NOW = 1764312700; /* 2025-11-28 */

static int printable_ascii(const char *s, size_t cap)
{
    if (!fuzz_terminated(s, cap))
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void check_wait(int64_t ms)
{
    FUZZ_ASSERT(ms == -1 || (ms >= 0 && ms <= OAI_RETRY_AFTER_CAP_MS), "a wait is -1 or within the cap");
}

static void check_headers(const OaiHeaders *h)
{
    FUZZ_ASSERT(printable_ascii(h->retry_after, sizeof h->retry_after), "retry_after printable");
    FUZZ_ASSERT(printable_ascii(h->retry_after_ms, sizeof h->retry_after_ms), "retry_after_ms printable");
    FUZZ_ASSERT(printable_ascii(h->request_id, sizeof h->request_id), "request_id printable");
    FUZZ_ASSERT(h->limit_requests >= -1 && h->limit_tokens >= -1 && h->remaining_requests >= -1 &&
                    h->remaining_tokens >= -1 && h->reset_requests_ms >= -1 && h->reset_tokens_ms >= -1,
                "counts and durations are -1 or >= 0");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    OaiHeaders h;
    oai_headers_init(&h);
    char *text = malloc(size + 1);
    if (!text)
        abort();
    size_t at = 0;
    while (at < size) {
        const char *nl = memchr(s + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - s) + 1 : size; /* the line with its LF, as curl gives it */
        size_t n = end - at;
        oai_headers_feed(&h, s + at, n);
        check_headers(&h);

        /* the line as a C string without its line end, for the value parsers */
        size_t tn = n;
        while (tn > 0 && (s[at + tn - 1] == '\n' || s[at + tn - 1] == '\r'))
            tn--;
        memcpy(text, s + at, tn);
        text[tn] = '\0';
        int64_t d = oai_duration_ms(text);
        FUZZ_ASSERT(d >= -1, "a duration is -1 or >= 0");
        check_wait(oai_retry_after_ms(text, NULL, NOW));
        check_wait(oai_retry_after_ms(NULL, text, NOW));
        const char *colon = strchr(text, ':');
        if (colon) {
            check_wait(oai_retry_after_ms(NULL, colon + 1, NOW));
            FUZZ_ASSERT(oai_duration_ms(colon + 1) >= -1, "a duration is -1 or >= 0");
        }
        at = end;
    }
    check_wait(oai_headers_retry_after_ms(&h, NOW));
    check_wait(oai_headers_retry_after_ms(&h, 0));
    FUZZ_ASSERT(oai_headers_retry_after_ms(NULL, NOW) == -1, "no headers, no wait");
    oai_headers_feed(&h, NULL, 0);
    oai_headers_feed(NULL, s, size);
    free(text);
    return 0;
}
