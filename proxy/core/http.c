/*
 * sluice — small HTTP facts shared by the frontends, the upstream side and
 * the admin listener.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "sluice/arena.h"
#include "core/http.h"
#include "core/stream-t.h"

const struct sl_header *sl_request_header(const struct sl_request *r, const char *name) {
  for (uint32_t i = 0; i < r->n_headers; i++)
    if (strcmp(r->headers[i].name, name) == 0) return &r->headers[i];
  return NULL;
}

const char *sl_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return status < 200 ? "Informational" : status < 300 ? "Success" :
                  status < 400 ? "Redirection" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* ---- hop-by-hop fields --------------------------------------------- */

/* Whether the comma-separated list |list| names the field |name|. */
static bool list_names(const char *list, const char *name, size_t len) {
  const char *s = list;
  while (*s) {
    while (*s == ' ' || *s == ',' || *s == '\t') s++;
    const char *e = s;
    while (*e && *e != ',' && *e != ' ' && *e != '\t') e++;
    if ((size_t)(e - s) == len && strncasecmp(s, name, len) == 0) return true;
    s = e;
  }
  return false;
}

enum sl_hop sl_http_hop(enum sl_http_dir dir, const char *name, size_t len,
                        const char *connection) {
  /* Dispatch on length so a typical field costs one or two compares. */
  bool req = dir == SL_HTTP_REQUEST;
#define IS(lit) (strncasecmp(name, lit, sizeof(lit) - 1) == 0)
  switch (len) {
  case 2:
    if (IS("te")) return SL_HOP_DROP;
    break;
  case 4:
    if (req && IS("host")) return SL_HOP_DROP;
    break;
  case 6:
    if (req && IS("expect")) return SL_HOP_DROP;
    break;
  case 7:
    if (IS("trailer") || IS("upgrade")) return SL_HOP_DROP;
    break;
  case 9:
    if (req && IS("forwarded")) return SL_HOP_DROP;
    break;
  case 10:
    if (IS("connection")) return SL_HOP_CONNECTION;
    if (IS("keep-alive")) return SL_HOP_DROP;
    break;
  case 14:
    if (IS("content-length") || (req && IS("http2-settings"))) return SL_HOP_DROP;
    break;
  case 15:
    if (req && IS("x-forwarded-for")) return SL_HOP_DROP;
    break;
  case 16:
    if (IS("proxy-connection")) return SL_HOP_DROP;
    break;
  case 17:
    if (IS("transfer-encoding") || (req && IS("x-forwarded-proto"))) return SL_HOP_DROP;
    break;
  default:
    break;
  }
#undef IS
  if (connection && list_names(connection, name, len)) return SL_HOP_DROP;
  return SL_HOP_KEEP;
}

const char *sl_http_connection_list(struct sl_arena *a, const struct sl_header *h, uint32_t n,
                                    int *oom) {
  const char *list = NULL;
  size_t list_len = 0;
  *oom = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (h[i].name_len != 10 || memcmp(h[i].name, "connection", 10) != 0) continue;
    if (!list) {
      list = h[i].value;
      list_len = h[i].value_len;
      continue;
    }
    /* Several Connection fields: one list (RFC 9110 §5.3). Rare. */
    char *joined = sl_arena_alloc(a, list_len + 1 + h[i].value_len + 1);
    if (!joined) {
      *oom = 1;
      return NULL;
    }
    memcpy(joined, list, list_len);
    joined[list_len] = ',';
    memcpy(joined + list_len + 1, h[i].value, h[i].value_len);
    list_len += 1 + h[i].value_len;
    joined[list_len] = '\0';
    list = joined;
  }
  return list;
}
