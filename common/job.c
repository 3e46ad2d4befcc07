#include "job.h"

#include <stdlib.h>
#include <string.h>

void job_free(QueueJob *job) { free(job); }

int64_t job_input_bytes(const QueueJob *job)
{
    return (int64_t)strlen(job->prompt) + (job->context ? (int64_t)strlen(job->context) : 0) +
           (job->system_prompt ? (int64_t)strlen(job->system_prompt) : 0);
}
