/*
 * sluice — the one JSON string escaper.
 *
 * Out comes valid UTF-8 inside a JSON string, whatever bytes go in:
 * '"' and '\\' are escaped, a newline becomes \n, other control bytes (and
 * DEL) \u00XX, well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF) is copied, and every other byte becomes
 * \ufffd. Request paths, header values and file names are bytes, not
 * text; this keeps every log line and answer parseable. Output is cut
 * only between whole characters, never inside an escape or a sequence.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Appends |n| bytes of |s| escaped (no quotes) to |buf| of |cap| bytes at
 * |*len|, keeping one byte free for a NUL (not written). Stops at the
 * first character that does not fit and returns false; true when all of
 * |s| went in. */
bool sl_json_escape_n(char *buf, size_t cap, size_t *len, const char *s, size_t n);
/* The same for a C string (NULL is ""). */
bool sl_json_escape(char *buf, size_t cap, size_t *len, const char *s);
/* Writes |n| bytes of |s| escaped (no quotes) to |f|. */
void sl_json_escape_file(FILE *f, const char *s, size_t n);

#endif
