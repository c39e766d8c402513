/* clock.h - the one monotonic clock.
 *
 * Code on the loop reads the loop's cached now (loop_now_ms, loop_now_us:
 * taken once per loop round, so every callback of a round sees one time
 * and pays no system call). These are for the loop itself and for code
 * off the loop: helper threads, tests, benchmarks. Wall-clock time (log
 * lines, signatures, credential expiry) is time()/CLOCK_REALTIME, never
 * this. */
#ifndef KK_BASE_CLOCK_H
#define KK_BASE_CLOCK_H

#include <stdint.h>

/* Monotonic microseconds since an unspecified start. */
uint64_t clock_mono_us(void);
/* Monotonic milliseconds, the same clock. */
uint64_t clock_mono_ms(void);

#endif
