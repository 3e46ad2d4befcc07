#include "fifo.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct Fifo {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next_offset;
    void *head, *tail;
    int n;
};

static void **next_of(const Fifo *q, void *item) { return (void **)(void *)((char *)item + q->next_offset); }

Fifo *fifo_new(size_t next_offset)
{
    Fifo *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->next_offset = next_offset;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&q->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0) {
        free(q);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        pthread_mutex_destroy(&q->mu);
        free(q);
        return NULL;
    }
    return q;
}

void fifo_free(Fifo *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

void fifo_push(Fifo *q, void *item)
{
    *next_of(q, item) = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        *next_of(q, q->tail) = item;
    else
        q->head = item;
    q->tail = item;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void *fifo_take_all(Fifo *q, int timeout_ms, int *count)
{
    pthread_mutex_lock(&q->mu);
    if (!q->head && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!q->head)
            if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
                break;
    }
    void *h = q->head;
    if (count)
        *count = q->n;
    q->head = q->tail = NULL;
    q->n = 0;
    pthread_mutex_unlock(&q->mu);
    return h;
}

int fifo_length(Fifo *q)
{
    pthread_mutex_lock(&q->mu);
    int n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}
