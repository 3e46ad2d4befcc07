#include "job.h"

#include <stdlib.h>
#include <string.h>

void job_free(QueueJob *job) { free(job); }

int64_t job_input_bytes(const QueueJob *job)
{
    return (int64_t)strlen(job->prompt) + (job->context ? (int64_t)strlen(job->context) : 0) +
           (job->system_prompt ? (int64_t)strlen(job->system_prompt) : 0);
}

QueueJob *job_dup(const QueueJob *job)
{
    const char *const src[] = {job->kind, job->prompt, job->system_prompt, job->context, job->params, job->run_name};
    size_t need = sizeof *job;
    for (size_t i = 0; i < sizeof src / sizeof *src; i++)
        need += src[i] ? strlen(src[i]) + 1 : 0;
    QueueJob *j = malloc(need);
    if (!j)
        return NULL;
    *j = *job;
    char **dst[] = {&j->kind, &j->prompt, &j->system_prompt, &j->context, &j->params, &j->run_name};
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
    return j;
}
