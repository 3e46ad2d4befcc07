#include "flight.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLIGHT_BUCKETS 4096

typedef struct Waiting {
    struct Waiting *next;     /* bucket chain */
    char key[65];
    QueueJob **jobs;          /* the waiters, in arrival order */
    int n, cap;
} Waiting;

struct Flight {
    pthread_mutex_t mu;
    Waiting *buckets[FLIGHT_BUCKETS];
    QueueJob **released;
    int nreleased, capreleased;
    int waiting;
};

/* Keys are SHA-256 hex: their first digits are as good as any hash. */
static unsigned bucket_of(const char *key)
{
    unsigned h = 0;
    for (int i = 0; i < 6 && key[i]; i++)
        h = h * 16 + (unsigned)(key[i] <= '9' ? key[i] - '0' : key[i] - 'a' + 10);
    return h % FLIGHT_BUCKETS;
}

static int push(QueueJob ***arr, int *n, int *cap, QueueJob *job)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        QueueJob **a = realloc(*arr, (size_t)nc * sizeof *a);
        if (!a)
            return -1;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = job;
    return 0;
}

Flight *flight_new(void)
{
    Flight *f = calloc(1, sizeof *f);
    if (f)
        pthread_mutex_init(&f->mu, NULL);
    return f;
}

void flight_free(Flight *f)
{
    if (!f)
        return;
    for (int b = 0; b < FLIGHT_BUCKETS; b++)
        for (Waiting *w = f->buckets[b], *next; w; w = next) {
            next = w->next;
            for (int i = 0; i < w->n; i++)
                job_free(w->jobs[i]);
            free(w->jobs);
            free(w);
        }
    for (int i = 0; i < f->nreleased; i++)
        job_free(f->released[i]);
    free(f->released);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static Waiting **find(Flight *f, const char *key)
{
    Waiting **at = &f->buckets[bucket_of(key)];
    while (*at && strcmp((*at)->key, key) != 0)
        at = &(*at)->next;
    return at;
}

bool flight_join(Flight *f, const char *key, QueueJob *job)
{
    pthread_mutex_lock(&f->mu);
    Waiting **at = find(f, key);
    bool leads = true;
    if (!*at) {
        Waiting *w = calloc(1, sizeof *w);
        if (w) {
            snprintf(w->key, sizeof w->key, "%s", key);
            *at = w;
        }
    } else if (push(&(*at)->jobs, &(*at)->n, &(*at)->cap, job) == 0) {
        leads = false;
        f->waiting++;
    }
    pthread_mutex_unlock(&f->mu);
    return leads;
}

void flight_land(Flight *f, const char *key, bool shared, QueueJob ***jobs, int *n)
{
    *jobs = NULL;
    *n = 0;
    pthread_mutex_lock(&f->mu);
    Waiting **at = find(f, key);
    Waiting *w = *at;
    if (w) {
        *at = w->next;
        f->waiting -= w->n;
        if (shared) {
            *jobs = w->jobs;
            *n = w->n;
            w->jobs = NULL;
        } else {
            for (int i = 0; i < w->n; i++)
                if (push(&f->released, &f->nreleased, &f->capreleased, w->jobs[i]) != 0)
                    job_free(w->jobs[i]); /* no memory: its lease expires and it is claimed again */
            free(w->jobs);
        }
        free(w);
    }
    pthread_mutex_unlock(&f->mu);
}

void flight_take_released(Flight *f, QueueJob ***jobs, int *n)
{
    pthread_mutex_lock(&f->mu);
    *jobs = f->released;
    *n = f->nreleased;
    f->released = NULL;
    f->nreleased = f->capreleased = 0;
    pthread_mutex_unlock(&f->mu);
}

void flight_drop(Flight *f, void (*fn)(void *ud, const QueueJob *job), void *ud)
{
    pthread_mutex_lock(&f->mu);
    for (int b = 0; b < FLIGHT_BUCKETS; b++) {
        for (Waiting *w = f->buckets[b], *next; w; w = next) {
            next = w->next;
            for (int i = 0; i < w->n; i++) {
                fn(ud, w->jobs[i]);
                job_free(w->jobs[i]);
            }
            free(w->jobs);
            free(w);
        }
        f->buckets[b] = NULL;
    }
    for (int i = 0; i < f->nreleased; i++) {
        fn(ud, f->released[i]);
        job_free(f->released[i]);
    }
    f->nreleased = 0;
    f->waiting = 0;
    pthread_mutex_unlock(&f->mu);
}

int flight_waiting(Flight *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->waiting;
    pthread_mutex_unlock(&f->mu);
    return n;
}
