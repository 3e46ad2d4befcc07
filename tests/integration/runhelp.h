/* runhelp.h — shared pieces of the end-to-end tests that drive `tierq run` against the simulator. */
#ifndef TQ_RUNHELP_H
#define TQ_RUNHELP_H

#include "simproc.h"
#include "testdb.h"

static char run_out[65536]; /* what the last run_drain printed */

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* `tierq run --drain --quiet ARGS` against the simulator s; exit status, output in run_out. */
static inline int run_drain(const SimProc *s, const char *args)
{
    setenv("TIERQ_BASE_URL", s->base_url, 1);
    char a[1024];
    snprintf(a, sizeof a, "run --drain --quiet %s", args ? args : "");
    int st = testdb_run(a, run_out, sizeof run_out);
    unsetenv("TIERQ_BASE_URL");
    return st;
}

static inline long long q(PGconn *c, const char *sql) { return testdb_scalar(c, sql); }

/* The money invariant: the sum over jobs equals the sum over calls, and each job's cost is the sum of
 * its shares of the calls that served it. */
static inline void check_sums(PGconn *c)
{
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT (SELECT coalesce(sum(cost_usd), 0) FROM tierq.jobs) AS j,"
                   " (SELECT coalesce(sum(cost_usd), 0) FROM tierq.calls) AS k) x WHERE j = k"), 1);
}

/* Start `tierq run ARGS` as a daemon (no --drain), its output to log (NULL: discarded); returns its
 * pid. */
static inline int start_daemon_logged(const SimProc *s, const char *args, const char *log)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "TIERQ_DATABASE_URL='%s' TIERQ_BASE_URL='%s' '%s' run %s >'%s' 2>&1 & echo $!",
             testdb_conninfo, s->base_url, getenv("TIERQ_BIN"), args, log ? log : "/dev/null");
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (!p || fscanf(p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose(p);
    return pid;
}

/* Start `tierq run --quiet ARGS` as a daemon, its output discarded; returns its pid. */
static inline int start_daemon(const SimProc *s, const char *args)
{
    char quiet[1024];
    snprintf(quiet, sizeof quiet, "--quiet %.1000s", args);
    return start_daemon_logged(s, quiet, NULL);
}

/* Wait up to ms for a query to return want; returns the last value. */
static inline long long wait_for(PGconn *c, const char *sql, long long want, int ms)
{
    long long v = -1;
    for (int t = 0; t < ms; t += 50) {
        v = q(c, sql);
        if (v == want)
            break;
        usleep(50000);
    }
    return v;
}

/* The first ```sql block of README.md after `heading`, or "" (malloc'd). */
static inline char *readme_sql_after(const char *heading)
{
    char path[512];
    snprintf(path, sizeof path, "%s/README.md", getenv("TIERQ_ROOT"));
    FILE *f = fopen(path, "r");
    static char text[1 << 20];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    const char *h = strstr(text, heading);
    const char *start = h ? strstr(h, "```sql\n") : NULL;
    const char *end = start ? strstr(start + 7, "```") : NULL;
    if (!start || !end)
        return strdup("");
    return strndup(start + 7, (size_t)(end - start - 7));
}

#endif
