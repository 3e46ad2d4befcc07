#include "db.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *db_conninfo_from_env(void)
{
    const char *u = getenv("TIERQ_DATABASE_URL");
    return u ? u : "";
}

static void db_trim_message(char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* A conninfo libpq cannot parse: find the password as written — the URL's user:PASSWORD@ part, or
 * the text after password= (quoted or not) — and register it as it stands. */
static void register_raw_password(const char *ci)
{
    char buf[512];
    const char *sep = strstr(ci, "://");
    if (sep) {
        const char *auth = sep + 3, *at = strchr(auth, '@');
        const char *colon = auth;
        while (colon < (at ? at : auth) && *colon != ':')
            colon++;
        if (at && colon < at && at - colon - 1 > 0 && (size_t)(at - colon) < sizeof buf) {
            snprintf(buf, sizeof buf, "%.*s", (int)(at - colon - 1), colon + 1);
            log_add_secret(buf);
        }
        return;
    }
    for (const char *p = strstr(ci, "password"); p; p = strstr(p + 8, "password")) {
        const char *v = p + 8;
        while (*v == ' ')
            v++;
        if (*v != '=')
            continue;
        v++;
        while (*v == ' ')
            v++;
        if (*v == '\'')
            v++;
        size_t n = 0;
        while (v[n] && v[n] != '\'' && v[n] != ' ' && n + 1 < sizeof buf)
            n++;
        if (n > 0) {
            snprintf(buf, sizeof buf, "%.*s", (int)n, v);
            log_add_secret(buf);
        }
    }
}

/* The connection's password is a secret like an API key: libpq can echo a malformed conninfo in
 * its error text. Register it (and PGPASSWORD) with the log redactor before connecting. */
static void register_password(const char *conninfo)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            log_add_secret(o->val);
    if (!opts && conninfo)
        register_raw_password(conninfo); /* malformed: exactly when libpq quotes pieces of it */
    PQconninfoFree(opts);
    const char *env = getenv("PGPASSWORD");
    if (env && *env)
        log_add_secret(env);
}

int db_connect(const char *conninfo, PGconn **out, TqErr *err)
{
    if (!conninfo)
        conninfo = db_conninfo_from_env();
    register_password(conninfo);
    PGconn *c = PQconnectdb(conninfo);
    if (!c)
        return tq_err(err, TQ_ENOMEM, "database: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        db_trim_message(msg);
        PQfinish(c);
        char *clean = log_scrub_dup(msg); /* libpq may quote the conninfo, password and all */
        int rc = tq_err(err, TQ_EDB, "cannot connect to the database: %s", clean ? clean : "(message withheld)");
        free(clean);
        return rc;
    }
    /* Our timestamps are compared with now() on the server only; UTC keeps logs unambiguous. Every
     * name we use is schema-qualified: pin search_path so objects another role creates in a schema
     * earlier on the path can never stand in for pg_catalog's. No JIT: tierq's statements are short,
     * but the planner prices the lateral ones of the shadow checks (sql/010, 016) far above
     * jit_above_cost, and compiling them took 3.4 s of a 3.45 s tierq.shadow_tier_drift on a
     * 37,000-job database (45 ms without) — on the run loop's connection, every few seconds. */
    PGresult *r = PQexec(c, "SET TIME ZONE 'UTC'; SET application_name = 'tierq'; SET client_min_messages = warning;"
                            " SET search_path = pg_catalog, pg_temp; SET jit = off");
    PQclear(r);
    *out = c;
    return 0;
}

/* err from a failed result (r may be NULL: then the connection's message). */
static int result_error(PGconn *c, PGresult *r, const char *what, TqErr *err)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    db_trim_message(msg);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    tq_err(err, TQ_EDB, "%s: %s", what, msg);
    if (err && state)
        snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state);
    return TQ_EDB;
}

PGresult *db_query(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params,
                   TqErr *err)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    result_error(c, r, what, err);
    PQclear(r);
    return NULL;
}

int db_query_rows(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params,
                  int (*on_row)(void *ud, const PGresult *r, int row), void *ud, TqErr *err)
{
    if (!PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0))
        return result_error(c, NULL, what, err);
    /* Single-row mode can only fail right after sending; then the rows come in one result: still
     * correct, only held whole. */
    (void)PQsetSingleRowMode(c);
    int rc = 0;
    bool stop = false;
    PGresult *r;
    /* Read to the end whatever happens: the connection is usable again only after the last result. */
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(r) && !stop && !rc; i++)
                stop = on_row(ud, r, i) != 0;
        } else if (st != PGRES_COMMAND_OK && !rc) {
            rc = result_error(c, r, what, err);
        }
        PQclear(r);
    }
    return rc;
}

int db_exec(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params, TqErr *err)
{
    PGresult *r = db_query(c, what, sql, nparams, params, err);
    if (!r)
        return TQ_EDB;
    PQclear(r);
    return 0;
}

int db_exec_script(PGconn *c, const char *what, const char *sql, TqErr *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        return 0;
    }
    char msg[400];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    db_trim_message(msg);
    PQclear(r);
    return tq_err(err, TQ_EDB, "%s: %s", what, msg);
}

bool db_is_broken(PGconn *c) { return !c || PQstatus(c) != CONNECTION_OK; }

bool db_error_is_transient(const TqErr *err)
{
    const char *s = err ? err->sqlstate : "";
    if (!s[0])
        return true;
    static const char *const classes[] = {"08", "40", "53", "57", "58"};
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (strncmp(s, classes[i], 2) == 0)
            return true;
    return strcmp(s, "55P03") == 0;
}
