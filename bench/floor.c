/* The kernel work of one host2mqtt cycle with no user-space work: the
 * same wake-up (a timerfd in an epoll set), the same system calls on the
 * same files (strace of `host2mqtt run` with the bench config, one cycle:
 * 8 preads of open /proc files, a POLLPRI poll of mountinfo, statfs of /,
 * two stats of the reboot flag files) and one MQTT PUBLISH of the state's
 * size on a connected socket. No parsing, no JSON, no allocation: what it
 * costs per cycle is the floor under host2mqtt's figure on this machine.
 * bench/footprint.sh builds and runs it beside the agents (a measurement,
 * not a product).
 *
 *   floor PORT INTERVAL_SECONDS IFACE_UNUSED STATE_BYTES
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *files[] = {
    "/proc/stat", "/proc/loadavg", "/proc/meminfo", "/proc/pressure/cpu",
    "/proc/pressure/memory", "/proc/pressure/io", "/proc/diskstats",
    "/proc/self/net/dev",
};
#define NFILES (sizeof files / sizeof files[0])

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: floor PORT INTERVAL_SECONDS IFACE STATE_BYTES\n");
        return 2;
    }
    int port = atoi(argv[1]), interval = atoi(argv[2]), state = atoi(argv[4]);
    static char buf[8192], publish[4096];
    int fds[NFILES];
    for (unsigned i = 0; i < NFILES; i++) {
        fds[i] = open(files[i], O_RDONLY | O_CLOEXEC);
    }
    int mountinfo = open("/proc/1/mountinfo", O_RDONLY | O_CLOEXEC);

    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        return 1;
    }
    /* CONNECT: MQTT 3.1.1, clean session, keepalive 0, client id "floor". */
    static const unsigned char connect_packet[] = {
        0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 5, 'f', 'l', 'o', 'o', 'r'};
    if (write(sock, connect_packet, sizeof connect_packet) != sizeof connect_packet) {
        perror("write");
        return 1;
    }
    read(sock, buf, 4); /* CONNACK */

    /* PUBLISH QoS 0 on floor/state with STATE_BYTES of payload. */
    const char *topic = "floor/state";
    int tlen = (int)strlen(topic);
    if (state > (int)sizeof publish - 16) state = (int)sizeof publish - 16;
    int remaining = 2 + tlen + state, n = 0;
    publish[n++] = 0x30;
    do {
        unsigned char b = remaining % 128;
        remaining /= 128;
        publish[n++] = (char)(b | (remaining ? 0x80 : 0));
    } while (remaining);
    publish[n++] = 0;
    publish[n++] = (char)tlen;
    memcpy(publish + n, topic, tlen);
    n += tlen;
    memset(publish + n, '1', state);
    n += state;

    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec every = {.it_value = {interval, 0}};
    timerfd_settime(timer, 0, &every, NULL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = timer};
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev);
    for (;;) {
        struct epoll_event got;
        if (epoll_wait(ep, &got, 1, -1) != 1) continue;
        unsigned long long expirations;
        read(timer, &expirations, sizeof expirations);
        timerfd_settime(timer, 0, &every, NULL);
        for (unsigned i = 0; i < NFILES; i++) {
            pread(fds[i], buf, sizeof buf, 0);
        }
        struct pollfd p = {.fd = mountinfo, .events = POLLPRI};
        struct timespec zero = {0, 0};
        ppoll(&p, 1, &zero, NULL);
        struct statfs fs;
        statfs("/", &fs);
        struct stat st;
        stat("/run/reboot-required", &st);
        stat("/run/ostree-booted", &st);
        struct iovec iov = {publish, (size_t)n};
        if (writev(sock, &iov, 1) != n) {
            perror("writev");
            return 1;
        }
    }
}
