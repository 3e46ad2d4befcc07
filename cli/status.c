#include "status.h"

#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int status_print(PGconn *c, FILE *out, TqErr *err)
{
    PGresult *r = db_query(c, "status by kind",
                           "SELECT kind,"
                           "  count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),"
                           "  count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'failed'),"
                           "  count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state = 'cancelled'),"
                           "  extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'queued'))::bigint"
                           " FROM tierq.jobs GROUP BY kind ORDER BY kind",
                           0, NULL, err);
    if (!r)
        return TQ_EDB;
    long long tot[6] = {0};
    long long oldest = -1;
    fprintf(out, "%-16s %9s %9s %9s %9s %9s %9s %12s\n", "kind", "queued", "running", "done", "failed", "dead",
            "cancelled", "oldest_queued");
    for (int i = 0; i < PQntuples(r); i++) {
        long long v[6];
        for (int k = 0; k < 6; k++) {
            v[k] = atoll(PQgetvalue(r, i, k + 1));
            tot[k] += v[k];
        }
        /* no queued job, no age: "-" rather than a misleading 0s */
        char age[32] = "-";
        if (!PQgetisnull(r, i, 7)) {
            long long a = atoll(PQgetvalue(r, i, 7));
            snprintf(age, sizeof age, "%llds", a);
            if (a > oldest)
                oldest = a;
        }
        fprintf(out, "%-16s %9lld %9lld %9lld %9lld %9lld %9lld %12s\n", PQgetvalue(r, i, 0), v[0], v[1], v[2], v[3],
                v[4], v[5], age);
    }
    char total_age[32] = "-";
    if (oldest >= 0)
        snprintf(total_age, sizeof total_age, "%llds", oldest);
    fprintf(out, "%-16s %9lld %9lld %9lld %9lld %9lld %9lld %12s\n", "total", tot[0], tot[1], tot[2], tot[3], tot[4],
            tot[5], total_age);
    PQclear(r);

    r = db_query(c, "status workers",
                 "SELECT id, version, in_flight, extract(epoch FROM now() - heartbeat_at)::int,"
                 "  extract(epoch FROM now() - started_at)::bigint,"
                 "  (SELECT string_agg(key || ' ' || value, ', ' ORDER BY key)"
                 "   FROM jsonb_each_text(coalesce(info -> 'batch_size', '{}'))),"
                 /* models whose breaker is not closed (or has opened) or whose limiter slowed: heartbeat */
                 "  (SELECT string_agg(format('%s: breaker %s%s, opened %s times%s; rate x%s%s', key, value->>'breaker',"
                 "     CASE WHEN value->>'reason' <> '' THEN ' (' || (value->>'reason') || ')' ELSE '' END,"
                 "     value->>'opens',"
                 "     CASE WHEN (value->>'next_probe_s')::int > 0 THEN ', next probe in ' || (value->>'next_probe_s') || 's'"
                 "          ELSE '' END,"
                 "     value->>'rate_factor',"
                 "     CASE WHEN (value->>'paused_s')::int > 0 THEN ', paused ' || (value->>'paused_s') || 's' ELSE '' END),"
                 "     E'\\n      ' ORDER BY key)"
                 "   FROM jsonb_each(coalesce(info -> 'models', '{}'))),"
                 "  coalesce(info ->> 'rate_share', '1')"
                 " FROM tierq.workers WHERE heartbeat_at > now() - interval '60 seconds' ORDER BY started_at",
                 0, NULL, err);
    if (!r)
        return TQ_EDB;
    fprintf(out, "\nlive workers: %d\n", PQntuples(r));
    for (int i = 0; i < PQntuples(r); i++) {
        fprintf(out, "  %s  version %s  in_flight %s  heartbeat %ss ago  up %ss\n", PQgetvalue(r, i, 0),
                PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
        if (!PQgetisnull(r, i, 5))
            fprintf(out, "    batch size: %s\n", PQgetvalue(r, i, 5));
        if (!PQgetisnull(r, i, 6))
            fprintf(out, "    models:\n      %s\n", PQgetvalue(r, i, 6));
        if (atoi(PQgetvalue(r, i, 7)) > 1)
            fprintf(out, "    rate limits: 1/%s of each (live processes)\n", PQgetvalue(r, i, 7));
    }
    PQclear(r);

    /* the live accuracy estimate of kinds that shadow-evaluate (tierq.shadow_estimates, sql/008) */
    r = db_query(c, "status shadow",
                 "SELECT kind, compared, round(100 * agreement)::int, round(100 * low)::int, round(100 * high)::int,"
                 "  round(100 * min_agreement)::int, below, shadow_window FROM tierq.shadow_estimates(NULL)",
                 0, NULL, err);
    if (!r)
        return TQ_EDB;
    if (PQntuples(r) > 0)
        fprintf(out, "\nshadow agreement with the baseline model (each kind's last shadow calls)\n");
    for (int i = 0; i < PQntuples(r); i++) {
        if (atoll(PQgetvalue(r, i, 1)) == 0) {
            fprintf(out, "  %-16s no comparison yet\n", PQgetvalue(r, i, 0));
            continue;
        }
        fprintf(out, "  %-16s %s%% of %s (95%%: %s-%s%%), min %s%%%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 2),
                PQgetvalue(r, i, 1), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                PQgetvalue(r, i, 6)[0] == 't' ? "  BELOW: answers have drifted from the baseline model's" : "");
    }
    PQclear(r);

    /* each tier against its own past (tierq.shadow_tier_drift, sql/010): only the tiers that fell */
    r = db_query(c, "status tier drift",
                 "SELECT kind, tier, round(100 * recent_agreed::numeric / recent_compared)::int, recent_compared,"
                 "  round(100 * reference_agreed::numeric / nullif(reference_compared, 0))::int, reference_compared"
                 " FROM tierq.shadow_tier_drift(NULL) WHERE dropped",
                 0, NULL, err);
    if (!r)
        return TQ_EDB;
    for (int i = 0; i < PQntuples(r); i++)
        fprintf(out, "  %-16s tier %s: %s%% of the last %s against %s%% of %s before  DROPPED: this tier has drifted\n",
                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    PQclear(r);
    return 0;
}
