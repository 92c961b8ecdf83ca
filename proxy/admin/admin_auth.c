/*
 * sluice — admin API authorisation. See admin_auth.h.
 */
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

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

/* Equal, in time that depends on neither value nor length: the SHA-256
 * digests of both are compared with CRYPTO_memcmp. */
static bool same(const char *a, size_t an, const char *b, size_t bn) {
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)a, an, da);
  SHA256((const unsigned char *)b, bn, db);
  return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

int sl_admin_authorize(const char *token, bool loopback, const char *auth, size_t len) {
  if (!token) return loopback ? 200 : 403;
  if (!*token) return 401; /* the loader refuses an empty token; never match one */
  /* RFC 6750 §2.1: "Bearer" (case-insensitive), one space, the token. */
  if (!auth || len < 7 || strncasecmp(auth, "bearer ", 7) != 0) return 401;
  return same(auth + 7, len - 7, token, strlen(token)) ? 200 : 401;
}
