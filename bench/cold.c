/* What memory a process has not touched for a while costs it, on this
 * machine: after each wake-up of a timerfd (as an agent between cycles),
 * it visits LINES cache lines STRIDE bytes apart in a random order (each
 * load depends on the last: no prefetch, no overlap) and reports its CPU
 * time per wake-up from /proc/self/schedstat. bench/cold.sh runs it with
 * lines packed into few pages and spread one a page, side by side, and
 * derives the cost of a cold line and of a cold page (TLB miss). A
 * measurement, not a product.
 *
 *   cold LINES STRIDE INTERVAL_SECONDS CYCLES
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <unistd.h>

static uint64_t cpu_ns(void) {
    unsigned long long ns = 0;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%llu", &ns) != 1) ns = 0;
        fclose(f);
    }
    return ns;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: cold LINES STRIDE INTERVAL_SECONDS CYCLES\n");
        return 2;
    }
    size_t n = strtoul(argv[1], 0, 10), stride = strtoul(argv[2], 0, 10);
    int interval = atoi(argv[3]), cycles = atoi(argv[4]);
    if (n == 0 || stride < sizeof(void *) || cycles < 1) return 2;
    char *buf = aligned_alloc(4096, (n * stride + 4095) / 4096 * 4096);
    size_t *order = malloc(n * sizeof *order);
    if (!buf || !order) return 1;
    for (size_t i = 0; i < n; i++) order[i] = i;
    srand(1);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        *(void **)(buf + order[i] * stride) = buf + order[(i + 1) % n] * stride;
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec it = {{interval, 0}, {interval, 0}};
    timerfd_settime(tfd, 0, &it, NULL);
    uint64_t expirations;
    void *p = buf + order[0] * stride;
    if (read(tfd, &expirations, sizeof expirations) < 0) return 1;
    uint64_t t0 = cpu_ns();
    for (int c = 0; c < cycles; c++) {
        if (read(tfd, &expirations, sizeof expirations) < 0) return 1;
        for (size_t i = 0; i < n; i++) p = *(void **)p;
    }
    uint64_t t1 = cpu_ns();
    printf("%zu %zu %.1f %p\n", n, stride, (double)(t1 - t0) / 1000.0 / cycles, p);
    return 0;
}
