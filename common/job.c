#include "job.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void job_free(QueueJob *job) { free(job); }

int64_t job_input_bytes(const QueueJob *job)
{
    return (int64_t)strlen(job->prompt) + (job->context ? (int64_t)strlen(job->context) : 0) +
           (job->system_prompt ? (int64_t)strlen(job->system_prompt) : 0);
}

/* One block: the struct, then its strings; with replace, text becomes the context (field 0) or the
 * prompt (field 1) and the field's own text its original_*. */
static QueueJob *copy_block(const QueueJob *job, const char *text, size_t text_len, bool replace, int field)
{
    const char *orig_ctx = job->original_context, *orig_prompt = job->original_prompt;
    if (replace && field == 0)
        orig_ctx = job->original_context ? job->original_context : job->context;
    if (replace && field == 1)
        orig_prompt = job->original_prompt ? job->original_prompt : job->prompt;
    const char *src[] = {job->kind, replace && field == 1 ? NULL : job->prompt, job->system_prompt,
                         replace && field == 0 ? NULL : job->context, job->params, job->run_name, orig_ctx, orig_prompt};
    size_t need = sizeof *job + (replace ? text_len + 1 : 0);
    for (size_t i = 0; i < sizeof src / sizeof *src; i++)
        need += src[i] ? strlen(src[i]) + 1 : 0;
    QueueJob *j = malloc(need);
    if (!j)
        return NULL;
    *j = *job;
    char **dst[] = {&j->kind, &j->prompt, &j->system_prompt, &j->context, &j->params, &j->run_name,
                    &j->original_context, &j->original_prompt};
    char *p = (char *)(j + 1);
    for (size_t i = 0; i < sizeof src / sizeof *src; i++) {
        if (!src[i]) {
            *dst[i] = NULL;
            continue;
        }
        size_t n = strlen(src[i]) + 1;
        memcpy(p, src[i], n);
        *dst[i] = p;
        p += n;
    }
    if (replace) {
        memcpy(p, text, text_len);
        p[text_len] = '\0';
        if (field == 0)
            j->context = p;
        else
            j->prompt = p;
    }
    return j;
}

QueueJob *job_dup(const QueueJob *job) { return copy_block(job, NULL, 0, false, 0); }

QueueJob *job_with_context(const QueueJob *job, const char *context, size_t len)
{
    return copy_block(job, context, len, true, 0);
}

QueueJob *job_with_prompt(const QueueJob *job, const char *prompt, size_t len)
{
    return copy_block(job, prompt, len, true, 1);
}

const char *job_compression_name(int compression)
{
    static const char *const names[] = {"none", "cleaned", "compressed", "reused", "failed"};
    return compression >= 0 && compression < (int)(sizeof names / sizeof *names) ? names[compression] : "none";
}
