"""A client cannot escape a limit by rotating its key (issue 11): `new_keys`
on a device_id / device_class limit caps the new keys one client address
brings. Before it, a new Authorization token per request found a fresh
bucket every time: 100/100 admitted against a 2/s limit. Over HTTP/1.1,
HTTP/2 and WebSocket upgrades (h1 and RFC 8441); `sluice check` validates
it with FILE:LINE:COL, `--print` shows it, explain names it."""
import copy
import json
import time

import pytest

from helpers import run_cli
from admission_helpers import IDENTIFY, admission_config, h1_get, h2_get, route
from ws_helpers import Tunnels, check_rejection, ws_config, ws_route

# 2/s per token; each address may bring 5 new tokens at once, then one
# every 3 s (20/m).
NEW_KEYS = {"per": "client_ip", "rate": "20/m", "burst": 5}
LIMIT = {"key": "device_id", "rate": "2/s", "burst": 2, "new_keys": NEW_KEYS}
PERIOD_S = 3.0


def token_identify():
    """The device id is the Authorization header, as in the attack."""
    ident = copy.deepcopy(IDENTIFY)
    ident["device_id"] = {"header": "authorization"}
    return ident


def rotating(ip, i):
    return [("X-Forwarded-For", ip), ("Authorization", "Bearer t-%s-%d" % (ip, i))]


def new_key_budget(elapsed_s):
    """New keys one address can have had in |elapsed_s| seconds from a full
    bucket: the burst, plus one per period that has passed, plus one for a
    period that ends inside the run (GCRA admits at the period's end)."""
    return NEW_KEYS["burst"] + int(elapsed_s / PERIOD_S) + 1


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_rotating_tokens_are_held_to_new_keys(start_sluice, upstream, get):
    s = start_sluice(admission_config(routes=[route(rate_limits=[LIMIT])],
                                      identify=token_identify()))
    t0 = time.monotonic()
    answers = [get(s.port, "/v1/a", rotating("192.0.2.1", i)) for i in range(100)]
    elapsed = time.monotonic() - t0
    admitted = sum(r.status == 200 for r in answers)
    refused = [r for r in answers if r.status != 200]
    assert NEW_KEYS["burst"] <= admitted <= new_key_budget(elapsed), (admitted, elapsed)
    assert all(r.status == 200 for r in answers[:NEW_KEYS["burst"]])
    for r in refused:
        check_rejection(r.status, r.header, r.body, 429, "rate_limited", "default/device_id/new_keys")
    assert upstream.seen("/v1/a") == admitted
    assert s.metric("sluice_rejections_total", policy="default/device_id/new_keys",
                    reason="rate_limit") == len(refused)
    # Another address brings its own new keys; a token already in use is
    # not a new key (its second request passes, its own limit applies).
    assert get(s.port, "/v1/a", rotating("192.0.2.2", 0)).status == 200
    assert get(s.port, "/v1/a", rotating("192.0.2.2", 0)).status == 200
    r = get(s.port, "/v1/a", rotating("192.0.2.2", 0))
    check_rejection(r.status, r.header, r.body, 429, "rate_limited", "default/device_id")


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_rotating_ids_on_websocket_upgrades(start_sluice, upstream, proto):
    s = start_sluice(ws_config(ws=ws_route(rate_limits=[LIMIT])))
    t = Tunnels(s.port, proto)
    statuses = []
    t0 = time.monotonic()
    try:
        for i in range(20):
            headers = [("x-forwarded-for", "192.0.2.7"), ("x-device-id", "dev-%d" % i)]
            st, hdr, body, h = t.open(headers)
            statuses.append(st)
            if h is not None:
                t.close(h)
            else:
                check_rejection(st, hdr, body, 429, "rate_limited", "ws/device_id/new_keys")
    finally:
        t.shut()
    elapsed = time.monotonic() - t0
    admitted = sum(st in (101, 200) for st in statuses)
    assert NEW_KEYS["burst"] <= admitted <= new_key_budget(elapsed), (statuses, elapsed)
    assert upstream.seen("/ws") == admitted


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


HEAD = ('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
        'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
        'routes:\n  - name: d\n    upstream: u\n    rate_limits:\n')


def test_check_validates_new_keys(sluice_bin, tmp_path):
    path = write(tmp_path, "bad.yaml", HEAD +
                 '      - { key: client_ip, rate: 5/s, new_keys: { rate: 20/m } }\n'
                 '      - { key: device_id, rate: 5/s, new_keys: { burst: 3 } }\n'
                 '      - { key: device_class, rate: 5/s, new_keys: { rate: 20/m, per: route } }\n'
                 '      - { key: device_id, name: x, rate: 5/s, new_keys: { rate: 20/m, often: 1 } }\n')
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    err = p.stderr
    assert "%s:10:48: new_keys: a limit keyed by client_ip has keys the client cannot choose" \
        % path in err, err
    assert "%s:11:48: new_keys: missing 'rate'" % path in err, err
    assert "%s:12:" % path in err and "per" in err and "client_ip" in err, err
    assert "%s:13:" % path in err and "often" in err, err
    ok = write(tmp_path, "ok.yaml", HEAD +
               '      - { key: device_id, rate: 5/s, new_keys: { rate: 20/m, burst: 4 } }\n')
    p = run_cli(["check", "-c", ok, "--print"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert "new_keys:\n          per: client_ip\n          rate: \"20/m\"\n          burst: 4" \
        in p.stdout, p.stdout


def test_explain_names_the_new_key_cap(start_sluice):
    s = start_sluice(admission_config(routes=[route(rate_limits=[LIMIT])]))
    p = run_cli(["explain", "-c", s.config_path, "--ip", "198.51.100.8",
                 "--header", "x-device-id: d1", "/v1/a"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    rows = {x["policy"]: x for x in doc["policies"]}
    assert rows["default/device_id/new_keys"]["verdict"] == "admit"
    assert "new key" in rows["default/device_id/new_keys"]["why"]
