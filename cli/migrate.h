/* migrate.h — apply the embedded migrations and sync jobs/ into tierq.kinds and tierq.models.
 *
 * migrate_apply is idempotent and safe when several processes run it at once: everything happens
 * in one transaction that first takes a transaction-level advisory lock, so a second migrator waits,
 * then sees the versions the first one recorded and applies nothing. Blocks (CLI and run start). */
#ifndef TQ_MIGRATE_H
#define TQ_MIGRATE_H

#include "config.h"
#include "err.h"

#include <libpq-fe.h>

/* Apply pending migrations; *applied (optional) receives how many were applied now. */
int migrate_apply(PGconn *c, int *applied, TqErr *err);

/* Upsert every model and kind of cfg; kinds no longer in cfg are kept (jobs reference them) but
 * marked in_config = false. Requires the schema to be current. */
int migrate_sync_config(PGconn *c, const TqConfig *cfg, TqErr *err);

/* Highest applied migration version, 0 when none, or a negative error. */
int migrate_current_version(PGconn *c, TqErr *err);

/* The version of the newest migration embedded in this binary. */
int migrate_latest_version(void);

#endif
