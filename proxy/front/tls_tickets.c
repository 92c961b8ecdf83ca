/*
 * sluice — TLS session ticket keys (RFC 5077 tickets, TLS 1.3 PSK
 * resumption), shared by every worker and, through a key file, by every
 * replica.
 *
 * Why: in a reconnect storm almost every device has connected before. A
 * resumed handshake skips the certificate signature and costs a fraction
 * of a full one, but only if the replica the device lands on can decrypt
 * the ticket another replica issued. OpenSSL's default keys are random per
 * SSL_CTX: per process, and new whenever a certificate rotation rebuilds
 * the context. So sluice installs its own key callback:
 *
 *  - with `tls.ticket_keys_file`, the keys are read from that file (a
 *    Kubernetes Secret mounted in every replica, as nginx's
 *    ssl_session_ticket_key and HAProxy's tls-ticket-keys): the first key
 *    encrypts new tickets, every key decrypts; a ticket under an older key
 *    is accepted and replaced by one under the first;
 *  - without it, one random key made at start-up for the whole process:
 *    tickets stay valid across reloads and certificate rotations, and in
 *    every worker, for as long as the process lives.
 *
 * Key file: one key per line, the base64 of 80 random bytes (`openssl rand
 * 80 | base64 -w0`): a 16-byte name, a 32-byte HMAC-SHA256 key and a
 * 32-byte AES-256-CBC key, the layout of nginx's 80-byte keys. Blank lines
 * and lines starting with '#' are ignored; at most SL_TICKET_KEYS_MAX keys.
 *
 * The cipher and MAC are fetched once (OpenSSL 3 resolves a legacy
 * EVP_aes_256_cbc() through the provider on every init otherwise).
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/tls_tickets.h"

#define KEY_BYTES 80
#define NAME_BYTES 16
#define HMAC_BYTES 32
#define AES_BYTES 32

struct ticket_key {
  unsigned char name[NAME_BYTES];
  unsigned char hmac[HMAC_BYTES];
  unsigned char aes[AES_BYTES];
};

struct sl_ticket_keys {
  size_t n;
  struct ticket_key keys[SL_TICKET_KEYS_MAX];
};

static EVP_CIPHER *g_cipher;             /* AES-256-CBC, fetched once */
static struct sl_ticket_keys g_process;  /* the key of contexts without a file */
static int g_ex_index = -1;              /* SSL_CTX ex_data slot of a context's keys */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_ready;

static void keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  if (ptr && ptr != &g_process) {
    OPENSSL_cleanse(ptr, sizeof(struct sl_ticket_keys));
    free(ptr);
  }
}

static void init_once(void) {
  g_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
  g_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, keys_free);
  g_process.n = 1;
  g_ready = g_cipher && g_ex_index >= 0 &&
            RAND_bytes((unsigned char *)&g_process.keys[0], sizeof(g_process.keys[0])) == 1;
}

/* The base64 of one line, decoded into |out| (|cap| bytes); the decoded
 * length, or -1 if the line is not base64. */
static int b64_decode(const char *s, size_t len, unsigned char *out, size_t cap) {
  if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap) return -1;
  int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  if (n < 0) return -1;
  if (s[len - 1] == '=') n--; /* EVP_DecodeBlock counts padding as zero bytes */
  if (s[len - 2] == '=') n--;
  return n;
}

struct sl_ticket_keys *sl_ticket_keys_load(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open ticket key file %s: %s", path, strerror(errno));
    return NULL;
  }
  struct sl_ticket_keys *k = calloc(1, sizeof(*k));
  if (!k) abort();
  char line[512];
  unsigned lineno = 0;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
      snprintf(err, errlen, "%s:%u: line too long: expected the base64 of %d bytes", path, lineno,
               KEY_BYTES);
      goto fail;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                   line[len - 1] == '\t'))
      line[--len] = '\0';
    char *s = line;
    while (*s == ' ' || *s == '\t') s++, len--;
    if (len == 0 || *s == '#') continue;
    if (k->n == SL_TICKET_KEYS_MAX) {
      snprintf(err, errlen, "%s:%u: more than %d keys (keep the current key and a few previous)",
               path, lineno, SL_TICKET_KEYS_MAX);
      goto fail;
    }
    unsigned char raw[KEY_BYTES + 3];
    int n = b64_decode(s, len, raw, sizeof(raw));
    if (n != KEY_BYTES) {
      if (n < 0)
        snprintf(err, errlen, "%s:%u: not base64 (make a key with: openssl rand %d | base64 -w0)",
                 path, lineno, KEY_BYTES);
      else
        snprintf(err, errlen, "%s:%u: a key is %d bytes, this one is %d (openssl rand %d | base64 -w0)",
                 path, lineno, KEY_BYTES, n, KEY_BYTES);
      OPENSSL_cleanse(raw, sizeof(raw));
      goto fail;
    }
    memcpy(&k->keys[k->n], raw, KEY_BYTES);
    OPENSSL_cleanse(raw, sizeof(raw));
    for (size_t i = 0; i < k->n; i++) {
      if (memcmp(k->keys[i].name, k->keys[k->n].name, NAME_BYTES) == 0) {
        snprintf(err, errlen, "%s:%u: the same key name as line %zu's key (its first 16 bytes)",
                 path, lineno, i + 1);
        goto fail;
      }
    }
    k->n++;
  }
  if (ferror(f)) {
    snprintf(err, errlen, "cannot read ticket key file %s", path);
    goto fail;
  }
  if (k->n == 0) {
    snprintf(err, errlen, "%s: no key (one per line: openssl rand %d | base64 -w0)", path,
             KEY_BYTES);
    goto fail;
  }
  fclose(f);
  return k;
fail:
  fclose(f);
  OPENSSL_cleanse(k, sizeof(*k));
  free(k);
  return NULL;
}

void sl_ticket_keys_free(struct sl_ticket_keys *k) {
  keys_free(NULL, k, NULL, 0, 0, NULL);
}

size_t sl_ticket_keys_count(const struct sl_ticket_keys *k) {
  return k ? k->n : 0;
}

static int set_hmac(EVP_MAC_CTX *hctx, const struct ticket_key *key) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_init(hctx, key->hmac, HMAC_BYTES, params);
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: 1 = key set (decrypt: ticket
 * good), 2 = ticket good and a new one is to be issued, 0 = no such key
 * (full handshake), -1 = error.
 *
 * Decrypting, a ticket under an older key is renewed, and so is every
 * TLS 1.3 ticket: RFC 8446 (section 4.6.1, appendix C.4) has clients use
 * a ticket once, and OpenSSL's client keeps the session of its last
 * connection, which after a resumption without a new ticket has none. A
 * device that resumed would then make a full handshake on its next
 * reconnection, every other time in a storm (wrk over https: half of its
 * connections were full handshakes). A TLS 1.2 ticket may be reused: it
 * is renewed only when its key is no longer the first. */
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc) {
  const struct sl_ticket_keys *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_ex_index);
  if (!k || k->n == 0) return -1;
  if (enc) {
    const struct ticket_key *key = &k->keys[0];
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(g_cipher)) != 1) return -1;
    memcpy(name, key->name, NAME_BYTES);
    if (EVP_EncryptInit_ex2(cctx, g_cipher, key->aes, iv, NULL) != 1) return -1;
    return set_hmac(hctx, key) == 1 ? 1 : -1;
  }
  for (size_t i = 0; i < k->n; i++) {
    const struct ticket_key *key = &k->keys[i];
    if (memcmp(name, key->name, NAME_BYTES) != 0) continue;
    if (set_hmac(hctx, key) != 1) return -1;
    if (EVP_DecryptInit_ex2(cctx, g_cipher, key->aes, iv, NULL) != 1) return -1;
    return i == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
  }
  return 0;
}

bool sl_ticket_keys_install(SSL_CTX *ctx, struct sl_ticket_keys *k) {
  pthread_once(&g_once, init_once);
  if (!g_ready) {
    sl_ticket_keys_free(k);
    return false;
  }
  if (SSL_CTX_set_ex_data(ctx, g_ex_index, k ? k : &g_process) != 1) {
    sl_ticket_keys_free(k);
    return false;
  }
  return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) == 1;
}
