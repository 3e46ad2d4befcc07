/* clock.h — the one monotonic clock every loop and timeout uses. */
#ifndef TQ_CLOCK_H
#define TQ_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: only differences mean anything. Never fails, never blocks. */
int64_t clock_mono_ms(void);

#endif
