/* db.h — PostgreSQL access shared by every part of tierq.
 *
 * The connection string comes from TIERQ_DATABASE_URL (a libpq conninfo or postgres:// URL); when
 * it is unset, libpq's own PG* environment variables apply. Every statement is parameterized. All
 * calls here block and are meant for the scheduler/writer threads and CLI commands, never for a
 * worker's curl loop. Errors are returned as TQ_EDB with libpq's message (which never contains the
 * password). */
#ifndef TQ_DB_H
#define TQ_DB_H

#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* Open a connection (conninfo NULL = from the environment as above). */
int db_connect(const char *conninfo, PGconn **out, TqErr *err);
const char *db_conninfo_from_env(void);

/* Run a statement with text parameters. Returns the result when its status is COMMAND_OK or
 * TUPLES_OK, else NULL with err filled ("what: message"). The caller PQclear()s the result. */
PGresult *db_query(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params,
                   TqErr *err);
/* Run a statement and hand each result row to on_row as it arrives (libpq single-row mode), so a
 * large result is never held whole: r and row are valid during the call only. on_row returns
 * nonzero to skip the remaining rows (still read, so the connection stays usable). Returns 0, or
 * TQ_EDB with err filled (rows passed before the error stay passed). */
int db_query_rows(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params,
                  int (*on_row)(void *ud, const PGresult *r, int row), void *ud, TqErr *err);
/* Same as db_query, discarding the result. */
int db_exec(PGconn *c, const char *what, const char *sql, int nparams, const char *const *params, TqErr *err);
/* Simple-protocol execution of a script with several statements (migrations only). */
int db_exec_script(PGconn *c, const char *what, const char *sql, TqErr *err);

/* True when the connection is gone (so callers reconnect rather than retry the statement). */
bool db_is_broken(PGconn *c);
/* True when a failed statement may succeed unchanged if retried: no SQLSTATE (the connection or
 * libpq failed), or a class that is about the moment rather than the data: 08 connection,
 * 40 serialization/deadlock, 53 resources, 57 cancel/shutdown/statement timeout, 58 system,
 * 55P03 lock not available. Anything else (22 data, 23 constraint, P0001 a trigger's RAISE, ...)
 * will fail again with the same values. */
bool db_error_is_transient(const TqErr *err);

#endif
