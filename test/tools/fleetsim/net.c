/* The byte stream under a device's exchange: the socket, or TLS on it
 * (OpenSSL, ALPN, SNI, verification unless --insecure). The SSL object
 * lives as long as the connection; the context is shared by every device. */
#include "fleetsim.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/socket.h>

static SSL_CTX *net_ctx;

int net_tls_init(void)
{
    const struct fs_config *c = &fs.cfg;
    net_ctx = SSL_CTX_new(TLS_client_method());
    if (!net_ctx)
        return -1;
    SSL_CTX_set_min_proto_version(net_ctx, TLS1_2_VERSION);
    if (c->insecure) {
        SSL_CTX_set_verify(net_ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(net_ctx, SSL_VERIFY_PEER, NULL);
        if (c->cacert ? SSL_CTX_load_verify_locations(net_ctx, c->cacert, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(net_ctx) != 1)
            return -1;
    }
    /* ALPN wire format: one length byte, then the name. */
    unsigned char alpn[16];
    size_t l = strlen(c->alpn);
    alpn[0] = (unsigned char)l;
    memcpy(alpn + 1, c->alpn, l);
    if (SSL_CTX_set_alpn_protos(net_ctx, alpn, (unsigned)(l + 1)) != 0)
        return -1;
    return 0;
}

int net_tls_start(struct device *d)
{
    const struct fs_config *c = &fs.cfg;
    SSL *s = SSL_new(net_ctx);
    if (!s)
        return -1;
    SSL_set_fd(s, d->io.fd);
    SSL_set_connect_state(s);
    if (c->sni[0])
        SSL_set_tlsext_host_name(s, c->sni);
    if (!c->insecure && c->sni[0])
        SSL_set1_host(s, c->sni);
    else if (!c->insecure)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), c->host_only);
    d->ssl = s;
    return 0;
}

/* SSL_get_error mapped onto the socket's: -1 with EAGAIN and *want set to
 * the readiness to wait for, or -1 with EPROTO (a TLS failure). */
static ssize_t net_ssl_result(struct device *d, int r, int *want)
{
    switch (SSL_get_error(d->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        *want = EV_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0)
            return 0; /* EOF without close_notify */
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

int net_tls_handshake(struct device *d, int *want)
{
    int r = SSL_do_handshake(d->ssl);
    if (r == 1)
        return 1;
    errno = 0;
    if (net_ssl_result(d, r, want) < 0 && errno == EAGAIN)
        return 0;
    return -1;
}

int net_alpn_is(const struct device *d, const char *proto)
{
    const unsigned char *p;
    unsigned l;
    SSL_get0_alpn_selected(d->ssl, &p, &l);
    return l == strlen(proto) && !memcmp(p, proto, l);
}

ssize_t net_send(struct device *d, const void *buf, size_t n, int *want)
{
    *want = EV_WRITE;
    if (!d->ssl)
        return send(d->io.fd, buf, n, MSG_NOSIGNAL);
    errno = 0;
    int r = SSL_write(d->ssl, buf, (int)n);
    return r > 0 ? r : net_ssl_result(d, r, want);
}

ssize_t net_recv(struct device *d, void *buf, size_t n, int *want)
{
    *want = EV_READ;
    if (!d->ssl)
        return recv(d->io.fd, buf, n, 0);
    errno = 0;
    int r = SSL_read(d->ssl, buf, (int)n);
    return r > 0 ? r : net_ssl_result(d, r, want);
}

void net_close(struct device *d)
{
    if (d->ssl) {
        SSL_free(d->ssl); /* no close_notify: a device that drops off the network */
        d->ssl = NULL;
    }
}
