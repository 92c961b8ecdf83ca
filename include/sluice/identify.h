/*
 * sluice — who is asking: client address (through trusted proxies), device
 * class, firmware and device id, from the peer address and the headers.
 */
#ifndef SLUICE_IDENTIFY_H
#define SLUICE_IDENTIFY_H

#include <sys/socket.h>
#include "sluice/config-t.h"
#include "sluice/identify-t.h"

/* Fills |out| for a request from |peer| with headers |h| (|n| of them).
 *
 * Client address: the peer, unless the peer is in cfg->trusted_proxies;
 * then the hops of X-Forwarded-For (all such headers, in order; or, if
 * there is none, the `for=` of Forwarded, RFC 7239 section 5.2) are walked
 * from the right, skipping trusted proxies, and the first untrusted hop is
 * the client (if all are trusted, the leftmost). A hop that cannot be
 * parsed ("unknown", "_hidden", garbage) stops the walk and the last
 * trusted address is used: fail towards limiting the proxy, never towards
 * believing the client.
 *
 * Device class: the cfg->device_class_header value, or the capture group
 * cfg->device_class_ua_group of cfg->device_class_ua_compiled (regex_t*)
 * on User-Agent. Firmware (parsed with sl_version_parse()) and device id:
 * their headers. Values are trimmed of OWS; an empty value is absent.
 *
 * Returns SL_IDENTIFY_CONFLICT (the caller answers 400) when one of the
 * three identity headers appears twice with different values, or when a
 * header's name equals one of them with some '-' written as '_'
 * ("x_firmware_version"): servers that map both to one CGI variable would
 * see a different value than sluice did, so fail closed. Allocation-free. */
int sl_identify(const struct sl_identify_cfg *cfg, const struct sockaddr *peer,
                const struct sl_hdr *h, size_t n, struct sl_identity *out);

/* Just the address part (for the accept-time connection-rate limit, where
 * there are no headers): family, addr and key from |peer|. */
void sl_identify_peer(const struct sl_identify_cfg *cfg, const struct sockaddr *peer,
                      struct sl_identity *out);

/* Whether |family|/|addr| (IPv4 in addr[0..3]) is in one of |c|. */
bool sl_cidr_match(const struct sl_cidr *c, size_t n, uint8_t family, const uint8_t *addr);

/* Writes the client address as text ("192.0.2.1", "2001:db8::1"),
 * NUL-terminated; returns its length or -1 (unix peer, or |cap| too small:
 * 46 always suffices). */
int sl_identify_format_addr(const struct sl_identity *id, char *buf, size_t cap);

#endif
