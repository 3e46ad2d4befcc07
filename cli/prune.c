#include "prune.h"

#include "buf.h"
#include "emit.h"

#include <inttypes.h>
#include <string.h>

/* One line or one small object; the cap only guards against a runaway. */
#define PRUNE_MAX_BYTES 4096u

static void emit_json_states(Emit *e, unsigned states)
{
    char names[48];
    retention_states_text(states, names, sizeof names);
    emit(e, "[");
    const char *p = names;
    for (int first = 1; *p; first = 0) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        emit(e, "%s\"%.*s\"", first ? "" : ", ", (int)n, p); /* fixed ASCII state names */
        p += n + (end ? 1 : 0);
    }
    emit(e, "]");
}

static void render(Emit *e, const PruneOptions *o, const RetentionTotals *t, const RetentionPreview *pv)
{
    char names[48], age[64];
    retention_states_text(o->spec.states, names, sizeof names);
    if (o->older_than_text && strlen(o->older_than_text) < sizeof age)
        snprintf(age, sizeof age, "%s", o->older_than_text);
    else
        snprintf(age, sizeof age, "%lds", o->spec.older_than_s);
    if (o->format == REPORT_JSON) {
        emit(e, "{\"dry_run\": %s, \"older_than_s\": %ld, \"states\": ", o->dry_run ? "true" : "false",
             o->spec.older_than_s);
        emit_json_states(e, o->spec.states);
        if (o->dry_run)
            emit(e, ", \"batch_size\": %d, \"jobs\": %" PRId64 ", \"calls\": %" PRId64 ", \"cost_usd\": %s}\n",
                 o->spec.batch, pv->jobs, pv->calls, pv->cost_usd);
        else
            emit(e, ", \"batch_size\": %d, \"jobs\": %" PRId64 ", \"calls\": %" PRId64 ", \"batches\": %" PRId64 "}\n",
                 o->spec.batch, t->jobs, t->calls, t->batches);
        return;
    }
    if (o->dry_run)
        emit(e,
             "prune (dry run): would delete %" PRId64 " jobs (%s, finished more than %s ago; cost_usd %s) and %" PRId64
             " ledger rows serving only them; nothing deleted\n",
             pv->jobs, names, age, pv->cost_usd, pv->calls);
    else
        emit(e,
             "prune: deleted %" PRId64 " jobs (%s, finished more than %s ago) and %" PRId64
             " ledger rows serving only them, in %" PRId64 " batches; their totals are kept per day in "
             "tierq.daily_totals and tierq.daily_call_totals\n",
             t->jobs, names, age, t->calls, t->batches);
}

int prune_run(PGconn *c, const PruneOptions *o, FILE *out, TqErr *err)
{
    if (!o || (o->format != REPORT_TEXT && o->format != REPORT_JSON))
        return tq_err(err, TQ_EINVAL, "prune: invalid options");
    int rc = retention_check(&o->spec, err);
    if (rc)
        return rc;
    RetentionTotals t = {0};
    RetentionPreview pv = {0};
    Emit e = {.rc = 0};
    buf_init(&e.b, PRUNE_MAX_BYTES);
    if (o->dry_run)
        rc = retention_preview(c, &o->spec, &pv, err);
    else if ((rc = retention_prune(c, &o->spec, 0, &t, err)))
        tq_err_prefix(err, "after deleting %" PRId64 " jobs and %" PRId64 " ledger rows", t.jobs, t.calls);
    if (rc)
        goto cleanup;
    render(&e, o, &t, &pv);
    if (e.rc) {
        rc = tq_err(err, e.rc, "prune: output too large or out of memory");
        goto cleanup;
    }
    if (fwrite(e.b.data, 1, e.b.len, out) != e.b.len || fflush(out) != 0)
        rc = tq_err(err, TQ_EIO, "prune: write failed");

cleanup:
    buf_free(&e.b);
    return rc;
}
