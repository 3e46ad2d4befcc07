/* outage.h — timed outages of a model or a provider (--outage), and how a model that is down
 * answers (also the runtime "down" setting of catalog.h).
 *
 * A spec is MODEL:START_S:DURATION_S[:MODE]: during [START_S, START_S + DURATION_S) seconds after the
 * simulator started (decimals allowed), every chat request naming MODEL gets MODE — "503" (the
 * default: HTTP 503 with an error body) or "drop" (the connection closed without a response), at
 * once and before rate limits and faults. MODEL may be provider:NAME for every model whose
 * "provider" key is NAME when the simulator starts. Model names may contain ':' (the fields are
 * taken from the right). A spec naming no model of the catalog is an error, so a typo never leaves
 * an outage silently out.
 *
 * Windows are resolved once at start into per-model lists: a lookup costs the windows of that model
 * only. Single-threaded; nothing here blocks. */
#ifndef SIM_OUTAGE_H
#define SIM_OUTAGE_H

#include "catalog.h"
#include "err.h"
#include "reply.h"

#include <stddef.h>
#include <stdint.h>

typedef struct OutageWindow {
    size_t model;             /* catalog index */
    int64_t start_ms, end_ms; /* [start, end) after the simulator started */
    DownMode mode;
} OutageWindow;

typedef struct Outages {
    OutageWindow *w; /* owned, n entries, sorted by model */
    size_t n;
    size_t *first;   /* owned, nmodels + 1 entries: model i's windows are w[first[i] .. first[i+1]) */
} Outages;

/* Resolve the specs (n of them, as given on the command line) against cat into o. Returns 0, or
 * TQ_EINVAL with err naming which --outage (by position, its text is not repeated: it may be a key
 * given to the wrong flag) and what is wrong, or TQ_ENOMEM. On failure o is empty. */
int outage_parse(Outages *o, const char *const *specs, size_t n, const Catalog *cat, TqErr *err);
void outage_free(Outages *o);
/* How model m answers at elapsed_ms after the start: its "down" setting when set, else the mode of
 * the first of its windows that covers elapsed_ms, else DOWN_NO. */
DownMode outage_mode(const Outages *o, const SimModel *m, int64_t elapsed_ms);
/* Fill rep for a model that is down (mode != DOWN_NO): the 503 with its body, or a drop. Returns
 * 0 or a TQ_E* code. */
int outage_reply(DownMode mode, SimReply *rep);

#endif
