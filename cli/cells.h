/* cells.h — reading result cells for printing (tierq report, tierq cache stats): PostgreSQL sends
 * numbers as decimal text, which is valid JSON as it is; only SQL NULL needs a stand-in. */
#ifndef TQ_CELLS_H
#define TQ_CELLS_H

#include <libpq-fe.h>

/* A cell as text, or NULL for SQL NULL. */
static inline const char *cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* A cell for JSON: its text, or null. */
static inline const char *json_num(const PGresult *r, int row, int col)
{
    const char *v = cell(r, row, col);
    return v ? v : "null";
}

/* A cell for a text table: its text, or "-". */
static inline const char *text_cell(const PGresult *r, int row, int col)
{
    const char *v = cell(r, row, col);
    return v ? v : "-";
}

#endif
