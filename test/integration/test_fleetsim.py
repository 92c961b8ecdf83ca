"""build/fleetsim (issue 13) against the real sluice in front of upstream.py:
a few hundred devices for a few seconds each. The reports must add up
(attempts = admitted + refused + errors, per tick and in the summary, and
the ticks sum to the summary), refusals are counted by status and the body's
"error", Retry-After is honoured, a storm is followed by a recovery time,
and bad flags exit 2 with a message. make integration runs it with
FLEETSIM_BIN=build/san/fleetsim (ASan/UBSan: a report fails the exit code)."""

import json
import os
import subprocess

import pytest

from admission_helpers import admission_config, route

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLEETSIM = os.environ.get("FLEETSIM_BIN", os.path.join(ROOT, "build", "fleetsim"))

COUNTS = ("attempts", "admitted", "refused", "errors")


def fleet_config(routes=None):
    """admission_config() whose upstream takes a tunnel per device (sluice's
    default max_connections, 256, would queue the rest)."""
    cfg = admission_config(routes=routes)
    cfg["upstreams"]["identity"]["max_connections"] = 2000
    return cfg


def run_fleetsim(port, *args, timeout=60):
    """Runs fleetsim against 127.0.0.1:|port|; returns (ticks, summary)."""
    if not os.access(FLEETSIM, os.X_OK):
        pytest.fail("build/fleetsim is missing: make build/fleetsim (make integration builds it)")
    r = subprocess.run([FLEETSIM, "--target", "127.0.0.1:%d" % port] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "fleetsim exit %d: %s" % (r.returncode, r.stderr)
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines and lines[-1]["type"] == "summary", r.stdout[-2000:]
    ticks = [x for x in lines[:-1]]
    assert ticks and all(t["type"] == "tick" for t in ticks)
    return ticks, lines[-1]


def check_sums(ticks, summary):
    """Every report adds up, and the ticks add up to the summary."""
    for rep in ticks + [summary]:
        assert rep["attempts"] == rep["admitted"] + rep["refused"] + rep["errors"], rep
        assert rep["refused"] == sum(rep["refused_by"].values()), rep
        assert rep["errors"] == sum(rep["errors_by"].values()), rep
    for k in COUNTS:
        assert sum(t[k] for t in ticks) == summary[k], k
    for by in ("refused_by", "errors_by"):
        keys = set(summary[by]) | {k for t in ticks for k in t[by]}
        for key in keys:
            assert sum(t[by].get(key, 0) for t in ticks) == summary[by].get(key, 0), (by, key)


@pytest.mark.timeout(60)
def test_admitting_ws_h1_all_connected(start_sluice, upstream):
    """300 devices from 300 source addresses hold a WebSocket each: every
    attempt admitted, connected == devices in every tick after the first
    connect, no errors."""
    n = 300
    s = start_sluice(fleet_config())
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", "ws-h1", "--path", "/ws",
                                  "--sources", "127.1.0.0/16", "--class", "homey=70,airtame-hub=30",
                                  "--firmware", "homey=5.0.1,airtame-hub=3.8.0-b5",
                                  "--duration", 3, "--report-interval", 500)
    check_sums(ticks, summary)
    assert summary["devices"] == n
    assert summary["attempts"] == n and summary["admitted"] == n, (summary["refused_by"], summary["errors_by"])
    assert summary["errors"] == 0 and summary["refused"] == 0, summary
    assert summary["connected"] == n and summary["connected_max"] == n
    assert ticks[-1]["connected"] == n
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    # A tunnel is an upstream connection of its own: the upstream holds n.
    st = upstream.stats()
    assert st["connections"] - st["stats_connections"] >= n, st


@pytest.mark.timeout(60)
def test_poll_h1_xff_admitted(start_sluice, upstream):
    """poll-h1 with X-Forwarded-For: each device polls every 500 ms on its
    kept connection; over D s a device makes 1 + floor(D / 0.5) polls at
    most (one at start, then one per interval), at least D / (0.5 + the
    slowest poll) - 1."""
    n, interval, duration = 100, 0.5, 3.0
    s = start_sluice(fleet_config())
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", "poll-h1",
                                  "--poll-interval", int(interval * 1000), "--xff", "10.9.0.0/16",
                                  "--duration", duration)
    check_sums(ticks, summary)
    assert summary["refused"] == 0 and summary["errors_by"].keys() <= {"unfinished"}, summary
    assert summary["connected"] == n, summary
    slowest = summary["latency_ms"]["max"] / 1000.0
    assert summary["attempts"] <= n * (1 + int(duration / interval)), summary
    assert summary["admitted"] >= n * (duration / (interval + slowest) - 1), summary


@pytest.mark.timeout(60)
def test_rate_limited_class_retry_after_honoured(start_sluice, upstream):
    """A device-class limit of R/s, burst B: refusals are counted under
    "429 rate_limited"; admitted <= B + R x D (+1 for the token accruing at
    the end); with retry-after honoured each device waits >= 1 s (the
    reject minimum) after a refusal, so it makes at most 1 + D attempts,
    where --reconnect none would make thousands."""
    n, rate, burst, duration = 200, 20, 20, 4.0
    s = start_sluice(fleet_config(routes=[route(rate_limits=[
        {"key": "device_class", "rate": "%d/s" % rate, "burst": burst}])]))
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", "ws-h1", "--path", "/ws",
                                  "--class", "homey=1", "--reconnect", "retry-after",
                                  "--duration", duration)
    check_sums(ticks, summary)
    assert set(summary["refused_by"]) == {"429 rate_limited"}, summary
    assert summary["admitted"] >= burst, summary
    assert summary["admitted"] <= burst + rate * duration + 1, summary
    assert summary["attempts"] <= n * (1 + duration), summary
    assert summary["connected"] == summary["admitted"], summary
    # Every device made its first attempt at once (no --ramp).
    assert ticks[0]["started"] == n, ticks[0]
    # The bound tells the behaviours apart: retrying at once, the same fleet
    # makes many times more attempts in the same time (each refusal is one
    # loopback round trip).
    _, hammer = run_fleetsim(s.port, "--devices", n, "--mode", "ws-h1", "--path", "/ws",
                             "--class", "homey=1", "--reconnect", "none", "--duration", 1.0)
    assert hammer["attempts"] > n * (1 + duration), hammer


@pytest.mark.timeout(60)
def test_storm_and_recovery(start_sluice, upstream):
    """Every connection dropped at 1.5 s; expo:100:1000 brings each device
    back within its first window (100 ms, full jitter) plus one attempt's
    latency, so 99% are connected again well before the run ends."""
    n, storm_at, duration = 200, 1.5, 4.0
    s = start_sluice(fleet_config())
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", "ws-h1", "--path", "/ws",
                                  "--storm-at", storm_at, "--reconnect", "expo:100:1000",
                                  "--duration", duration, "--report-interval", 250)
    check_sums(ticks, summary)
    assert len(summary["storms"]) == 1
    storm = summary["storms"][0]
    assert abs(storm["at_s"] - storm_at) < 0.25, storm   # one loop iteration late at most
    rec = storm["time_to_99pct_s"]
    assert rec is not None and 0 < rec < duration - storm_at, storm
    assert summary["admitted"] == 2 * n and summary["connected"] == n, summary
    # The tick after the storm saw the fleet down.
    assert min(t["connected"] for t in ticks if t["t"] > storm_at) < n or rec < 0.25


@pytest.mark.timeout(60)
def test_crashloop_share_retries_at_its_rate(start_sluice, upstream):
    """A crash-looping share reconnects every 1/RATE s whatever the
    outcome: each of its C devices makes between D / (1/RATE + the slowest
    attempt) - 1 and D x RATE + 1 attempts; the rest connect once."""
    n, share, crash_rate, duration = 100, 0.2, 5, 3.0
    s = start_sluice(fleet_config())
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", "ws-h1", "--path", "/ws",
                                  "--crashloop", "%g:%d" % (share, crash_rate),
                                  "--reconnect", "fixed:1000", "--seed", 7, "--duration", duration)
    check_sums(ticks, summary)
    c = summary["crashloop_devices"]
    assert 0 < c < n, summary
    slowest = summary["latency_ms"]["max"] / 1000.0
    extra = summary["attempts"] - (n - c)
    assert extra <= c * (duration * crash_rate + 1), summary
    assert extra >= c * (duration / (1.0 / crash_rate + slowest) - 1), summary


@pytest.mark.parametrize("args,message", [
    ([], "--target"),
    (["--target", "127.0.0.1:1", "--duration", "1"], "--devices"),
    (["--target", "127.0.0.1:1", "--devices", "5"], "--duration"),
    (["--target", "127.0.0.1", "--devices", "5", "--duration", "1"], "HOST:PORT"),
    (["--target", "127.0.0.1:1", "--devices", "0", "--duration", "1"], "--devices"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--mode", "ws"], "--mode"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--reconnect", "expo:5"],
     "--reconnect"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--sources", "300.1.0.0/16"],
     "--sources"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--crashloop", "2:10"],
     "--crashloop"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--class", "a=1",
      "--firmware", "b=1.0"], "--firmware"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--bogus"], "--bogus"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--insecure"], "--tls"),
    (["--target", "127.0.0.1:1", "--devices", "5", "--duration", "1", "--tls", "--alpn", "h2"],
     "--alpn"),
])
@pytest.mark.timeout(20)
def test_bad_flags_exit_2(args, message):
    r = subprocess.run([FLEETSIM] + args, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetsim: ") and message in lines[0], r.stderr


@pytest.mark.timeout(30)
def test_refused_connect_counted_as_errors():
    """Nothing listens: every attempt is a "connect" error, the sums still
    add up, and fixed:200 paces each device to at most 1 + D / 0.2 attempts."""
    from helpers import closed_port
    port = closed_port()
    n, duration = 20, 1.0
    ticks, summary = run_fleetsim(port, "--devices", n, "--reconnect", "fixed:200",
                                  "--duration", duration)
    check_sums(ticks, summary)
    assert summary["admitted"] == 0 and summary["errors"] == summary["attempts"] > 0, summary
    assert set(summary["errors_by"]) <= {"connect", "unfinished"}, summary
    assert summary["attempts"] <= n * (1 + duration / 0.2), summary


def tls_config(cert):
    cfg = fleet_config()
    cfg["listeners"][0]["tls"] = {"certificate": cert.cert, "private_key": cert.key}
    return cfg


@pytest.mark.timeout(60)
def test_tls_ws_h1_and_poll_h1_verified(start_sluice, upstream, tls_cert):
    """--tls with the listener's certificate as CA (verified for 127.0.0.1,
    ALPN http/1.1): ws-h1 tunnels and poll-h1 polls are all admitted."""
    cert = tls_cert.ecdsa
    s = start_sluice(tls_config(cert))
    n = 50
    ticks, summary = run_fleetsim(s.port, "--tls", "--cacert", cert.cert, "--devices", n,
                                  "--mode", "ws-h1", "--path", "/ws", "--duration", 2)
    check_sums(ticks, summary)
    assert summary["admitted"] == n and summary["connected"] == n, summary
    ticks, summary = run_fleetsim(s.port, "--tls", "--insecure", "--devices", n, "--mode", "poll-h1",
                                  "--poll-interval", 500, "--duration", 2)
    check_sums(ticks, summary)
    assert summary["refused"] == 0 and summary["errors_by"].keys() <= {"unfinished"}, summary
    assert summary["connected"] == n, summary


@pytest.mark.timeout(30)
def test_tls_unverified_certificate_is_a_tls_error(start_sluice, upstream, tls_cert):
    """Without --insecure or the right CA, the self-signed certificate fails
    verification: every attempt is a "tls" error, and the sums add up."""
    s = start_sluice(tls_config(tls_cert.ecdsa))
    ticks, summary = run_fleetsim(s.port, "--tls", "--cacert", tls_cert.rsa.cert, "--devices", 5,
                                  "--reconnect", "fixed:200", "--duration", 1)
    check_sums(ticks, summary)
    assert summary["admitted"] == 0 and set(summary["errors_by"]) <= {"tls", "unfinished"}, summary
    assert summary["errors_by"].get("tls", 0) >= 5, summary


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["ws-h2", "poll-h2"])
def test_h2_modes_admitted(start_sluice, upstream, mode):
    """ws-h2: an RFC 8441 extended CONNECT per device, held (sluice turns it
    into an h1 Upgrade to upstream.py /ws); poll-h2: a GET per 300 ms on the
    kept h2c session, at most 1 + floor(D / 0.3) per device."""
    n, duration = 100, 2.0
    s = start_sluice(fleet_config())
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", mode, "--path",
                                  "/ws" if mode == "ws-h2" else "/v1/connect",
                                  "--poll-interval", 300, "--duration", duration)
    check_sums(ticks, summary)
    assert summary["refused"] == 0 and summary["errors_by"].keys() <= {"unfinished"}, summary
    assert summary["connected"] == n, summary
    if mode == "ws-h2":
        assert summary["attempts"] == n
    else:
        assert n * 2 <= summary["attempts"] <= n * (1 + int(duration / 0.3)), summary


@pytest.mark.timeout(60)
def test_h2_refusals_by_error_field_and_tls_alpn_h2(start_sluice, upstream, tls_cert):
    """Over TLS with ALPN h2, a device-class limit refuses ws-h2 tunnels:
    counted under "429 rate_limited" from the h2 response body; with
    retry-after honoured, admitted <= B + R x D + 1 (as over h1)."""
    n, rate, burst, duration = 100, 20, 20, 2.0
    cfg = fleet_config(routes=[route(rate_limits=[
        {"key": "device_class", "rate": "%d/s" % rate, "burst": burst}])])
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert, "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    ticks, summary = run_fleetsim(s.port, "--tls", "--cacert", tls_cert.ecdsa.cert, "--devices", n,
                                  "--mode", "ws-h2", "--path", "/ws", "--class", "homey=1",
                                  "--reconnect", "retry-after", "--duration", duration)
    check_sums(ticks, summary)
    assert set(summary["refused_by"]) == {"429 rate_limited"}, summary
    assert burst <= summary["admitted"] <= burst + rate * duration + 1, summary
    assert summary["connected"] == summary["admitted"], summary


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["ws-h1", "ws-h2"])
def test_idle_cap_evictions_stay_away_for_their_retry_after(start_sluice, upstream, mode):
    """limits.max_idle: 40 and 50 devices holding a tunnel each: the ten
    beyond the cap evict the quietest ten, whose close frame (1001) says
    "retry-after N" with N in [60, 120] s (the window of a refusal at the
    cap: reject.retry_after's default max 120 s less its jitter, 0.5). With
    --reconnect retry-after the evicted devices stay away for the rest of
    the run: 50 attempts, 10 evictions, 40 held. A fleet that ignores the
    close frame (expo) comes back within a second and evicts others in turn."""
    import helpers
    n, cap = 50, 40
    cfg = fleet_config()
    cfg["listeners"][0]["limits"] = {"max_idle": cap}
    s = start_sluice(cfg, workers=1)

    def evictions():
        return helpers.metric_sum(s.metrics(), "sluice_idle_evictions_total", listener="public")
    ticks, summary = run_fleetsim(s.port, "--devices", n, "--mode", mode, "--path", "/ws",
                                  "--reconnect", "retry-after:100:1000", "--duration", 4)
    check_sums(ticks, summary)
    assert summary["attempts"] == n and summary["admitted"] == n, (
        summary["attempts"], summary["errors_by"], summary["refused_by"])
    assert summary["connected"] == cap, summary
    assert evictions() == n - cap
    _, churn = run_fleetsim(s.port, "--devices", n, "--mode", mode, "--path", "/ws",
                            "--reconnect", "expo:100:1000", "--duration", 4)
    assert churn["attempts"] > 2 * n, churn
