/* The HTTP/1.1 exchange of one attempt: the request (a GET, or a WebSocket
 * Upgrade), and the response parsed with llhttp down to what the simulator
 * counts: the status, keep-alive, the retry-after header and the "error"
 * field of a JSON refusal body. Allocated when the attempt starts, freed
 * when it ends, so an idle device holds none of it. */
#include "fleetsim.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

/* Bounds every request the flags allow (path 256, host 128, 16 headers of
 * 512 bytes, class and firmware 48 each), so the snprintf chain below
 * never runs past it. */
#define H1_REQ_MAX (1024 + FS_MAX_HEADERS * 520)
#define H1_BODY_KEEP 256   /* a refusal body is small; the "error" is near its start */

struct fs_exchange {
    llhttp_t parser;
    size_t req_len, req_sent;
    int status, retry_after, done;
    int in_retry_after;       /* the header being parsed is retry-after */
    char hname[16];
    size_t hname_len;
    size_t body_len;
    char body[H1_BODY_KEEP];
    char req[];               /* req_len bytes: allocated to fit */
};

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fs_exchange *x = p->data;
    if (x->hname_len + len < sizeof x->hname) {
        memcpy(x->hname + x->hname_len, at, len);
        x->hname_len += len;
    } else {
        x->hname_len = sizeof x->hname; /* too long to be retry-after */
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct fs_exchange *x = p->data;
    x->in_retry_after = x->hname_len == 11 && strncasecmp(x->hname, "retry-after", 11) == 0;
    x->hname_len = 0;
    if (x->in_retry_after)
        x->retry_after = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fs_exchange *x = p->data;
    if (!x->in_retry_after)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)at[i]))
            continue; /* an HTTP-date is not honoured: stays 0 */
        if (x->retry_after < 100000)
            x->retry_after = x->retry_after * 10 + (at[i] - '0');
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    ((struct fs_exchange *)p->data)->in_retry_after = 0;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fs_exchange *x = p->data;
    fs_body_keep(x->body, sizeof x->body, &x->body_len, at, len);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct fs_exchange *x = p->data;
    x->status = p->status_code;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct fs_exchange *x = p->data;
    x->done = 1;
    return HPE_PAUSED; /* one response per exchange; keep the rest unread */
}

/* llhttp_settings_init() only zeroes: a static initializer is the same. */
static const llhttp_settings_t h1_settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

struct fs_exchange *h1_exchange_new(const struct device *d, int upgrade)
{
    const struct fs_config *c = &fs.cfg;
    /* The request is built on the stack, then the exchange allocated to
     * fit it: thousands of exchanges may be in flight in a storm. */
    char req[H1_REQ_MAX];
    struct fs_header h[FS_DEV_HEADERS];
    char store[64];
    int nh = device_headers(d, h, store, sizeof store);
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n", c->path, c->host);
    for (int i = 0; i < nh; i++)
        n += snprintf(req + n, sizeof req - n, "%.*s: %.*s\r\n", (int)h[i].name_len, h[i].name,
                      (int)h[i].value_len, h[i].value);
    if (upgrade)
        n += snprintf(req + n, sizeof req - n,
                      "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    n += snprintf(req + n, sizeof req - n, "\r\n");
    if (n < 0 || (size_t)n >= sizeof req)
        return NULL;
    struct fs_exchange *x = calloc(1, sizeof *x + (size_t)n);
    if (!x)
        return NULL;
    llhttp_init(&x->parser, HTTP_RESPONSE, &h1_settings);
    x->parser.data = x;
    x->retry_after = -1;
    memcpy(x->req, req, (size_t)n);
    x->req_len = (size_t)n;
    return x;
}

void h1_exchange_free(struct fs_exchange *x) { free(x); }

size_t h1_pending(struct fs_exchange *x, const char **buf)
{
    *buf = x->req + x->req_sent;
    return x->req_len - x->req_sent;
}

void h1_sent(struct fs_exchange *x, size_t n) { x->req_sent += n; }

enum h1_result h1_feed(struct fs_exchange *x, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&x->parser, data, len);
    if (x->done || e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
        return x->done || x->status == 101 ? H1_DONE : H1_MORE;
    if (e != HPE_OK)
        return H1_BAD;
    if (x->status == 101)
        return H1_DONE; /* the head of a 101 is the whole answer */
    return H1_MORE;
}

/* The end of the stream: a response delimited by close ends here. */
int h1_status(const struct fs_exchange *x) { return x->status; }

int h1_keep_alive(const struct fs_exchange *x) { return llhttp_should_keep_alive(&x->parser); }

int h1_retry_after(const struct fs_exchange *x) { return x->retry_after; }

int h1_tunnel_retry_after(const struct fs_exchange *x, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_get_errno(&x->parser);
    if (x->status != 101 || (e != HPE_PAUSED_UPGRADE && e != HPE_PAUSED))
        return 0;
    const char *at = llhttp_get_error_pos(&x->parser);
    if (!at || at < data || at > data + len)
        return 0;
    return fs_ws_close_retry_after(at, (size_t)(data + len - at));
}

void h1_refusal_key(const struct fs_exchange *x, char *out, size_t n)
{
    fs_refusal_key(x->status, x->body, out, n);
}

void fs_body_keep(char *body, size_t cap, size_t *len, const void *data, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(body + *len, data, n);
    *len += n;
    body[*len] = 0;
}

int fs_ws_close_retry_after(const void *data, size_t n)
{
    const uint8_t *p = data;
    /* FIN + close, unmasked (server to client), a length below 126. */
    if (n < 4 || p[0] != 0x88 || (p[1] & 0x80) || (p[1] & 0x7f) >= 126)
        return 0;
    size_t len = p[1] & 0x7f;
    if (len < 2 || 2 + len > n)
        return 0;
    static const char key[] = "retry-after ";
    const char *reason = (const char *)p + 4;
    size_t rlen = len - 2, k = sizeof key - 1;
    for (size_t i = 0; i + k < rlen; i++) {
        if (memcmp(reason + i, key, k) != 0)
            continue;
        long v = 0;
        size_t j = i + k;
        for (; j < rlen && reason[j] >= '0' && reason[j] <= '9' && v <= UINT16_MAX; j++)
            v = v * 10 + (reason[j] - '0');
        if (j == i + k)
            return 0;
        return v > UINT16_MAX ? UINT16_MAX : (int)v;
    }
    return 0;
}

void fs_refusal_key(int status, const char *body, char *out, size_t n)
{
    const char *p = strstr(body, "\"error\"");
    if (p) {
        p += 7;
        while (*p == ' ' || *p == ':')
            p++;
        if (*p == '"') {
            const char *q = strchr(++p, '"');
            if (q && q - p < 48) {
                snprintf(out, n, "%d %.*s", status, (int)(q - p), p);
                return;
            }
        }
    }
    snprintf(out, n, "%d", status);
}

enum h1_result h1_eof(struct fs_exchange *x)
{
    if (x->done)
        return H1_DONE;
    if (x->status == 0)
        return H1_BAD;
    llhttp_errno_t e = llhttp_finish(&x->parser);
    return (e == HPE_OK || e == HPE_PAUSED) && x->done ? H1_DONE : H1_BAD;
}
