#include "job.h"

#include <stdlib.h>

void job_free(QueueJob *job) { free(job); }
