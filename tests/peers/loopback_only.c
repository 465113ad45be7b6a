/*
 * LD_PRELOAD shim used by the integration-test harnesses (tests/common/storescp.rs and
 * tests/common/orthanc.rs): neither dcmtk 3.6.7's storescp nor Orthanc 1.10 can choose the
 * address they listen on, and the test servers must never listen on anything but loopback.
 *
 * Every bind() of an IPv4 socket is rewritten to 127.0.0.1 (same port); every bind() of an
 * IPv6 socket is rewritten to ::1 (same port). Other families (Unix sockets...) pass through.
 * The harnesses also check /proc after start-up that every listening socket is on loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn real_bind;
    if (!real_bind) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (!real_bind) {
            errno = ENOSYS;
            return -1;
        }
    }
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        a.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real_bind(fd, addr, len);
}
