/*
 * sluice — integer formatting for hot paths (no printf: its format
 * parsing was a fifth of the instructions per request where it was used).
 */
#ifndef SLUICE_FMT_H
#define SLUICE_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Writes |v| in decimal to |out| (>= 21 bytes), NUL-terminated; returns
 * the number of digits. */
static inline size_t sl_fmt_u64(char *out, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
  return n;
}

#endif
