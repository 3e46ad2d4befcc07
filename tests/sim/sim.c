#include "sim.h"

#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SIM_SCRATCH_CAP ((size_t)64 << 20)

int sim_open(Sim *sim, const SimConfig *cfg, TqErr *err)
{
    memset(sim, 0, sizeof *sim);
    sim->cfg = cfg;
    fault_state_init(&sim->faults);
    memcpy(sim->faults.rate, cfg->fault_rate, sizeof sim->faults.rate);
    buf_init(&sim->prompt, SIM_SCRATCH_CAP);
    buf_init(&sim->stripped, SIM_SCRATCH_CAP);
    buf_init(&sim->text, SIM_SCRATCH_CAP);
    buf_init(&sim->tmp, SIM_SCRATCH_CAP);
    buf_init(&sim->labels, SIM_SCRATCH_CAP);
    buf_init(&sim->received, SIM_SCRATCH_CAP);
    batch_init(&sim->batch, SIM_SCRATCH_CAP);
    sim->now_ms = clock_mono_ms();
    sim->now_s = time(NULL);
    int rc = catalog_load(&sim->catalog, cfg->models_path, cfg->latency_ms, err);
    if (rc)
        goto fail;
    if (cfg->answers_path && (rc = answer_key_load(&sim->answers, cfg->answers_path, err)))
        goto fail;
    if ((rc = outage_parse(&sim->outages, cfg->outage, cfg->noutages, &sim->catalog, err)))
        goto fail;
    if ((rc = pcache_init(&sim->pcache, cfg->pcache_slots)) ||
        (rc = stats_init(&sim->stats, sim->catalog.n, sim->now_ms)) ||
        (rc = ratelimit_init(&sim->limits, sim->catalog.n))) {
        tq_err(err, rc, "out of memory");
        goto fail;
    }
    return 0;
fail:
    sim_close(sim);
    return rc;
}

void sim_close(Sim *sim)
{
    if (!sim)
        return;
    catalog_free(&sim->catalog);
    answer_key_free(sim->answers);
    sim->answers = NULL;
    fault_state_free(&sim->faults);
    pcache_free(&sim->pcache);
    stats_free(&sim->stats);
    ratelimit_free(&sim->limits);
    outage_free(&sim->outages);
    buf_free(&sim->prompt);
    buf_free(&sim->stripped);
    buf_free(&sim->text);
    buf_free(&sim->tmp);
    buf_free(&sim->labels);
    buf_free(&sim->received);
    batch_free(&sim->batch);
}

void sim_reset(Sim *sim)
{
    stats_reset(&sim->stats, sim->now_ms);
    fault_state_reset(&sim->faults);
    pcache_clear(&sim->pcache);
    ratelimit_reset(&sim->limits);
}

int sim_read_file(const char *path, Buf *out, TqErr *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tq_err(err, TQ_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n)) {
            rc = tq_err(err, TQ_ELIMIT, "%s is too large", path);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = tq_err(err, TQ_EIO, "cannot read %s", path);
    fclose(f);
    if (!rc && !out->data)
        rc = buf_reserve(out, 0) ? tq_err(err, TQ_ENOMEM, "out of memory") : 0;
    return rc;
}

double sim_unit(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }
