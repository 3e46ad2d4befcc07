#include "held.h"

#include "err.h"

#include <pthread.h>
#include <stdlib.h>

/* Open addressing with linear probing and backward-shift deletion; ids are positive. */
typedef struct Slot {
    int64_t id; /* 0 = empty */
    int64_t bytes;
    int attempt;
} Slot;

struct HeldSet {
    pthread_mutex_t mu;
    Slot *slots;
    size_t cap; /* power of two */
    size_t n;
    int64_t bytes; /* sum over the slots */
};

static size_t slot_of(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x >> 17) & (cap - 1);
}

HeldSet *held_new(void)
{
    HeldSet *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cap = 1024;
    h->slots = calloc(h->cap, sizeof *h->slots);
    if (!h->slots) {
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void held_free(HeldSet *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->mu);
    free(h->slots);
    free(h);
}

/* Returns the bytes the slot held before (0 when it was empty). */
static int64_t insert_slot(Slot *slots, size_t cap, int64_t id, int attempt, int64_t bytes, size_t *n)
{
    size_t i = slot_of(id, cap);
    while (slots[i].id != 0 && slots[i].id != id)
        i = (i + 1) & (cap - 1);
    int64_t before = slots[i].id ? slots[i].bytes : 0;
    if (slots[i].id == 0)
        (*n)++;
    slots[i].id = id;
    slots[i].attempt = attempt;
    slots[i].bytes = bytes;
    return before;
}

int held_add(HeldSet *h, int64_t id, int attempt, int64_t bytes)
{
    pthread_mutex_lock(&h->mu);
    if ((h->n + 1) * 2 > h->cap) {
        size_t cap = h->cap * 2;
        Slot *s = calloc(cap, sizeof *s);
        if (!s) {
            pthread_mutex_unlock(&h->mu);
            return TQ_ENOMEM;
        }
        size_t n = 0;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slots[i].id)
                insert_slot(s, cap, h->slots[i].id, h->slots[i].attempt, h->slots[i].bytes, &n);
        free(h->slots);
        h->slots = s;
        h->cap = cap;
    }
    h->bytes -= insert_slot(h->slots, h->cap, id, attempt, bytes, &h->n);
    h->bytes += bytes;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void held_remove(HeldSet *h, int64_t id)
{
    pthread_mutex_lock(&h->mu);
    size_t mask = h->cap - 1;
    size_t i = slot_of(id, h->cap);
    while (h->slots[i].id != 0 && h->slots[i].id != id)
        i = (i + 1) & mask;
    if (h->slots[i].id == id) {
        h->slots[i].id = 0;
        h->n--;
        h->bytes -= h->slots[i].bytes;
        /* backward-shift the cluster so lookups never stop at the hole */
        size_t j = i;
        for (;;) {
            j = (j + 1) & mask;
            if (h->slots[j].id == 0)
                break;
            size_t k = slot_of(h->slots[j].id, h->cap);
            if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
                h->slots[i] = h->slots[j];
                h->slots[j].id = 0;
                i = j;
            }
        }
    }
    pthread_mutex_unlock(&h->mu);
}

int held_count(HeldSet *h)
{
    pthread_mutex_lock(&h->mu);
    int n = (int)h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int64_t held_bytes(HeldSet *h)
{
    pthread_mutex_lock(&h->mu);
    int64_t b = h->bytes;
    pthread_mutex_unlock(&h->mu);
    return b;
}

int held_snapshot(HeldSet *h, int64_t **ids, int **attempts)
{
    pthread_mutex_lock(&h->mu);
    int n = (int)h->n;
    *ids = NULL;
    *attempts = NULL;
    if (n > 0) {
        *ids = malloc((size_t)n * sizeof **ids);
        *attempts = malloc((size_t)n * sizeof **attempts);
        if (!*ids || !*attempts) {
            free(*ids);
            free(*attempts);
            *ids = NULL;
            *attempts = NULL;
            pthread_mutex_unlock(&h->mu);
            return -1;
        }
        int k = 0;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slots[i].id) {
                (*ids)[k] = h->slots[i].id;
                (*attempts)[k] = h->slots[i].attempt;
                k++;
            }
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}
