/* The HTTP/2 exchange (nghttp2 client session over net.c): ws-h2 opens an
 * RFC 8441 extended CONNECT (:protocol websocket) once the server's
 * SETTINGS allow it and holds the stream; poll-h2 sends a GET per poll on
 * the kept session. One attempt (stream) at a time per device. */
#include "fleetsim.h"

#include <ctype.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

struct fs_h2 {
    nghttp2_session *s;
    const uint8_t *out;      /* nghttp2's bytes not yet written (valid until the next mem_send) */
    size_t out_len;
    int32_t stream;          /* the attempt's stream, or the held tunnel's; 0 none */
    int status, retry_after;
    uint8_t settings_seen, connect_ok, submit_pending, answered, reset, tunnel_lost;
    size_t body_len;
    char body[256];
};

static int h2_ws(void) { return fs.cfg.mode == FS_WS_H2; }

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct fs_h2 *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != h->stream)
        return 0;
    if (nl == 7 && !memcmp(name, ":status", 7)) {
        h->status = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            h->status = h->status * 10 + (isdigit(value[i]) ? value[i] - '0' : 0);
    } else if (nl == 11 && !memcmp(name, "retry-after", 11)) {
        h->retry_after = 0;
        for (size_t i = 0; i < vl; i++)
            if (isdigit(value[i]) && h->retry_after < 100000)
                h->retry_after = h->retry_after * 10 + (value[i] - '0');
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    struct fs_h2 *h = ud;
    if (id != h->stream)
        return 0;
    if (h->answered) { /* a held tunnel: a close may say when to come back */
        int ra = fs_ws_close_retry_after(data, len);
        if (ra > 0)
            h->retry_after = ra;
        return 0;
    }
    fs_body_keep(h->body, sizeof h->body, &h->body_len, data, len);
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct fs_h2 *h = ud;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        h->settings_seen = 1;
        h->connect_ok =
            nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1;
        return 0;
    }
    if (f->hd.stream_id != h->stream || h->answered)
        return 0;
    int end = (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM);
    /* A tunnel is admitted at its 2xx head; anything else ends with the
     * stream, after its body (the refusal's "error"). */
    if ((f->hd.type == NGHTTP2_HEADERS && h2_ws() && h->status >= 200 && h->status < 300) ||
        (end && h->status >= 200))
        h->answered = 1;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct fs_h2 *h = ud;
    if (id != h->stream)
        return 0;
    if (!h->answered)
        h->reset = 1;
    else
        h->tunnel_lost = 1;
    h->stream = 0;
    return 0;
}

int h2_session_new(struct device *d)
{
    static nghttp2_session_callbacks *cbs;
    if (!cbs) {
        if (nghttp2_session_callbacks_new(&cbs) != 0)
            return -1;
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    }
    struct fs_h2 *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    if (nghttp2_session_client_new(&h->s, cbs, h) != 0) {
        free(h);
        return -1;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, 1);
    d->h2 = h;
    return 0;
}

void h2_session_free(struct device *d)
{
    if (!d->h2)
        return;
    nghttp2_session_del(d->h2->s);
    free(d->h2);
    d->h2 = NULL;
}

static ssize_t tunnel_no_data(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    return NGHTTP2_ERR_DEFERRED;
}

static int h2_submit(struct device *d)
{
    struct fs_h2 *h = d->h2;
    const struct fs_config *c = &fs.cfg;
    struct fs_header dh[FS_DEV_HEADERS];
    char store[64];
    int nh = device_headers(d, dh, store, sizeof store);
    nghttp2_nv nv[6 + FS_DEV_HEADERS];
    char lower[FS_DEV_HEADERS][64]; /* h2 field names are lowercase */
    int n = 0;
#define NV(nm, val) (nv[n].name = (uint8_t *)(nm), nv[n].namelen = strlen(nm), \
                     nv[n].value = (uint8_t *)(val), nv[n].valuelen = strlen(val), \
                     nv[n].flags = NGHTTP2_NV_FLAG_NONE, n++)
    NV(":method", h2_ws() ? "CONNECT" : "GET");
    NV(":scheme", c->tls ? "https" : "http");
    NV(":authority", c->host);
    NV(":path", c->path);
    if (h2_ws()) {
        NV(":protocol", "websocket");
        NV("sec-websocket-version", "13");
    }
#undef NV
    for (int i = 0; i < nh; i++) {
        size_t l = dh[i].name_len < 63 ? dh[i].name_len : 63;
        for (size_t k = 0; k < l; k++)
            lower[i][k] = (char)tolower((unsigned char)dh[i].name[k]);
        nv[n] = (nghttp2_nv){(uint8_t *)lower[i], (uint8_t *)dh[i].value, l, dh[i].value_len,
                             NGHTTP2_NV_FLAG_NONE};
        n++;
    }
    /* nghttp2 copies the fields. Without a data provider the HEADERS carry
     * END_STREAM: a tunnel gets one that never has data, so it stays open. */
    nghttp2_data_provider none = {.read_callback = tunnel_no_data};
    int32_t id = nghttp2_submit_request(h->s, NULL, nv, (size_t)n, h2_ws() ? &none : NULL, NULL);
    if (id < 0)
        return -1;
    h->stream = id;
    return 0;
}

int h2_attempt_begin(struct device *d)
{
    struct fs_h2 *h = d->h2;
    h->status = 0;
    h->retry_after = -1;
    h->answered = h->reset = h->tunnel_lost = 0;
    h->body_len = 0;
    h->body[0] = 0;
    if (h2_ws() && !h->settings_seen) {
        h->submit_pending = 1; /* RFC 8441: wait for SETTINGS_ENABLE_CONNECT_PROTOCOL */
        return 0;
    }
    if (h2_ws() && !h->connect_ok)
        return -1;
    return h2_submit(d);
}

int h2_write(struct device *d)
{
    struct fs_h2 *h = d->h2;
    int want;
    for (;;) {
        if (h->out_len == 0) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(h->s, &p);
            if (n < 0)
                return -1;
            if (n == 0)
                return 0;
            h->out = p;
            h->out_len = (size_t)n;
        }
        ssize_t r = net_send(d, h->out, h->out_len, &want);
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        h->out += r;
        h->out_len -= (size_t)r;
    }
}

int h2_want_write(const struct device *d)
{
    return d->h2->out_len > 0 || nghttp2_session_want_write(d->h2->s);
}

enum h1_result h2_read(struct device *d, const char *buf, size_t n)
{
    struct fs_h2 *h = d->h2;
    if (nghttp2_session_mem_recv(h->s, (const uint8_t *)buf, n) < 0)
        return H1_BAD;
    if (h->submit_pending && h->settings_seen) {
        h->submit_pending = 0;
        if (!h->connect_ok || h2_submit(d) < 0)
            return H1_BAD; /* the server does not take RFC 8441 CONNECT */
    }
    if (h->reset)
        return H1_RESET;
    return h->answered ? H1_DONE : H1_MORE;
}

int h2_tunnel_lost(const struct device *d)
{
    return d->h2->tunnel_lost || !nghttp2_session_want_read(d->h2->s);
}

int h2_status(const struct device *d) { return d->h2->status; }

int h2_retry_after(const struct device *d) { return d->h2->retry_after; }

void h2_refusal_key(const struct device *d, char *out, size_t n)
{
    fs_refusal_key(d->h2->status, d->h2->body, out, n);
}
