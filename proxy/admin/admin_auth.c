/*
 * sluice — admin API authorisation. See admin_auth.h.
 */
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "admin/admin_auth.h"

bool sl_sockaddr_is_loopback(const struct sl_sockaddr *a) {
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a->ss.ss_family == AF_INET6) {
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(in6)) return true;
    return IN6_IS_ADDR_V4MAPPED(in6) && in6->s6_addr[12] == 127;
  }
  return false;
}

/* Equal, in time that depends on the lengths only. */
static bool same(const char *a, size_t an, const char *b, size_t bn) {
  unsigned char d = an != bn;
  size_t n = an < bn ? an : bn;
  for (size_t i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

int sl_admin_authorize(const char *token, bool loopback, const char *auth, size_t len) {
  if (!token) return loopback ? 200 : 403;
  /* RFC 6750 §2.1: "Bearer" (case-insensitive), one space, the token. */
  if (!auth || len < 7 || strncasecmp(auth, "bearer ", 7) != 0) return 401;
  return same(auth + 7, len - 7, token, strlen(token)) ? 200 : 401;
}
