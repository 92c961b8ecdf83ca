/* build/fleetsim: a fleet of devices against one host:port (issue 13).
 * Flags and output: /work/notes/fleetsim-contract.md and README.md
 * "Fleet simulator". This file: flags, the run (ramp, storms, the end),
 * outcome accounting and the per-interval JSON lines. */
#include "fleetsim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct fs_run fs;

/* ---- flags ------------------------------------------------------------ */

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fleetsim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see README.md \"Fleet simulator\")\n", stderr);
    va_end(ap);
    exit(2);
}

/* A number in [lo, hi] or exit 2 naming the flag. */
static double num_arg(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v || v < lo || v > hi)
        usage_error("%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
    return v;
}

static void parse_target(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        usage_error("--target: '%s' is not HOST:PORT", s);
    char host[128];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host)
        usage_error("--target: host too long");
    memcpy(host, s, hl);
    host[hl] = 0;
    snprintf(fs.cfg.host_only, sizeof fs.cfg.host_only, "%s", host);
    int port = (int)num_arg("--target port", colon + 1, 1, 65535);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e)
        usage_error("--target: cannot resolve '%s': %s", host, gai_strerror(e));
    memcpy(&fs.cfg.target, res->ai_addr, sizeof fs.cfg.target);
    fs.cfg.target.sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    snprintf(fs.cfg.host, sizeof fs.cfg.host, "%s", s);
}

static void parse_cidr(const char *flag, const char *s, struct fs_cidr *c)
{
    char ip[32];
    int bits = 32;
    const char *slash = strchr(s, '/');
    size_t l = slash ? (size_t)(slash - s) : strlen(s);
    if (l >= sizeof ip)
        usage_error("%s: '%s' is not an IPv4 CIDR", flag, s);
    memcpy(ip, s, l);
    ip[l] = 0;
    if (slash)
        bits = (int)num_arg(flag, slash + 1, 8, 32);
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        usage_error("%s: '%s' is not an IPv4 CIDR", flag, s);
    uint32_t mask = bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
    uint32_t net = ntohl(a.s_addr) & mask;
    uint64_t size = 1ull << (32 - bits);
    if (size <= 2) {
        c->base = net;
        c->count = (uint32_t)size;
    } else { /* skip the network and broadcast addresses */
        c->base = net + 1;
        c->count = (uint32_t)(size - 2);
    }
    c->set = 1;
}

static int class_find(const char *name, size_t len)
{
    for (int i = 0; i < fs.cfg.nclasses; i++)
        if (strlen(fs.cfg.classes[i].name) == len && !strncmp(fs.cfg.classes[i].name, name, len))
            return i;
    return -1;
}

/* "a=70,b=30" (--class) or "a=5.0.1,b=3.8" (--firmware, after --class
 * in effect: a class named there must exist). */
static void parse_pairs(const char *flag, const char *s, int firmware)
{
    char *dup = strdup(s), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1] || eq - tok >= 48 || strlen(eq + 1) >= 48)
            usage_error("%s: '%s' is not NAME=VALUE", flag, tok);
        *eq = 0;
        if (firmware) {
            int i = class_find(tok, strlen(tok));
            if (i < 0)
                usage_error("%s: class '%s' is not in --class", flag, tok);
            snprintf(fs.cfg.classes[i].firmware, sizeof fs.cfg.classes[i].firmware, "%s", eq + 1);
            continue;
        }
        if (class_find(tok, strlen(tok)) >= 0)
            usage_error("%s: class '%s' given twice", flag, tok);
        if (fs.cfg.nclasses == FS_MAX_CLASSES)
            usage_error("%s: at most %d classes", flag, FS_MAX_CLASSES);
        struct fs_class *c = &fs.cfg.classes[fs.cfg.nclasses++];
        snprintf(c->name, sizeof c->name, "%s", tok);
        c->share = num_arg(flag, eq + 1, 0, 1e9);
    }
    free(dup);
}

/* none | fixed:MS | expo:BASE_MS:CAP_MS | retry-after[:BASE_MS:CAP_MS] */
static void parse_reconnect(const char *s)
{
    struct fs_config *c = &fs.cfg;
    char a[32], b[32];
    c->rc_base = 1.0;
    c->rc_cap = 60.0;
    if (!strcmp(s, "none")) {
        c->reconnect = RC_NONE;
    } else if (!strncmp(s, "fixed:", 6)) {
        c->reconnect = RC_FIXED;
        c->rc_fixed = num_arg("--reconnect fixed", s + 6, 0, 86400000) / 1000.0;
    } else if (!strcmp(s, "retry-after")) {
        c->reconnect = RC_RETRY_AFTER;
    } else if ((!strncmp(s, "expo:", 5) || !strncmp(s, "retry-after:", 12)) &&
               sscanf(strchr(s, ':') + 1, "%31[^:]:%31s", a, b) == 2) {
        c->reconnect = s[0] == 'e' ? RC_EXPO : RC_RETRY_AFTER;
        c->rc_base = num_arg("--reconnect BASE_MS", a, 1, 86400000) / 1000.0;
        c->rc_cap = num_arg("--reconnect CAP_MS", b, 1, 86400000) / 1000.0;
        if (c->rc_cap < c->rc_base)
            usage_error("--reconnect: CAP_MS below BASE_MS");
    } else {
        usage_error("--reconnect: '%s' is not none, fixed:MS, expo:BASE_MS:CAP_MS or "
                    "retry-after[:BASE_MS:CAP_MS]", s);
    }
}

static void parse_flags(int argc, char **argv)
{
    struct fs_config *c = &fs.cfg;
    enum { O_TARGET = 256, O_TLS, O_INSECURE, O_SNI, O_ALPN, O_DEVICES, O_MODE, O_POLL, O_PATH,
           O_CLASS, O_FW, O_IDH, O_SOURCES, O_XFF, O_HEADER, O_RAMP, O_STORM, O_RECONNECT,
           O_CRASH, O_TIMEOUT, O_DURATION, O_REPORT, O_OUT, O_SEED, O_CACERT };
    static const struct option opts[] = {
        {"target", 1, 0, O_TARGET}, {"tls", 0, 0, O_TLS}, {"insecure", 0, 0, O_INSECURE},
        {"sni", 1, 0, O_SNI}, {"alpn", 1, 0, O_ALPN}, {"devices", 1, 0, O_DEVICES},
        {"mode", 1, 0, O_MODE}, {"poll-interval", 1, 0, O_POLL}, {"path", 1, 0, O_PATH},
        {"class", 1, 0, O_CLASS}, {"firmware", 1, 0, O_FW}, {"device-id-header", 1, 0, O_IDH},
        {"sources", 1, 0, O_SOURCES}, {"xff", 1, 0, O_XFF}, {"header", 1, 0, O_HEADER},
        {"ramp", 1, 0, O_RAMP}, {"storm-at", 1, 0, O_STORM}, {"reconnect", 1, 0, O_RECONNECT},
        {"crashloop", 1, 0, O_CRASH}, {"timeout", 1, 0, O_TIMEOUT},
        {"duration", 1, 0, O_DURATION}, {"report-interval", 1, 0, O_REPORT},
        {"out", 1, 0, O_OUT}, {"seed", 1, 0, O_SEED}, {"cacert", 1, 0, O_CACERT}, {0, 0, 0, 0}};
    c->mode = FS_WS_H1;
    c->poll_interval = 10;
    snprintf(c->path, sizeof c->path, "/v1/connect");
    snprintf(c->id_header, sizeof c->id_header, "x-device-id");
    c->timeout = 10;
    c->report_interval = 1;
    c->seed = 1;
    parse_reconnect("none");
    int have_target = 0, tls_only = 0;
    const char *fw = NULL;
    opterr = 0;
    for (;;) {
        int o = getopt_long(argc, argv, "", opts, NULL);
        if (o == -1)
            break;
        const char *v = optarg;
        switch (o) {
        case O_TARGET: parse_target(v); have_target = 1; break;
        case O_TLS: c->tls = 1; break;
        case O_INSECURE: c->insecure = 1; tls_only = 1; break;
        case O_CACERT: c->cacert = v; tls_only = 1; break;
        case O_SNI:
            if (!*v || strlen(v) >= sizeof c->sni)
                usage_error("--sni: '%s' is not a host name", v);
            snprintf(c->sni, sizeof c->sni, "%s", v);
            tls_only = 1;
            break;
        case O_ALPN:
            if (strcmp(v, "h2") && strcmp(v, "http/1.1"))
                usage_error("--alpn: '%s' is not h2 or http/1.1", v);
            snprintf(c->alpn, sizeof c->alpn, "%s", v);
            tls_only = 1;
            break;
        case O_DEVICES: c->devices = (int)num_arg("--devices", v, 1, 200000); break;
        case O_MODE:
            if (!strcmp(v, "ws-h1")) c->mode = FS_WS_H1;
            else if (!strcmp(v, "ws-h2")) c->mode = FS_WS_H2;
            else if (!strcmp(v, "poll-h1")) c->mode = FS_POLL_H1;
            else if (!strcmp(v, "poll-h2")) c->mode = FS_POLL_H2;
            else usage_error("--mode: '%s' is not ws-h1, ws-h2, poll-h1 or poll-h2", v);
            break;
        case O_POLL: c->poll_interval = num_arg("--poll-interval", v, 1, 86400000) / 1000.0; break;
        case O_PATH:
            if (v[0] != '/' || strlen(v) >= sizeof c->path || strpbrk(v, " \r\n"))
                usage_error("--path: '%s' is not an absolute path without spaces", v);
            snprintf(c->path, sizeof c->path, "%s", v);
            break;
        case O_CLASS: parse_pairs("--class", v, 0); break;
        case O_FW: fw = v; break;
        case O_IDH:
            if (!*v || strlen(v) >= sizeof c->id_header || strpbrk(v, " :\r\n"))
                usage_error("--device-id-header: '%s' is not a header name", v);
            snprintf(c->id_header, sizeof c->id_header, "%s", v);
            break;
        case O_SOURCES: parse_cidr("--sources", v, &c->sources); break;
        case O_XFF: parse_cidr("--xff", v, &c->xff); break;
        case O_HEADER:
            if (c->nheaders == FS_MAX_HEADERS)
                usage_error("--header: at most %d", FS_MAX_HEADERS);
            if (!strchr(v, ':') || v[0] == ':' || strpbrk(v, "\r\n") || strlen(v) > 512)
                usage_error("--header: '%s' is not 'Name: value'", v);
            c->headers[c->nheaders++] = v;
            break;
        case O_RAMP: c->ramp = num_arg("--ramp", v, 0, 86400); break;
        case O_STORM:
            if (c->nstorms == FS_MAX_STORMS)
                usage_error("--storm-at: at most %d", FS_MAX_STORMS);
            c->storms[c->nstorms++] = num_arg("--storm-at", v, 0, 86400);
            break;
        case O_RECONNECT: parse_reconnect(v); break;
        case O_CRASH: {
            char a[32], b[32];
            if (sscanf(v, "%31[^:]:%31s", a, b) != 2)
                usage_error("--crashloop: '%s' is not SHARE:RATE", v);
            c->crash_share = num_arg("--crashloop SHARE", a, 0, 1);
            c->crash_rate = num_arg("--crashloop RATE", b, 0.001, 1000);
            break;
        }
        case O_TIMEOUT: c->timeout = num_arg("--timeout", v, 1, 86400000) / 1000.0; break;
        case O_DURATION: c->duration = num_arg("--duration", v, 0.1, 86400 * 7); break;
        case O_REPORT: c->report_interval = num_arg("--report-interval", v, 10, 3600000) / 1000.0; break;
        case O_OUT: c->out = v; break;
        case O_SEED: c->seed = (uint64_t)num_arg("--seed", v, 0, 1e15); break;
        default:
            usage_error("unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (!have_target)
        usage_error("--target HOST:PORT is required");
    if (!c->devices)
        usage_error("--devices N is required");
    if (c->duration <= 0)
        usage_error("--duration S is required (the run always ends)");
    if (c->sources.set && c->xff.set)
        usage_error("--sources and --xff are exclusive");
    if (tls_only && !c->tls)
        usage_error("--insecure, --cacert, --sni and --alpn need --tls");
    int h2 = c->mode == FS_WS_H2 || c->mode == FS_POLL_H2;
    if (!c->alpn[0])
        snprintf(c->alpn, sizeof c->alpn, "%s", h2 ? "h2" : "http/1.1");
    if (strcmp(c->alpn, h2 ? "h2" : "http/1.1"))
        usage_error("--alpn %s does not fit --mode (h1 modes speak http/1.1, h2 modes h2)", c->alpn);
    struct in_addr ip;
    if (!c->sni[0] && inet_pton(AF_INET, c->host_only, &ip) != 1)
        snprintf(c->sni, sizeof c->sni, "%s", c->host_only);
    if (c->mode == FS_WS_H2 || c->mode == FS_POLL_H2)
        usage_error("--mode ws-h2 and poll-h2 are not implemented yet");
    if (fw)
        parse_pairs("--firmware", fw, 1);
    if (c->nclasses == 0)
        c->nclasses = 1; /* one unnamed class: no X-Device-Class header */
    double total = 0;
    for (int i = 0; i < c->nclasses; i++)
        total += c->classes[i].share;
    if (c->classes[0].name[0] && total <= 0)
        usage_error("--class: the shares add up to 0");
}

/* ---- accounting ------------------------------------------------------- */

/* xorshift64*: seeded, so a run is repeatable. */
double fs_random(void)
{
    fs.rng ^= fs.rng >> 12;
    fs.rng ^= fs.rng << 25;
    fs.rng ^= fs.rng >> 27;
    return (double)((fs.rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Adds |count| under |key|; past FS_MAX_KEYS distinct keys, the last slot
 * becomes "other" and takes the rest (a bounded table). */
static void key_add_n(struct fs_keycount *keys, int *n, const char *key, uint64_t count)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(keys[i].key, key)) {
            keys[i].n += count;
            return;
        }
    if (*n == FS_MAX_KEYS) {
        snprintf(keys[*n - 1].key, sizeof keys[0].key, "other");
        keys[*n - 1].n += count;
        return;
    }
    snprintf(keys[*n].key, sizeof keys[*n].key, "%s", key);
    keys[(*n)++].n = count;
}

static void key_add(struct fs_keycount *keys, int *n, const char *key)
{
    key_add_n(keys, n, key, 1);
}

void fs_count_admitted(double latency_ms)
{
    fs.tick.attempts++;
    fs.tick.admitted++;
    lat_add(&fs.tick.lat, latency_ms);
}

void fs_count_refused(const char *key)
{
    fs.tick.attempts++;
    fs.tick.refused++;
    key_add(fs.tick.refused_by, &fs.tick.nrefused_by, key);
}

void fs_count_error(const char *key)
{
    fs.tick.attempts++;
    fs.tick.errors++;
    key_add(fs.tick.errors_by, &fs.tick.nerrors_by, key);
}

static double fs_elapsed(void) { return ev_time() - fs.t0; }

void fs_connected_add(int delta)
{
    fs.connected += delta;
    if (fs.connected > fs.connected_max)
        fs.connected_max = fs.connected;
    if (delta <= 0 || fs.nstorms_done == 0)
        return;
    /* 99% connected again after the latest storm (ceil: 99 of 100). */
    struct fs_storm *st = &fs.storms[fs.nstorms_done - 1];
    uint64_t want = ((uint64_t)fs.cfg.devices * 99 + 99) / 100;
    if (st->recovered < 0 && fs.connected >= want)
        st->recovered = fs_elapsed() - st->at;
}

/* ---- reports ---------------------------------------------------------- */

static void print_keys(const char *name, const struct fs_keycount *keys, int n)
{
    fprintf(fs.out, ",\"%s\":{", name);
    for (int i = 0; i < n; i++)
        fprintf(fs.out, "%s\"%s\":%llu", i ? "," : "", keys[i].key, (unsigned long long)keys[i].n);
    fputc('}', fs.out);
}

static void print_counts(const struct fs_counts *c)
{
    fprintf(fs.out, "\"attempts\":%llu,\"admitted\":%llu,\"refused\":%llu,\"errors\":%llu",
            (unsigned long long)c->attempts, (unsigned long long)c->admitted,
            (unsigned long long)c->refused, (unsigned long long)c->errors);
    print_keys("refused_by", c->refused_by, c->nrefused_by);
    print_keys("errors_by", c->errors_by, c->nerrors_by);
}

static void print_latency(const struct lat_hist *h)
{
    fprintf(fs.out, ",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
            lat_quantile(h, 0.5), lat_quantile(h, 0.9), lat_quantile(h, 0.99), h->max_ms);
}

static void counts_merge(struct fs_counts *dst, const struct fs_counts *src)
{
    dst->attempts += src->attempts;
    dst->admitted += src->admitted;
    dst->refused += src->refused;
    dst->errors += src->errors;
    for (int i = 0; i < src->nrefused_by; i++)
        key_add_n(dst->refused_by, &dst->nrefused_by, src->refused_by[i].key, src->refused_by[i].n);
    for (int i = 0; i < src->nerrors_by; i++)
        key_add_n(dst->errors_by, &dst->nerrors_by, src->errors_by[i].key, src->errors_by[i].n);
    lat_merge(&dst->lat, &src->lat);
}

/* One tick line: the attempts that ended in the interval (so its sums add
 * up), then the interval restarts. */
static void report_tick(void)
{
    fprintf(fs.out, "{\"type\":\"tick\",\"t\":%.3f,", fs_elapsed());
    print_counts(&fs.tick);
    fprintf(fs.out, ",\"connected\":%llu,\"started\":%llu,\"inflight\":%llu",
            (unsigned long long)fs.connected, (unsigned long long)fs.started,
            (unsigned long long)fs.inflight);
    print_latency(&fs.tick.lat);
    fputs("}\n", fs.out);
    fflush(fs.out);
    counts_merge(&fs.total, &fs.tick);
    memset(&fs.tick, 0, sizeof fs.tick);
}

/* The peak RSS of this program's own image: VmHWM, which starts afresh at
 * exec, where getrusage's ru_maxrss keeps the peak of the process before
 * exec (a fork of a large parent, such as Python, would be counted). */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void report_summary(double duration)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    int crash = 0;
    for (int i = 0; i < fs.cfg.devices; i++)
        crash += fs.devs[i].crashloop;
    fprintf(fs.out, "{\"type\":\"summary\",\"devices\":%d,\"crashloop_devices\":%d,"
            "\"duration_s\":%.3f,", fs.cfg.devices, crash, duration);
    print_counts(&fs.total);
    fprintf(fs.out, ",\"connected\":%llu,\"connected_max\":%llu,\"storms\":[",
            (unsigned long long)fs.connected, (unsigned long long)fs.connected_max);
    for (int i = 0; i < fs.nstorms_done; i++) {
        fprintf(fs.out, "%s{\"at_s\":%.3f,\"time_to_99pct_s\":", i ? "," : "", fs.storms[i].at);
        if (fs.storms[i].recovered < 0)
            fputs("null}", fs.out);
        else
            fprintf(fs.out, "%.3f}", fs.storms[i].recovered);
    }
    fputc(']', fs.out);
    print_latency(&fs.total.lat);
    long rss = peak_rss_kib();
    fprintf(fs.out, ",\"cpu_s\":%.3f,\"maxrss_kib\":%ld}\n", cpu, rss >= 0 ? rss : ru.ru_maxrss);
    fflush(fs.out);
}

/* ---- the run ---------------------------------------------------------- */

static ev_timer tick_timer, end_timer, storm_timer;
static ev_signal sigint_w, sigterm_w;

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) { report_tick(); }

static void end_cb(struct ev_loop *loop, ev_timer *w, int revents) { ev_break(loop, EVBREAK_ALL); }

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static int storm_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void storm_arm(void)
{
    if (fs.nstorms_done < fs.cfg.nstorms) {
        double after = fs.cfg.storms[fs.nstorms_done] - fs_elapsed();
        ev_timer_set(&storm_timer, after > 0 ? after : 0, 0);
        ev_timer_start(fs.loop, &storm_timer);
    }
}

static void storm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fs_storm *st = &fs.storms[fs.nstorms_done++];
    st->at = fs_elapsed();
    st->recovered = -1;
    fprintf(stderr, "fleetsim: storm at %.3f s: dropping %llu connected devices\n", st->at,
            (unsigned long long)fs.connected);
    for (int i = 0; i < fs.cfg.devices; i++)
        device_storm(&fs.devs[i]);
    storm_arm();
}

/* Every device needs one descriptor; raise the soft limit to the hard one
 * and say so when the fleet does not fit (the rest fail as "socket"). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)fs.cfg.devices + 32 > rl.rlim_cur)
        fprintf(stderr,
                "fleetsim: %d devices need %d descriptors, RLIMIT_NOFILE allows %llu: "
                "the devices beyond it fail with \"socket\" errors\n",
                fs.cfg.devices, fs.cfg.devices + 32, (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    parse_flags(argc, argv);
    struct fs_config *c = &fs.cfg;
    fs.out = stdout;
    if (c->out && !(fs.out = fopen(c->out, "w"))) {
        fprintf(stderr, "fleetsim: --out %s: %s\n", c->out, strerror(errno));
        return 2;
    }
    raise_nofile();
    if (c->tls && net_tls_init() < 0) {
        fprintf(stderr, "fleetsim: --tls: cannot set up the TLS client (--cacert %s?)\n",
                c->cacert ? c->cacert : "(system)");
        return 2;
    }
    fs.rng = c->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    fs.loop = ev_default_loop(EVFLAG_AUTO);
    fs.devs = calloc((size_t)c->devices, sizeof *fs.devs);
    if (!fs.devs) {
        fprintf(stderr, "fleetsim: out of memory for %d devices\n", c->devices);
        return 1;
    }
    qsort(c->storms, (size_t)c->nstorms, sizeof c->storms[0], storm_cmp);

    double total = 0;
    for (int i = 0; i < c->nclasses; i++)
        total += c->classes[i].share;
    fs.t0 = ev_time();
    ev_now_update(fs.loop);
    for (int i = 0; i < c->devices; i++) {
        struct device *d = &fs.devs[i];
        device_init(d, (uint32_t)i);
        double r = fs_random() * total, cum = 0;
        d->cls = (uint8_t)(c->nclasses - 1);
        for (int k = 0; k < c->nclasses; k++) {
            cum += c->classes[k].share;
            if (r < cum) {
                d->cls = (uint8_t)k;
                break;
            }
        }
        d->crashloop = c->crash_share > 0 && fs_random() < c->crash_share;
        device_start(d, c->ramp * i / c->devices);
    }
    ev_timer_init(&tick_timer, tick_cb, c->report_interval, c->report_interval);
    ev_timer_start(fs.loop, &tick_timer);
    ev_timer_init(&end_timer, end_cb, c->duration, 0);
    ev_timer_start(fs.loop, &end_timer);
    ev_timer_init(&storm_timer, storm_cb, 0, 0);
    storm_arm();
    ev_signal_init(&sigint_w, signal_cb, SIGINT);
    ev_signal_start(fs.loop, &sigint_w);
    ev_signal_init(&sigterm_w, signal_cb, SIGTERM);
    ev_signal_start(fs.loop, &sigterm_w);

    ev_run(fs.loop, 0);

    double duration = fs_elapsed();
    uint64_t connected_at_end = fs.connected;
    for (int i = 0; i < c->devices; i++)
        device_stop(&fs.devs[i]);
    fs.connected = connected_at_end; /* the summary reports the fleet as it ran */
    report_tick();
    report_summary(duration);
    free(fs.devs);
    if (fs.out != stdout)
        fclose(fs.out);
    return 0;
}
