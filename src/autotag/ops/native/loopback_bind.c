/* LD_PRELOAD shim: a bind() to the wildcard address becomes a bind() to this host's address.
 *
 * Storm's Nimbus and Supervisor Thrift servers and the workers' Netty servers bind every
 * interface and Storm 2.x has no setting to change that. autotag's servers must listen on
 * 127.0.0.1, or on a host's own cluster address, never a wildcard, so its JVMs run with this
 * library preloaded (workers inherit it from the Supervisor's environment). Only
 * INADDR_ANY / in6addr_any binds are rewritten: to AUTOTAG_BIND_ADDRESS (an IPv4 address)
 * when set, else to loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static in_addr_t bind_address(void) {
    const char *env = getenv("AUTOTAG_BIND_ADDRESS");
    struct in_addr parsed;
    if (env && *env && inet_pton(AF_INET, env, &parsed) == 1 && parsed.s_addr != htonl(INADDR_ANY))
        return parsed.s_addr;
    return htonl(INADDR_LOOPBACK);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in4;
        memcpy(&in4, addr, sizeof in4);
        if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            in4.sin_addr.s_addr = bind_address();
            return real_bind(fd, (const struct sockaddr *)&in4, sizeof in4);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, addr, sizeof in6);
        if (memcmp(&in6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            in_addr_t v4 = bind_address();
            if (v4 == htonl(INADDR_LOOPBACK)) {
                in6.sin6_addr = in6addr_loopback;
            } else {
                /* An IPv4 cluster address on an IPv6 socket: its v4-mapped form. */
                memset(&in6.sin6_addr, 0, sizeof in6.sin6_addr);
                in6.sin6_addr.s6_addr[10] = 0xff;
                in6.sin6_addr.s6_addr[11] = 0xff;
                memcpy(&in6.sin6_addr.s6_addr[12], &v4, 4);
            }
            return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
        }
    }
    return real_bind(fd, addr, len);
}
