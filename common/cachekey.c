#include "cachekey.h"

#include <stdio.h>
#include <string.h>

void cache_key(const TqConfig *cfg, const TqKind *kd, const QueueJob *job, char hex[CACHE_KEY_HEX])
{
    Sha256 s;
    sha256_init(&s);
    sha256_field(&s, "tierq-cache-v1");
    sha256_field(&s, kd->digest);
    sha256_field_int(&s, kd->ntiers);
    for (int t = 0; t < kd->ntiers; t++) {
        const TqModel *m = &cfg->models[kd->tiers[t].model];
        const TqProvider *p = &cfg->providers[m->provider];
        sha256_field(&s, m->name);
        sha256_field(&s, m->api_model);
        sha256_field(&s, p->name);
        sha256_field(&s, p->base_url);
        sha256_field_int(&s, (long long)m->system_as);
        sha256_field(&s, m->extra_body);
    }
    sha256_field(&s, job->system_prompt);
    sha256_field(&s, job->prompt);
    sha256_field(&s, job->context);
    sha256_field(&s, job->params);
    uint8_t d[SHA256_BYTES];
    sha256_final(&s, d);
    sha256_hex(d, hex);
}
