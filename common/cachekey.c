#include "cachekey.h"

#include <stdio.h>
#include <string.h>

/* A field: its length (8 bytes, big-endian) then its bytes; NULL is length 2^64-1 and no bytes, so a
 * missing field differs from an empty one. */
static void field(Sha256 *s, const char *text)
{
    uint64_t n = text ? (uint64_t)strlen(text) : UINT64_MAX;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(n >> (56 - 8 * i));
    sha256_update(s, len, sizeof len);
    if (text)
        sha256_update(s, text, (size_t)n);
}

static void number(Sha256 *s, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    field(s, buf);
}

void cache_key(const TqConfig *cfg, const TqKind *kd, const QueueJob *job, char hex[CACHE_KEY_HEX])
{
    Sha256 s;
    sha256_init(&s);
    field(&s, "tierq-cache-v1");
    field(&s, kd->digest);
    number(&s, kd->ntiers);
    for (int t = 0; t < kd->ntiers; t++) {
        const TqModel *m = &cfg->models[kd->tiers[t].model];
        const TqProvider *p = &cfg->providers[m->provider];
        field(&s, m->name);
        field(&s, m->api_model);
        field(&s, p->name);
        field(&s, p->base_url);
        number(&s, (long long)m->system_as);
        field(&s, m->extra_body);
    }
    field(&s, job->system_prompt);
    field(&s, job->prompt);
    field(&s, job->context);
    field(&s, job->params);
    uint8_t d[SHA256_BYTES];
    sha256_final(&s, d);
    sha256_hex(d, hex);
}
