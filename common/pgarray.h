/* pgarray.h — build PostgreSQL array literals ({...}) so a whole batch of rows travels as a few
 * parameters of one statement (UPDATE ... FROM unnest($1::bigint[], $2::text[], ...)). That is how
 * tierq writes many rows per round trip instead of one round trip per job. Text elements are
 * double-quoted and escaped; NULL elements are written as NULL. */
#ifndef TQ_PGARRAY_H
#define TQ_PGARRAY_H

#include "buf.h"

#include <stdint.h>

void pgarray_begin(Buf *b);          /* buf_init + "{" */
int pgarray_add_text(Buf *b, const char *s);   /* NULL -> NULL element */
int pgarray_add_int64(Buf *b, int64_t v);
int pgarray_add_double(Buf *b, double v);      /* NaN -> NULL element */
int pgarray_add_bool(Buf *b, int v);
int pgarray_add_null(Buf *b);
int pgarray_end(Buf *b);             /* "}"; the literal is then b->data */

#endif
