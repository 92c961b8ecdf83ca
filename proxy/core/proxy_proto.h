/*
 * sluice — PROXY protocol header parser, versions 1 and 2
 * (proxy/core/proxy_proto.c; haproxy's doc/proxy-protocol.txt).
 *
 * Pure: bytes in, a verdict out; no socket, no allocation. The caller
 * (core/conn.c) feeds everything received so far on a connection of a
 * `proxy_protocol` listener and acts on the answer:
 *
 *   SL_PP_NEED_MORE  every byte so far fits a header that is not complete
 *                    yet: read more (and keep what was read);
 *   SL_PP_DONE       a complete, valid header of h->len bytes; what
 *                    follows it is the start of the TLS or HTTP stream;
 *   SL_PP_ERROR      not a valid header (h->error says why, h->too_long
 *                    tells an oversized one from a malformed one): close.
 *
 * The version is told by the first byte ('P' for v1's "PROXY ", CR for v2's
 * signature); an error is reported at the first byte that cannot belong to
 * a header, so a client that sends TLS or HTTP straight away is refused as
 * soon as its first byte is in.
 */
#ifndef SLUICE_CORE_PROXY_PROTO_H
#define SLUICE_CORE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v1: the longest line, CRLF included (§2.1: "PROXY UNKNOWN" with two
 * full IPv6 addresses and ports). */
#define SL_PP_V1_MAX 107
/* v2: 16 bytes and at most this many more (addresses and TLVs). The
 * protocol allows 65535; AWS NLB, GCP and HAProxy send a few hundred at
 * most (HAProxy's SSL TLVs included), and the header is held in the
 * connection's read buffer until it is complete. */
#define SL_PP_V2_MAX_LEN 2048
/* The most bytes a header can take: what a caller needs to buffer. */
#define SL_PP_MAX_HEADER (16 + SL_PP_V2_MAX_LEN)

enum sl_pp_status { SL_PP_ERROR = -1, SL_PP_NEED_MORE = 0, SL_PP_DONE = 1 };

struct sl_pp_header {
  size_t len;      /* bytes of the header (SL_PP_DONE) */
  uint8_t version; /* 1 or 2 (once known) */
  /* The sender's addresses apply: TCP over IPv4 or IPv6. False for v2
   * LOCAL (a health check of the balancer itself), v1 UNKNOWN and v2
   * families or protocols without IP addresses (AF_UNSPEC, AF_UNIX, or
   * UDP, which cannot be what arrived over this TCP connection): the
   * connection's own peer address stays (§2.1, §2.2). */
  bool has_addr;
  struct sockaddr_storage src, dst; /* has_addr: the client and the address it reached */
  bool too_long;     /* SL_PP_ERROR: v1 line without CRLF in 107 bytes, or v2 length cap */
  const char *error; /* SL_PP_ERROR: a static message for the log */
};

/* Parses the start of |buf| (|len| bytes received so far). Fills |h| and
 * returns SL_PP_DONE, SL_PP_NEED_MORE or SL_PP_ERROR (see above). Bytes
 * beyond the header are not looked at. */
enum sl_pp_status sl_pp_parse(const uint8_t *buf, size_t len, struct sl_pp_header *h);

#endif
