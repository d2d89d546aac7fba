/*
 * fakeclock.c: a deterministic clock for instruction counting under valgrind (LD_PRELOAD shim).
 *
 * Why: a benchmark that prints what it measured ("achieved tok/s: 3541.666667") formats a
 * different number on every run, and glibc's float printing (__printf_fp_l, hack_digit, the
 * __mpn_* helpers) runs a different number of instructions for different digits. Under callgrind
 * that makes the total instruction count move by a few hundred instructions from run to run,
 * although the work measured is the same. With this shim preloaded, every clock the program reads
 * is a counter: the same calls give the same times, the same output and the same count.
 *
 * The clock: one counter shared by every function below, which advances FAKECLOCK_STEP_NS on each
 * call, whatever the function and the clock id. Wall clocks (CLOCK_REALTIME and its variants,
 * gettimeofday, time, timespec_get) start at 2000-01-01T00:00:00Z, the monotonic ones at 1000 s
 * "since boot", CPU-time clocks (and clock()) at 0. A realistic non-zero start matters: programs
 * use "start == 0" as "not started yet" (llama2.c's run.c does).
 *
 * The step, 1 ms per call: run.c computes tok/s from two millisecond readings, one call apart, and
 * prints "inf" when they are equal; with 1 ms per call the difference is never 0 ms, so the
 * printed figure is an ordinary finite number (255000.000000 for 256 positions; 127500.000000 from
 * our refrun.c, which reads the monotonic clock in between), while a loop that polls the clock
 * until some time has passed ends after (that time / 1 ms) calls. A step of 1 us would make
 * every millisecond difference 0.
 *
 * Limits: only calls that go through the dynamic linker are replaced (a statically linked binary,
 * or a raw syscall(SYS_clock_gettime), reads the real clock); on 32-bit glibc with a 64-bit time_t
 * the __clock_gettime64 family is not replaced. Sleeping still takes real time. Nothing here is
 * meant to be run outside pytest-llmperf's "instructions" profiler.
 */

#define _GNU_SOURCE
#include <stdint.h>
#include <sys/select.h> /* struct timeval, without gettimeofday's declaration (its type varies) */
#include <time.h>

#define FAKECLOCK_STEP_NS 1000000LL           /* 1 ms per call */
#define FAKECLOCK_WALL_START_S 946684800LL    /* 2000-01-01T00:00:00Z */
#define FAKECLOCK_MONO_START_S 1000LL         /* "up" for 1000 s */
#define NS_PER_S 1000000000LL

static uint64_t fakeclock_calls;

/* Nanoseconds since the fake start, advanced by one step per call (atomically: threads may read it). */
static long long fakeclock_elapsed_ns(void) {
    uint64_t n = __atomic_fetch_add(&fakeclock_calls, 1, __ATOMIC_RELAXED);
    return (long long)n * FAKECLOCK_STEP_NS;
}

static int is_wall_clock(clockid_t id) {
    switch (id) {
    case CLOCK_REALTIME:
#ifdef CLOCK_REALTIME_COARSE
    case CLOCK_REALTIME_COARSE:
#endif
#ifdef CLOCK_REALTIME_ALARM
    case CLOCK_REALTIME_ALARM:
#endif
#ifdef CLOCK_TAI
    case CLOCK_TAI:
#endif
        return 1;
    default:
        return 0;
    }
}

static int is_monotonic_clock(clockid_t id) {
    switch (id) {
    case CLOCK_MONOTONIC:
#ifdef CLOCK_MONOTONIC_RAW
    case CLOCK_MONOTONIC_RAW:
#endif
#ifdef CLOCK_MONOTONIC_COARSE
    case CLOCK_MONOTONIC_COARSE:
#endif
#ifdef CLOCK_BOOTTIME
    case CLOCK_BOOTTIME:
#endif
#ifdef CLOCK_BOOTTIME_ALARM
    case CLOCK_BOOTTIME_ALARM:
#endif
        return 1;
    default:
        return 0;
    }
}

static void to_timespec(long long ns, struct timespec *ts) {
    ts->tv_sec = (time_t)(ns / NS_PER_S);
    ts->tv_nsec = (long)(ns % NS_PER_S);
}

int clock_gettime(clockid_t clock_id, struct timespec *ts) {
    long long ns = fakeclock_elapsed_ns();
    if (is_wall_clock(clock_id))
        ns += FAKECLOCK_WALL_START_S * NS_PER_S;
    else if (is_monotonic_clock(clock_id))
        ns += FAKECLOCK_MONO_START_S * NS_PER_S;
    /* every other id (process and thread CPU time, clock_getcpuclockid's ids) counts from 0 */
    to_timespec(ns, ts);
    return 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    long long ns = fakeclock_elapsed_ns() + FAKECLOCK_WALL_START_S * NS_PER_S;
    if (tv != NULL) {
        tv->tv_sec = (time_t)(ns / NS_PER_S);
        tv->tv_usec = (suseconds_t)((ns % NS_PER_S) / 1000);
    }
    if (tz != NULL) { /* struct timezone: minutes west of Greenwich, DST type; UTC, no DST */
        int *fields = tz;
        fields[0] = 0;
        fields[1] = 0;
    }
    return 0;
}

time_t time(time_t *out) {
    time_t now = (time_t)((fakeclock_elapsed_ns() + FAKECLOCK_WALL_START_S * NS_PER_S) / NS_PER_S);
    if (out != NULL)
        *out = now;
    return now;
}

/* glibc's clock() and timespec_get() read the clock through internal calls that LD_PRELOAD
 * cannot reach, so they are replaced too. */
clock_t clock(void) {
    return (clock_t)(fakeclock_elapsed_ns() / (NS_PER_S / CLOCKS_PER_SEC));
}

int timespec_get(struct timespec *ts, int base) {
    if (base != TIME_UTC)
        return 0;
    to_timespec(fakeclock_elapsed_ns() + FAKECLOCK_WALL_START_S * NS_PER_S, ts);
    return base;
}
