#ifndef NURTURE_CHIREDIS_SHIM_H
#define NURTURE_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <sys/time.h>

/* hiredis 0.14 exposes the socket timeout as a struct timeval; these helpers keep Swift away from the C layout. */
static inline int nurture_redis_set_timeout_ms(redisContext *c, long ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return redisSetTimeout(c, tv);
}

static inline redisContext *nurture_redis_connect_ms(const char *host, int port, long ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return redisConnectWithTimeout(host, port, tv);
}
#endif
