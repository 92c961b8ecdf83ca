/*
 * sluice — request identification (types only). Functions in identify.h.
 */
#ifndef SLUICE_IDENTIFY_T_H
#define SLUICE_IDENTIFY_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/version-t.h"

/* One request header as the data plane saw it: slices into its buffers,
 * owned by the caller. Names are lowercase (h2 requires it; the h1 parser
 * lowercases). */
struct sl_hdr {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
};

enum sl_identify_status {
  SL_IDENTIFY_OK = 0,
  SL_IDENTIFY_CONFLICT = -1, /* ambiguous identity headers: answer 400 */
};

/* The facts a request is admitted on. Slices point into the caller's
 * header values and live as long as they do. */
struct sl_identity {
  uint8_t family;     /* AF_INET, AF_INET6, or 0 (unix socket peer) */
  uint8_t addr[16];   /* client address; IPv4 in addr[0..3] */
  uint8_t key[16];    /* rate-limit key: IPv4 as ::ffff:a.b.c.d, IPv6
                         masked to identify.ipv6_prefix */
  bool forwarded;     /* address taken from X-Forwarded-For / Forwarded */
  const char *device_class; /* NULL: none */
  size_t device_class_len;
  const char *firmware;     /* raw header value (trimmed); NULL: absent */
  size_t firmware_len;
  bool firmware_valid;      /* |firmware_version| holds the parsed value */
  struct sl_version firmware_version;
  const char *device_id;    /* NULL: none */
  size_t device_id_len;
  const char *conflict;     /* on SL_IDENTIFY_CONFLICT: the configured
                               header name that was ambiguous */
};

#endif
