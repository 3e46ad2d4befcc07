/* fifo.h — a thread-safe FIFO of intrusive items, for handing work between threads.
 *
 * Items are linked through a pointer field of their own (`next`), whose offset is given at
 * creation, so the FIFO allocates nothing per item and never fails to push. Any thread may push;
 * fifo_take_all takes everything at once (one lock for a whole burst) and can wait on a
 * CLOCK_MONOTONIC condition variable. The FIFO owns no item: fifo_free leaves queued items alone. */
#ifndef TQ_FIFO_H
#define TQ_FIFO_H

#include <stddef.h>

typedef struct Fifo Fifo;

/* next_offset: offsetof(Item, next), the item's `Item *next` field. NULL on allocation failure. */
Fifo *fifo_new(size_t next_offset);
void fifo_free(Fifo *q);
void fifo_push(Fifo *q, void *item);
/* Take everything queued (linked through their next fields, FIFO order, the last one's next NULL),
 * waiting up to timeout_ms for at least one (0: do not wait). NULL when empty; *count (optional)
 * is how many were taken. */
void *fifo_take_all(Fifo *q, int timeout_ms, int *count);
int fifo_length(Fifo *q);

#endif
