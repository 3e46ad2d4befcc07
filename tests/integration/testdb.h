/* testdb.h — integration-test helpers: a fresh database per test binary, migrated by the real
 * tierq binary, and small query helpers. Environment (set by tests/run.sh): TIERQ_DATABASE_URL
 * (the private server), TIERQ_BIN (the tierq binary), TIERQ_JOBS_DIR. */
#ifndef TQ_TESTDB_H
#define TQ_TESTDB_H

#include "../check.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char testdb_conninfo[1024];

static PGconn *testdb_connect(void)
{
    PGconn *c = PQconnectdb(testdb_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stdout, "# connect failed: %s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

/* Run a command with TIERQ_DATABASE_URL pointing at the test database; returns its exit status. */
static int testdb_run(const char *args, char *out, size_t outcap)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "TIERQ_DATABASE_URL='%s' '%s' %s 2>&1", testdb_conninfo, getenv("TIERQ_BIN"), args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = 0;
    if (out && outcap) {
        n = fread(out, 1, outcap - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Create database `name` (dropped first) and migrate it with the tierq binary. */
static void testdb_setup(const char *name, int migrate)
{
    const char *base = getenv("TIERQ_DATABASE_URL");
    if (!base || !getenv("TIERQ_BIN")) {
        printf("# TIERQ_DATABASE_URL and TIERQ_BIN must be set (run through tests/run.sh)\n");
        exit(1);
    }
    PGconn *admin = PQconnectdb(base);
    if (PQstatus(admin) != CONNECTION_OK) {
        printf("# cannot connect to %s: %s", base, PQerrorMessage(admin));
        exit(1);
    }
    PQclear(PQexec(admin, "SET client_min_messages = warning"));
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        printf("# create database failed: %s", PQresultErrorMessage(r));
        exit(1);
    }
    PQclear(r);
    PQfinish(admin);
    snprintf(testdb_conninfo, sizeof testdb_conninfo, "%s dbname=%s", base, name);
    if (migrate) {
        char out[2048];
        int st = testdb_run("migrate", out, sizeof out);
        if (st != 0) {
            printf("# tierq migrate failed (%d): %s\n", st, out);
            exit(1);
        }
    }
}

/* First column of the first row as a long long (the query must return one row). */
static long long testdb_scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    else
        printf("# query failed: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

/* Execute; returns 0 on success, else copies the error message into err (if given). */
static int testdb_exec(PGconn *c, const char *sql, char *err, size_t errcap)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
    if (err && errcap)
        snprintf(err, errcap, "%s", rc ? PQresultErrorMessage(r) : "");
    PQclear(r);
    return rc;
}

/* The line of text that starts with prefix (after leading spaces), copied into out. */
static inline const char *line_of(const char *text, const char *prefix, char *out, size_t cap)
{
    out[0] = '\0';
    for (const char *p = text; p && *p;) {
        const char *s = p;
        while (*s == ' ')
            s++;
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (strncmp(s, prefix, strlen(prefix)) == 0) {
            snprintf(out, cap, "%.*s", (int)n, s);
            return out;
        }
        p = nl ? nl + 1 : NULL;
    }
    return out;
}

#endif
