/* status.h — `tierq status`: queue counts by state and kind, oldest queued age, live workers. */
#ifndef TQ_STATUS_H
#define TQ_STATUS_H

#include "err.h"

#include <libpq-fe.h>
#include <stdio.h>

int status_print(PGconn *c, FILE *out, TqErr *err);

#endif
