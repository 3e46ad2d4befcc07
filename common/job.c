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

/* One block: the struct, then its strings; context (when given) replaces the job's. */
static QueueJob *copy_block(const QueueJob *job, const char *context, size_t context_len, bool replace)
{
    const char *original = replace ? (job->original_context ? job->original_context : job->context) : job->original_context;
    const char *src[] = {job->kind, job->prompt, job->system_prompt, replace ? NULL : job->context, job->params,
                         job->run_name, original};
    size_t need = sizeof *job + (replace ? context_len + 1 : 0);
    for (size_t i = 0; i < sizeof src / sizeof *src; i++)
        need += src[i] ? strlen(src[i]) + 1 : 0;
    QueueJob *j = malloc(need);
    if (!j)
        return NULL;
    *j = *job;
    char **dst[] = {&j->kind, &j->prompt, &j->system_prompt, &j->context, &j->params, &j->run_name,
                    &j->original_context};
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
        memcpy(p, context, context_len);
        p[context_len] = '\0';
        j->context = p;
    }
    return j;
}

QueueJob *job_dup(const QueueJob *job) { return copy_block(job, NULL, 0, false); }

QueueJob *job_with_context(const QueueJob *job, const char *context, size_t len)
{
    return copy_block(job, context, len, true);
}

const char *job_compression_name(int compression)
{
    static const char *const names[] = {"none", "cleaned", "compressed", "reused", "failed"};
    return compression >= 0 && compression < (int)(sizeof names / sizeof *names) ? names[compression] : "none";
}
