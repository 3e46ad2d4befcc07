/* spill.h — write-backs kept on local disk when PostgreSQL is out of reach at shutdown, replayed by
 * the next `tierq run` on this machine.
 *
 * A spill file holds one write-back as its statement parameters (queue_flush_params). Replaying it
 * runs the same statement — idempotent by call_key and fenced by (attempt, lease owner) — so a file
 * replayed twice (a crash in the middle of a replay) charges nothing twice, a job still leased to
 * the process that spilled it gets its result, and a job another process took over meanwhile is left
 * alone (its ledger rows are still charged: money spent is money spent).
 *
 * Files are written whole (a temporary name, fsync, rename) with mode 0600 in a 0700 directory:
 * they hold answers. Blocking file and database I/O: the writer thread at shutdown, and run's setup. */
#ifndef TQ_SPILL_H
#define TQ_SPILL_H

#include "call.h"
#include "err.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* The directory when --spill-dir is not given: $TIERQ_SPILL_DIR, else $XDG_STATE_HOME/tierq/spill,
 * else $HOME/.local/state/tierq/spill. Returns buf, or NULL when none can be named. */
const char *spill_default_dir(char *buf, size_t cap);

/* Write the write-back of calls[0..n) for owner to a new file in dir (created, mode 0700, when
 * missing). The calls are read, not freed. */
int spill_write(const char *dir, const char *owner, Call *const *calls, int n, TqErr *err);

typedef struct SpillReplay {
    int files;                    /* replayed and removed */
    int refused;                  /* refused by PostgreSQL: renamed *.refused and kept */
    int64_t done, retry, failed;  /* outcomes applied */
} SpillReplay;

/* Replay every spill file in dir (no directory: nothing to do). Each file is taken by renaming it,
 * so two processes never replay the same one; a taken file left behind by a process that died is
 * taken again after 10 minutes. A file PostgreSQL refuses for its content is renamed *.refused and
 * kept for a person to look at; a lost connection puts the file back and ends the replay with
 * TQ_EDB. A file that cannot be read is renamed *.unreadable. */
int spill_replay(PGconn *c, const char *dir, SpillReplay *out, TqErr *err);

#endif
