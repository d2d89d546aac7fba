/* Memory read bandwidth probe of pytest-llmperf.
 *
 * usage: bwprobe <bytes> <passes>
 * Fills a buffer of <bytes> (each thread touches its own part first, so the pages sit near the
 * threads that read them), then reads all of it <passes> times with every OpenMP thread, summing
 * 64-bit words, and prints the best pass:
 *     bytes=<n> threads=<t> passes=<p> best_s=<seconds> read_GBps=<1e9 bytes per second>
 * The buffer must be far larger than the last-level cache, or this measures the cache. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bwprobe <bytes> <passes>\n");
        return 1;
    }
    long long bytes = atoll(argv[1]);
    int passes = atoi(argv[2]);
    if (bytes < 1024 * 1024 || passes < 1) {
        fprintf(stderr, "bwprobe: need at least 1 MiB and 1 pass\n");
        return 1;
    }
    size_t words = (size_t)(bytes / 8);
    uint64_t *buf = malloc(words * sizeof(uint64_t));
    if (buf == NULL) {
        fprintf(stderr, "bwprobe: cannot allocate %lld bytes\n", bytes);
        return 1;
    }
    int threads = 1;
#pragma omp parallel
    {
#ifdef _OPENMP
#pragma omp single
        threads = omp_get_num_threads();
#endif
#pragma omp for schedule(static)
        for (size_t i = 0; i < words; i++) buf[i] = (uint64_t)i * 2654435761u;
    }
    double best = 1e30;
    uint64_t check = 0;
    for (int p = 0; p < passes; p++) {
        uint64_t sum = 0;
        double t0 = now_s();
#pragma omp parallel for schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < words; i++) sum += buf[i];
        double dt = now_s() - t0;
        if (dt < best) best = dt;
        check ^= sum;
    }
    printf("bytes=%lld threads=%d passes=%d best_s=%.9f read_GBps=%.3f check=%llu\n", (long long)(words * 8),
           threads, passes, best, (double)(words * 8) / best / 1e9, (unsigned long long)(check & 0xff));
    free(buf);
    return 0;
}
