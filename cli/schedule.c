#include "schedule.h"

#include "cron.h"
#include "db.h"
#include "emit.h"
#include "tzone.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SCHED_OK = 0, SCHED_RUNTIME = 1, SCHED_USAGE = 2 };

const char SCHEDULE_USAGE[] =
    "usage: tierq schedule add NAME --cron EXPR (--source FUNCTION | --prune-older-than DURATION) [OPTIONS]\n"
    "       tierq schedule list [--format text|json]\n"
    "       tierq schedule show NAME\n"
    "       tierq schedule enable|disable|remove NAME\n"
    "       tierq schedule fire-now NAME\n"
    "\n"
    "Schedules live in tierq.schedules and are fired by the running `tierq run` daemons (each due time\n"
    "exactly once, however many run) or by pg_cron (SELECT tierq.fire('NAME')). A schedule enqueues the\n"
    "rows of its source: a set-returning SECURITY DEFINER function you own, with columns kind, prompt\n"
    "and any of system_prompt, context, params, expected, priority, source_key. It runs with your rights,\n"
    "never the daemon's (README, Schedules).\n"
    "\n"
    "add options:\n"
    "  --cron EXPR             five cron fields (\"30 2 * * *\"), a macro (@daily), \"@every 10m\", or\n"
    "                          @external: never fired by the daemons, only by tierq.fire() (pg_cron)\n"
    "  --tz ZONE               IANA time zone of the cron fields (default UTC); DST: a time that does not\n"
    "                          exist fires once at the end of the gap, a repeated one at its first occurrence\n"
    "  --source FUNCTION       e.g. app.nightly_articles (the function must take no arguments)\n"
    "  --run-name TEMPLATE     the fire's run_name; {schedule}, {date}, {time} (default {schedule}-{date})\n"
    "  --catch-up skip|latest|all  fires missed while no daemon ran (default latest)\n"
    "  --catch-up-max N        with all: at most the latest N missed fires (default 10)\n"
    "  --grace DURATION        with skip: a fire this late still counts as on time (default 5m)\n"
    "  --budget-usd X          per fire: claims of its run stop once its jobs cost X\n"
    "  --max-jobs N            per fire: at most N jobs (with --only-changed the rest go next time)\n"
    "  --only-changed          only rows new or changed since last enqueued, by the source's source_key\n"
    "  --prune-older-than D    instead of a source: delete finished jobs older than D (tierq prune)\n"
    "  --prune-states LIST     with --prune-older-than: states to prune (default done,failed,dead,cancelled)\n"
    "  --disabled              write it disabled\n"
    "\n"
    "fire-now fires at once through tierq.fire() (the daemons' timetable is unchanged) and prints the\n"
    "run name and the jobs enqueued; exit 1 when the source failed.\n";

void schedule_format_time(long long t, const char *tz, char *out, size_t cap)
{
    const TzZone *z = NULL;
    TqErr err = {0};
    int32_t off = 0;
    bool utc = strcmp(tz, "UTC") == 0 || tzone_open(tz, &z, &err) != 0;
    if (z)
        off = tzone_offset(z, t);
    time_t lt = (time_t)(t + off), ut = (time_t)t;
    struct tm l, u;
    gmtime_r(&lt, &l);
    gmtime_r(&ut, &u);
    if (utc || !z)
        snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d UTC", u.tm_year + 1900, u.tm_mon + 1, u.tm_mday, u.tm_hour,
                 u.tm_min, u.tm_sec);
    else
        snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d %c%02d:%02d %s (%02d:%02d:%02d UTC)", l.tm_year + 1900,
                 l.tm_mon + 1, l.tm_mday, l.tm_hour, l.tm_min, l.tm_sec, off < 0 ? '-' : '+', abs(off) / 3600,
                 abs(off) % 3600 / 60, tz, u.tm_hour, u.tm_min, u.tm_sec);
    if (z)
        tzone_close(z);
}

static void format_in(long long secs, char *out, size_t cap)
{
    if (secs < 0)
        snprintf(out, cap, "due now");
    else if (secs < 120)
        snprintf(out, cap, "in %llds", secs);
    else if (secs < 7200)
        snprintf(out, cap, "in %lldm", secs / 60);
    else if (secs < 172800)
        snprintf(out, cap, "in %lldh %lldm", secs / 3600, secs % 3600 / 60);
    else
        snprintf(out, cap, "in %lldd %lldh", secs / 86400, secs % 86400 / 3600);
}

/* "90s", "15m", "24h", "7d", "1h30m" to seconds. */
static int parse_duration_s(const char *s, long *out)
{
    long total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 100000000)
            return -1;
        long unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : 0;
        if (!unit)
            return -1;
        total += v * unit;
        if (total > 100L * 365 * 86400)
            return -1;
        p = end + 1;
    }
    *out = total;
    return 0;
}

/* A whole number in lo..hi, or -1. */
static long long int_in(const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' && v >= lo && v <= hi ? v : -1;
}

/* The values the table's checks would refuse, refused here with the option's name and range. */
static int check_add_values(const char *name, const char *run_name, const char *catch_up_max, const char *budget,
                            const char *max_jobs, const char *prune_states, long grace_s)
{
    size_t n = strlen(name);
    bool name_ok = n >= 1 && n <= 63 && isalnum((unsigned char)name[0]);
    for (size_t i = 0; i < n && name_ok; i++)
        name_ok = isalnum((unsigned char)name[i]) || strchr("_.-", name[i]);
    if (!name_ok) {
        fprintf(stderr, "tierq: schedule add: NAME \"%s\" must be 1-63 letters, digits, '_', '.' or '-', starting with a"
                        " letter or digit\n", name);
        return -1;
    }
    if (run_name) {
        const char *p = run_name;
        bool ok = strlen(run_name) >= 1 && strlen(run_name) <= 120;
        /* each '}' must close one of the placeholders */
        for (const char *q = strchr(run_name, '}'); ok && q; q = strchr(q + 1, '}'))
            ok = (q - run_name >= 9 && strncmp(q - 9, "{schedule}", 10) == 0) ||
                 (q - run_name >= 5 && (strncmp(q - 5, "{date}", 6) == 0 || strncmp(q - 5, "{time}", 6) == 0));
        while (ok && (p = strchr(p, '{')) != NULL) {
            ok = strncmp(p, "{schedule}", 10) == 0 || strncmp(p, "{date}", 6) == 0 || strncmp(p, "{time}", 6) == 0;
            p = strchr(p, '}');
            p = p ? p + 1 : NULL;
            if (!p)
                break;
        }
        if (!ok) {
            fprintf(stderr, "tierq: schedule add: --run-name \"%s\": 1-120 characters, and the only placeholders are"
                            " {schedule}, {date} and {time}\n", run_name);
            return -1;
        }
    }
    if (catch_up_max && int_in(catch_up_max, 1, 1000) < 0) {
        fprintf(stderr, "tierq: schedule add: --catch-up-max takes a whole number from 1 to 1000, not \"%s\"\n",
                catch_up_max);
        return -1;
    }
    if (max_jobs && int_in(max_jobs, 1, 10000000) < 0) {
        fprintf(stderr, "tierq: schedule add: --max-jobs takes a whole number from 1 to 10000000, not \"%s\"\n", max_jobs);
        return -1;
    }
    if (grace_s > 86400) {
        fprintf(stderr, "tierq: schedule add: --grace is at most 24h\n");
        return -1;
    }
    if (budget) {
        char *end;
        double v = strtod(budget, &end);
        if (end == budget || *end || strspn(budget, "0123456789.") != strlen(budget) || !(v > 0) || v > 1000000) {
            fprintf(stderr, "tierq: schedule add: --budget-usd takes dollars above 0, at most 1000000, not \"%s\"\n",
                    budget);
            return -1;
        }
    }
    if (prune_states && !*prune_states) {
        fprintf(stderr, "tierq: schedule add: --prune-states needs at least one of done, failed, dead, cancelled\n");
        return -1;
    }
    if (prune_states) {
        char copy[128];
        snprintf(copy, sizeof copy, "%s", prune_states);
        for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (strcmp(t, "done") && strcmp(t, "failed") && strcmp(t, "dead") && strcmp(t, "cancelled")) {
                fprintf(stderr, "tierq: schedule add: --prune-states: \"%s\" is not done, failed, dead or cancelled\n", t);
                return -1;
            }
    }
    return 0;
}

static PGconn *connect_or_say(void)
{
    PGconn *c = NULL;
    TqErr err = {0};
    if (db_connect(NULL, &c, &err)) {
        fprintf(stderr, "tierq: %s\n", err.msg);
        return NULL;
    }
    return c;
}

/* The database's message without libpq's "ERROR:  " decoration, on stderr. */
static void say_db_error(const TqErr *err) { fprintf(stderr, "tierq: schedule %s\n", err->msg); }

static int sched_add(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "tierq: schedule add: missing NAME (tierq schedule add NAME --cron EXPR --source FUNCTION)\n");
        return SCHED_USAGE;
    }
    const char *name = argv[0];
    const char *cron = NULL, *tz = "UTC", *source = NULL, *run_name = NULL, *catch_up = NULL, *catch_up_max = NULL,
               *budget = NULL, *max_jobs = NULL, *prune_states = NULL;
    char grace[32] = "", prune_older[32] = "";
    bool only_changed = false, disabled = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool flag = strcmp(a, "--only-changed") == 0 || strcmp(a, "--disabled") == 0;
        if (!flag && (!v || strncmp(a, "--", 2) != 0)) {
            if (strncmp(a, "--", 2) == 0)
                fprintf(stderr, "tierq: schedule add: %s needs a value\n", a);
            else
                fprintf(stderr, "tierq: schedule add: unexpected argument \"%s\"\n", a);
            return SCHED_USAGE;
        }
        long secs = 0;
        if (strcmp(a, "--only-changed") == 0) {
            only_changed = true;
            continue;
        } else if (strcmp(a, "--disabled") == 0) {
            disabled = true;
            continue;
        } else if (strcmp(a, "--cron") == 0) {
            cron = v;
        } else if (strcmp(a, "--tz") == 0) {
            tz = v;
        } else if (strcmp(a, "--source") == 0) {
            source = v;
        } else if (strcmp(a, "--run-name") == 0) {
            run_name = v;
        } else if (strcmp(a, "--catch-up") == 0) {
            if (strcmp(v, "skip") && strcmp(v, "latest") && strcmp(v, "all")) {
                fprintf(stderr, "tierq: schedule add: --catch-up takes skip, latest or all, not \"%s\"\n", v);
                return SCHED_USAGE;
            }
            catch_up = v;
        } else if (strcmp(a, "--catch-up-max") == 0) {
            catch_up_max = v;
        } else if (strcmp(a, "--grace") == 0 || strcmp(a, "--prune-older-than") == 0) {
            if (parse_duration_s(v, &secs) || secs <= 0) {
                fprintf(stderr, "tierq: schedule add: bad %s duration \"%s\" (e.g. 90s, 15m, 24h, 30d)\n", a, v);
                return SCHED_USAGE;
            }
            snprintf(strcmp(a, "--grace") == 0 ? grace : prune_older, 32, "%ld", secs);
        } else if (strcmp(a, "--budget-usd") == 0) {
            budget = v;
        } else if (strcmp(a, "--max-jobs") == 0) {
            max_jobs = v;
        } else if (strcmp(a, "--prune-states") == 0) {
            prune_states = v;
        } else {
            fprintf(stderr, "tierq: schedule add: unknown option %s (see tierq schedule --help)\n", a);
            return SCHED_USAGE;
        }
        i++;
    }
    if (!cron) {
        fprintf(stderr, "tierq: schedule add: --cron is required\n");
        return SCHED_USAGE;
    }
    if (!source == !prune_older[0]) {
        fprintf(stderr, "tierq: schedule add: give either --source FUNCTION (enqueue its rows) or --prune-older-than"
                        " DURATION (delete old finished jobs)\n");
        return SCHED_USAGE;
    }
    if (prune_states && !prune_older[0]) {
        fprintf(stderr, "tierq: schedule add: --prune-states goes with --prune-older-than\n");
        return SCHED_USAGE;
    }
    long grace_s = grace[0] ? atol(grace) : 0;
    if (check_add_values(name, run_name, catch_up_max, budget, max_jobs, prune_states, grace_s))
        return SCHED_USAGE;
    /* the database cannot parse cron: refuse a bad expression or zone here, with the parser's words */
    Cron cr;
    TqErr err = {0};
    time_t next;
    bool external = strcmp(cron, "@external") == 0;
    if (!external && (cron_parse(cron, &cr, &err) || cron_next(&cr, tz, time(NULL), &next, &err))) {
        fprintf(stderr, "tierq: schedule add: %s\n", err.msg);
        return SCHED_USAGE;
    }
    PGconn *c = connect_or_say();
    if (!c)
        return SCHED_RUNTIME;
    /* the source as a function without arguments: "app.f" -> 'app.f()'::regprocedure */
    char src[300] = "";
    if (source)
        snprintf(src, sizeof src, "%s%s", source, strchr(source, '(') ? "" : "()");
    const char *p[] = {name, cron, tz, source ? src : NULL, run_name, disabled ? "f" : "t", catch_up, catch_up_max,
                       grace[0] ? grace : NULL, budget, max_jobs, only_changed ? "t" : "f",
                       prune_older[0] ? prune_older : NULL, prune_states};
    int rc = db_exec(c, "add",
                     "INSERT INTO tierq.schedules (name, cron, tz, action, source, run_name, enabled, catch_up, catch_up_max,"
                     " grace_s, budget_usd, max_jobs, only_changed, prune_older_than, prune_states)"
                     " VALUES ($1, $2, $3, CASE WHEN $4::text IS NULL THEN 'prune' ELSE 'enqueue' END, $4::regprocedure,"
                     " coalesce($5, '{schedule}-{date}'), $6::bool, coalesce($7, 'latest'), coalesce($8::int, 10),"
                     " coalesce($9::int, 300), $10::numeric, $11::int, $12::bool, $13::bigint * interval '1 second',"
                     " CASE WHEN $14::text IS NOT NULL THEN string_to_array($14, ',') END)",
                     14, p, &err);
    if (rc) {
        if (strcmp(err.sqlstate, "23505") == 0)
            fprintf(stderr, "tierq: schedule add: a schedule named \"%s\" already exists (tierq schedule show %s;"
                            " remove it first to replace it)\n", name, name);
        else
            say_db_error(&err);
        PQfinish(c);
        /* a value the database refused is the command line's fault; a lost connection is not */
        return err.sqlstate[0] && strncmp(err.sqlstate, "08", 2) != 0 ? SCHED_USAGE : SCHED_RUNTIME;
    }
    PQfinish(c);
    if (external) {
        printf("schedule %s added%s; fired only from outside: SELECT tierq.fire('%s') (pg_cron) or tierq schedule"
               " fire-now %s\n", name, disabled ? " (disabled)" : "", name, name);
        return SCHED_OK;
    }
    printf("schedule %s added%s; next fires (%s):\n", name, disabled ? " (disabled)" : "", tz);
    time_t t = time(NULL);
    for (int i = 0; i < 3 && cron_next(&cr, tz, t, &t, &err) == 0; i++) {
        char when[128];
        schedule_format_time((long long)t, tz, when, sizeof when);
        printf("  %s\n", when);
    }
    return SCHED_OK;
}

static int print_list(PGconn *c, bool json)
{
    TqErr err = {0};
    PGresult *r = db_query(c, "list",
                           "SELECT name, enabled, cron, tz, coalesce(source::text, 'prune older than ' || prune_older_than::text),"
                           " floor(extract(epoch FROM next_fire_at))::bigint, floor(extract(epoch FROM now()))::bigint,"
                           " coalesce(last_outcome, ''), coalesce(last_jobs, 0), coalesce(last_run_name, ''),"
                           " coalesce(cron_error, ''), fires, coalesce(last_error, ''),"
                           " coalesce(to_char(last_fired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"
                           " FROM tierq.schedules ORDER BY name",
                           0, NULL, &err);
    if (!r) {
        say_db_error(&err);
        return SCHED_RUNTIME;
    }
    int n = PQntuples(r);
    if (json)
        printf("[");
    else if (n == 0)
        printf("no schedules (tierq schedule add --help)\n");
    else
        printf("%-24s %-8s %-16s %-44s %s\n", "name", "enabled", "cron", "next fire", "last fire");
    for (int i = 0; i < n; i++) {
        const char *name = PQgetvalue(r, i, 0), *tz = PQgetvalue(r, i, 3);
        bool enabled = PQgetvalue(r, i, 1)[0] == 't';
        long long next = 0, now = atoll(PQgetvalue(r, i, 6));
        char when[160] = "", in[32] = "";
        if (!PQgetisnull(r, i, 5)) {
            next = atoll(PQgetvalue(r, i, 5));
        } else if (enabled && !*PQgetvalue(r, i, 10) && strcmp(PQgetvalue(r, i, 2), "@external") != 0) {
            /* no daemon has computed it yet: say what it will be */
            Cron cr;
            time_t t;
            if (cron_parse(PQgetvalue(r, i, 2), &cr, &err) == 0 && cron_next(&cr, tz, (time_t)now, &t, &err) == 0)
                next = (long long)t;
        }
        if (next) {
            schedule_format_time(next, tz, when, sizeof when);
            format_in(next - now, in, sizeof in);
        }
        if (json) {
            Emit e = {0};
            emit(&e, "%s{\"name\": ", i ? ", " : "");
            emit_json_str(&e, name);
            emit(&e, ", \"enabled\": %s, \"cron\": ", enabled ? "true" : "false");
            emit_json_str(&e, PQgetvalue(r, i, 2));
            emit(&e, ", \"tz\": ");
            emit_json_str(&e, tz);
            emit(&e, ", \"source\": ");
            emit_json_str(&e, PQgetvalue(r, i, 4));
            if (next)
                emit(&e, ", \"next_fire_at\": %lld, \"last_outcome\": ", next);
            else
                emit(&e, ", \"next_fire_at\": null, \"last_outcome\": ");
            emit_json_str(&e, *PQgetvalue(r, i, 7) ? PQgetvalue(r, i, 7) : NULL);
            emit(&e, ", \"last_jobs\": %s, \"last_run_name\": ", *PQgetvalue(r, i, 7) ? PQgetvalue(r, i, 8) : "null");
            emit_json_str(&e, *PQgetvalue(r, i, 9) ? PQgetvalue(r, i, 9) : NULL);
            emit(&e, ", \"last_error\": ");
            emit_json_str(&e, *PQgetvalue(r, i, 12) ? PQgetvalue(r, i, 12) : NULL);
            emit(&e, ", \"cron_error\": ");
            emit_json_str(&e, *PQgetvalue(r, i, 10) ? PQgetvalue(r, i, 10) : NULL);
            emit(&e, ", \"fires\": %s}", PQgetvalue(r, i, 11));
            if (e.rc == 0)
                fwrite(e.b.data, 1, e.b.len, stdout);
            buf_free(&e.b);
            if (e.rc) {
                PQclear(r);
                fprintf(stderr, "tierq: schedule list: out of memory\n");
                return SCHED_RUNTIME;
            }
            continue;
        }
        char next_col[200], last_col[300];
        if (*PQgetvalue(r, i, 10))
            snprintf(next_col, sizeof next_col, "never: %s", PQgetvalue(r, i, 10));
        else if (strcmp(PQgetvalue(r, i, 2), "@external") == 0)
            snprintf(next_col, sizeof next_col, "when tierq.fire() is called (pg_cron)");
        else if (!enabled)
            snprintf(next_col, sizeof next_col, "(disabled)");
        else
            snprintf(next_col, sizeof next_col, "%s, %s", when, in);
        if (*PQgetvalue(r, i, 7))
            snprintf(last_col, sizeof last_col, "%s %s: %s jobs into %s%s%s", PQgetvalue(r, i, 13), PQgetvalue(r, i, 7),
                     PQgetvalue(r, i, 8), PQgetvalue(r, i, 9), *PQgetvalue(r, i, 12) ? " — " : "", PQgetvalue(r, i, 12));
        else
            snprintf(last_col, sizeof last_col, "never fired");
        printf("%-24s %-8s %-16s %-44s %s\n", name, enabled ? "yes" : "no", PQgetvalue(r, i, 2), next_col, last_col);
    }
    if (json)
        printf("]\n");
    PQclear(r);
    return SCHED_OK;
}

static int sched_list(int argc, char **argv)
{
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc &&
            (strcmp(argv[i + 1], "json") == 0 || strcmp(argv[i + 1], "text") == 0)) {
            json = strcmp(argv[++i], "json") == 0;
        } else {
            fprintf(stderr, "tierq: schedule list: unknown argument \"%s\" (--format text|json)\n", argv[i]);
            return SCHED_USAGE;
        }
    }
    PGconn *c = connect_or_say();
    if (!c)
        return SCHED_RUNTIME;
    int rc = print_list(c, json);
    PQfinish(c);
    return rc;
}

static int sched_show(const char *name)
{
    PGconn *c = connect_or_say();
    if (!c)
        return SCHED_RUNTIME;
    TqErr err = {0};
    const char *p[] = {name};
    PGresult *r = db_query(c, "show",
                           "SELECT name, enabled, cron, tz, action, coalesce(source::text, ''), run_name, catch_up,"
                           " catch_up_max, grace_s, coalesce(budget_usd::text, 'none'), coalesce(max_jobs::text, 'none'),"
                           " only_changed, coalesce(prune_older_than::text, ''), coalesce(prune_states::text, ''),"
                           " created_by, created_at, coalesce(cron_error, ''), fires, last_skipped,"
                           " floor(extract(epoch FROM coalesce(next_fire_at, now())))::bigint,"
                           " (SELECT count(*) FROM tierq.schedule_rows sr WHERE sr.schedule = s.name)"
                           " FROM tierq.schedules s WHERE name = $1",
                           1, p, &err);
    if (!r || PQntuples(r) == 0) {
        if (r)
            fprintf(stderr, "tierq: schedule show: no schedule named \"%s\" (tierq schedule list)\n", name);
        else
            say_db_error(&err);
        PQclear(r);
        PQfinish(c);
        return r ? SCHED_USAGE : SCHED_RUNTIME;
    }
    const char *tz = PQgetvalue(r, 0, 3);
    printf("schedule %s (%s)\n", name, PQgetvalue(r, 0, 1)[0] == 't' ? "enabled" : "disabled");
    printf("  cron           %s in %s\n", PQgetvalue(r, 0, 2), tz);
    if (strcmp(PQgetvalue(r, 0, 4), "prune") == 0)
        printf("  prunes         finished jobs older than %s%s%s\n", PQgetvalue(r, 0, 13),
               *PQgetvalue(r, 0, 14) ? ", states " : "", PQgetvalue(r, 0, 14));
    else
        printf("  source         %s, run as %s%s\n", PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 15),
               PQgetvalue(r, 0, 12)[0] == 't' ? "; only changed rows, by source_key" : "");
    printf("  run name       %s\n", PQgetvalue(r, 0, 6));
    printf("  catch-up       %s (max %s, grace %ss)\n", PQgetvalue(r, 0, 7), PQgetvalue(r, 0, 8), PQgetvalue(r, 0, 9));
    printf("  per fire       budget %s%s, max jobs %s\n", strcmp(PQgetvalue(r, 0, 10), "none") ? "$" : "",
           PQgetvalue(r, 0, 10), PQgetvalue(r, 0, 11));
    printf("  fires          %s (due times skipped last time: %s); source rows remembered: %s\n", PQgetvalue(r, 0, 18),
           PQgetvalue(r, 0, 19), PQgetvalue(r, 0, 21));
    if (*PQgetvalue(r, 0, 17))
        printf("  never fires:   %s\n", PQgetvalue(r, 0, 17));
    Cron cr;
    time_t t = (time_t)atoll(PQgetvalue(r, 0, 20)) - 1;
    if (strcmp(PQgetvalue(r, 0, 2), "@external") == 0)
        printf("  fired          from outside only: SELECT tierq.fire('%s') (pg_cron), tierq schedule fire-now\n", name);
    else if (!*PQgetvalue(r, 0, 17) && cron_parse(PQgetvalue(r, 0, 2), &cr, &err) == 0) {
        printf("  next fires\n");
        for (int i = 0; i < 5 && cron_next(&cr, tz, t, &t, &err) == 0; i++) {
            char when[160];
            schedule_format_time((long long)t, tz, when, sizeof when);
            printf("    %s\n", when);
        }
    }
    PQclear(r);
    r = db_query(c, "show fires",
                 "SELECT to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), fired_by, coalesce(run_name, ''),"
                 " jobs, outcome, coalesce(error, '') FROM tierq.schedule_fires WHERE schedule = $1"
                 " ORDER BY due_at DESC LIMIT 10",
                 1, p, &err);
    if (r) {
        printf("  last fires (due, UTC)\n");
        if (PQntuples(r) == 0)
            printf("    none yet\n");
        for (int i = 0; i < PQntuples(r); i++)
            printf("    %s  %-9s %6s jobs  %-28s by %s%s%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 4),
                   PQgetvalue(r, i, 3), PQgetvalue(r, i, 2), PQgetvalue(r, i, 1), *PQgetvalue(r, i, 5) ? "\n      " : "",
                   PQgetvalue(r, i, 5));
        PQclear(r);
    }
    PQfinish(c);
    return SCHED_OK;
}

static int sched_change(const char *verb, const char *name)
{
    PGconn *c = connect_or_say();
    if (!c)
        return SCHED_RUNTIME;
    TqErr err = {0};
    const char *p[] = {name};
    /* enable touches only a disabled schedule (an enabled one keeps its timetable); the count of rows
     * it changed is then 0 for both "already enabled" and "not yours", told apart by was_enabled */
    bool enable = strcmp(verb, "enable") == 0, was_enabled = false;
    if (enable) {
        PGresult *e = db_query(c, "enable", "SELECT enabled FROM tierq.schedules WHERE name = $1", 1, p, &err);
        was_enabled = e && PQntuples(e) == 1 && PQgetvalue(e, 0, 0)[0] == 't';
        PQclear(e);
    }
    if (was_enabled) {
        printf("schedule %s: already enabled\n", name);
        PQfinish(c);
        return SCHED_OK;
    }
    const char *sql = strcmp(verb, "remove") == 0 ? "DELETE FROM tierq.schedules WHERE name = $1"
                      : enable ? "UPDATE tierq.schedules SET enabled = true WHERE name = $1"
                               : "UPDATE tierq.schedules SET enabled = false WHERE name = $1";
    PGresult *r = db_query(c, verb, sql, 1, p, &err);
    int rc = SCHED_OK;
    if (!r) {
        say_db_error(&err);
        rc = SCHED_RUNTIME;
    } else if (atoi(PQcmdTuples(r)) == 0) {
        fprintf(stderr, "tierq: schedule %s: no schedule named \"%s\" that you may change (tierq schedule list)\n", verb,
                name);
        rc = SCHED_USAGE;
    } else {
        printf("schedule %s: %s\n", name, strcmp(verb, "remove") == 0 ? "removed (with its fire history)"
                                          : strcmp(verb, "enable") == 0 ? "enabled (fires missed while disabled are not made up)"
                                                                        : "disabled");
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static int sched_fire_now(const char *name)
{
    PGconn *c = connect_or_say();
    if (!c)
        return SCHED_RUNTIME;
    TqErr err = {0};
    const char *p[] = {name};
    PGresult *r = db_query(c, "fire-now", "SELECT run_name, jobs, outcome, coalesce(error, '') FROM tierq.fire($1)", 1, p,
                           &err);
    int rc = SCHED_OK;
    if (!r) {
        say_db_error(&err);
        rc = SCHED_RUNTIME;
    } else {
        const char *outcome = PQgetvalue(r, 0, 2);
        printf("schedule %s fired: %s jobs into run %s (%s)%s%s\n", name, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0),
               outcome, *PQgetvalue(r, 0, 3) ? ": " : "", PQgetvalue(r, 0, 3));
        if (strcmp(outcome, "error") == 0)
            rc = SCHED_RUNTIME;
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

int schedule_main(int argc, char **argv)
{
    if (argc == 0) {
        fprintf(stderr, "tierq schedule: missing subcommand: add, list, show, enable, disable, remove or fire-now"
                        " (see tierq schedule --help)\n");
        return SCHED_USAGE;
    }
    const char *sub = argv[0];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        fputs(SCHEDULE_USAGE, stdout);
        return SCHED_OK;
    }
    if (strcmp(sub, "add") == 0)
        return sched_add(argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0)
        return sched_list(argc - 1, argv + 1);
    bool one_name = strcmp(sub, "show") == 0 || strcmp(sub, "enable") == 0 || strcmp(sub, "disable") == 0 ||
                    strcmp(sub, "remove") == 0 || strcmp(sub, "fire-now") == 0;
    if (!one_name) {
        fprintf(stderr, "tierq schedule: unknown subcommand \"%s\" (see tierq schedule --help)\n", sub);
        return SCHED_USAGE;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "tierq: schedule %s takes one schedule NAME\n", sub);
        return SCHED_USAGE;
    }
    if (strcmp(sub, "show") == 0)
        return sched_show(argv[1]);
    if (strcmp(sub, "fire-now") == 0)
        return sched_fire_now(argv[1]);
    return sched_change(sub, argv[1]);
}
