/*
 * sluice — retry-after values and rejection bodies. See retry.h for the
 * reasoning behind the spread.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/json.h"
#include "sluice/fmt.h"
#include "sluice/retry.h"

uint32_t sl_retry_after_s(const struct sl_reject_cfg *cfg, uint64_t wait_ns, uint64_t rnd) {
  uint64_t min_s = (cfg->retry_after_min_ms + 999) / 1000;
  uint64_t max_s = cfg->retry_after_max_ms / 1000;
  if (max_s < min_s) max_s = min_s;
  if (max_s > UINT32_MAX) max_s = UINT32_MAX;
  uint64_t base = wait_ns / 1000000000u + (wait_ns % 1000000000u != 0);
  bool capped = base >= max_s;
  if (base < min_s) base = min_s;
  if (base > max_s) base = max_s;

  double j = cfg->jitter;
  if (!(j > 0)) j = 0; /* also NaN */
  if (j > 1) j = 1;
  uint64_t w = (uint64_t)((double)base * j + 0.5);
  if (j > 0 && w == 0) w = 1;

  uint64_t lo = base, hi = base + w;
  if (capped) {
    hi = max_s;
    lo = max_s - min_s >= w ? max_s - w : min_s;
  } else if (hi > max_s) {
    hi = max_s;
  }
  uint64_t span = hi - lo + 1;
  uint64_t off = (uint64_t)(((unsigned __int128)rnd * span) >> 64);
  return (uint32_t)(lo + off);
}

static bool put_raw(char *buf, size_t cap, size_t *len, const char *s) {
  size_t n = strlen(s);
  if (cap - *len <= n) return false;
  memcpy(buf + *len, s, n);
  *len += n;
  return true;
}

int sl_reject_body_json(char *buf, size_t cap, const char *error, const char *policy,
                        uint32_t retry_after_s) {
  return sl_reject_body_json_extra(buf, cap, error, policy, retry_after_s, NULL);
}

int sl_reject_body_json_extra(char *buf, size_t cap, const char *error, const char *policy,
                              uint32_t retry_after_s, const char *extra_body) {
  size_t len = 0;
  char num[32];
  if (cap == 0) return -1;
  static const char pre[] = "\",\"retry_after\":";
  memcpy(num, pre, sizeof(pre) - 1);
  size_t nl = sizeof(pre) - 1 + sl_fmt_u64(num + sizeof(pre) - 1, retry_after_s);
  num[nl] = '\0';
  if (!put_raw(buf, cap, &len, "{\"error\":\"") || !sl_json_escape(buf, cap, &len, error) ||
      !put_raw(buf, cap, &len, "\",\"policy\":\"") || !sl_json_escape(buf, cap, &len, policy) ||
      !put_raw(buf, cap, &len, num) || (extra_body && !put_raw(buf, cap, &len, extra_body)) ||
      !put_raw(buf, cap, &len, "}")) {
    buf[0] = '\0';
    return -1;
  }
  buf[len] = '\0';
  return (int)len;
}
