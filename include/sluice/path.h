/*
 * sluice — request path normalisation and prefix matching (pure).
 *
 * Routes are chosen on the normalised path, and the same normalised path
 * is forwarded to the origin, so policy and origin agree on which
 * resource a request names: `/v1//connect`, `/v1/%63onnect` and
 * `/v1/./connect` are all `/v1/connect`.
 *
 * Normal form (RFC 3986 §6.2.2, applied to the path only; the query and
 * anything after '?' or '#' are kept byte for byte):
 *   - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
 *     decoded (§6.2.2.2); other percent-encodings keep their escape with
 *     the hex digits in upper case (§6.2.2.1);
 *   - "." and ".." segments are removed (§5.2.4), after decoding, so
 *     `%2E%2E` is a ".." segment too;
 *   - runs of '/' are merged into one.
 * Refused (the caller answers 400), because no normal form is safe (an
 * origin may decode them into a path separator, a string terminator or
 * something else than what sluice routed on): `%2F` (encoded '/'), `%5C`
 * and raw '\' (a separator to some origins), NUL and other control
 * characters raw or encoded (%00-%1F, %7F; raw also in the query), a raw
 * space or byte beyond ASCII anywhere (they travel percent-encoded; an
 * HTTP/2 :path may carry them raw), a '%' not followed by two hex
 * digits, a ".." that would climb above the root, and a path that does
 * not start with '/'.
 */
#ifndef SLUICE_PATH_H
#define SLUICE_PATH_H

#include <stdbool.h>
#include <stddef.h>

enum sl_path_status {
  SL_PATH_OK = 0,
  SL_PATH_NOT_ABSOLUTE,  /* does not start with '/' */
  SL_PATH_BAD_ESCAPE,    /* '%' not followed by two hex digits */
  SL_PATH_ENCODED_SLASH, /* %2F */
  SL_PATH_BACKSLASH,     /* '\' or %5C */
  SL_PATH_CONTROL,       /* NUL or another control character, raw or encoded */
  SL_PATH_ESCAPES_ROOT,  /* ".." above "/" */
  SL_PATH_INVALID_CHAR,  /* a raw space or non-ASCII byte (path, query or fragment) */
};

/* True when |path| (|len| bytes, query included) is certainly in normal
 * form already: sl_path_normalize would return it unchanged. A quick
 * scan, so the common request costs no copy. It may answer false for a
 * path that is normal (e.g. "/.well-known"). */
bool sl_path_is_plain(const char *path, size_t len);

/* Writes the normal form of |path| (|len| bytes, query included) to |out|,
 * which must hold |len| + 1 bytes (the normal form is never longer), NUL
 * terminated; |*out_len| gets its length. Returns SL_PATH_OK or why the
 * path cannot be normalised safely (|out| is then unspecified). */
enum sl_path_status sl_path_normalize(const char *path, size_t len, char *out, size_t *out_len);

/* The error name used in the 400 answer for |st| ("path_encoded_slash"...). */
const char *sl_path_status_name(enum sl_path_status st);

/* Segment-boundary prefix match of a normalised |path| (query included,
 * NUL-terminated) against a normalised |prefix| of |plen| bytes. Only the
 * path part (before '?' or '#') is compared:
 *   - a prefix ending in '/' matches paths that start with it:
 *     "/v1/" matches "/v1/" and "/v1/a", not "/v1"; "/" matches all;
 *   - any other prefix matches the path equal to it and the paths below
 *     it: "/v1/connect" matches "/v1/connect", "/v1/connect/x" and
 *     "/v1/connect?q=1", not "/v1/connector". */
bool sl_path_prefix_match(const char *prefix, size_t plen, const char *path);

#endif
