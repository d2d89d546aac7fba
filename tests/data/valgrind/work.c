/* The program of work.callgrind.out: a fixed amount of work in three functions, one printf.
 * Recorded with: cc -O1 -g -o work work.c
 *                valgrind --tool=callgrind --callgrind-out-file=work.callgrind.out ./work
 *                callgrind_annotate --threshold=100 --auto=no work.callgrind.out > work.annotate.txt */
#include <stdio.h>

static __attribute__((noinline)) unsigned mix(unsigned x) { return x * 2654435761u ^ (x >> 13); }

static __attribute__((noinline)) unsigned sum_mixed(int n) {
    unsigned s = 0;
    for (int i = 0; i < n; i++) s += mix((unsigned)i);
    return s;
}

static __attribute__((noinline)) unsigned twice(int n) { return sum_mixed(n) + sum_mixed(n / 2); }

int main(void) {
    printf("%u\n", twice(2000));
    return 0;
}
