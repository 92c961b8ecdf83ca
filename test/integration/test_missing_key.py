"""A client cannot escape a limit by omitting its key (issue 11):
`missing_key` on a device_class / device_id limit. `skip` (the default)
lets a keyless request through untouched, `deny` refuses it 400
missing_key (shadow: counted, let through), `shared` puts every keyless
request in one bucket; over HTTP/1.1 and HTTP/2; `sluice check` refuses it
on limits whose key is never missing."""
import json
import os

import pytest

from helpers import run_cli
from admission_helpers import admission_config, device_headers, h1_get, h2_get, route


def config(missing, mode=None):
    rl = {"key": "device_id", "rate": "1/h", "burst": 2, "missing_key": missing}
    if mode:
        rl["mode"] = mode
    return admission_config(routes=[route(rate_limits=[rl])])


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_skip_is_the_default_escape(start_sluice, get):
    s = start_sluice(config("skip"))
    # Two per device id an hour; a keyless client is never limited.
    assert [get(s.port, "/v1/a", []).status for _ in range(5)] == [200] * 5
    assert [get(s.port, "/v1/a", device_headers(dev="d1")).status for _ in range(3)] == \
        [200, 200, 429]


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_deny_refuses_keyless_requests(start_sluice, upstream, get):
    s = start_sluice(config("deny"))
    r = get(s.port, "/v1/a", [])
    assert r.status == 400
    body = json.loads(r.body)
    assert (body["error"], body["policy"]) == ("missing_key", "default/device_id")
    assert r.header("retry-after") is None  # waiting does not give it a key
    assert get(s.port, "/v1/a", device_headers(dev="d1")).status == 200
    assert upstream.seen("/v1/a") == 1
    assert s.metric("sluice_rejections_total", policy="default/device_id",
                    reason="rate_limit") == 1


def test_deny_in_shadow_counts_and_admits(start_sluice):
    s = start_sluice(config("deny", mode="shadow"))
    assert [h1_get(s.port, "/v1/a", []).status for _ in range(3)] == [200] * 3
    assert s.metric("sluice_shadow_rejections_total", policy="default/device_id") == 3


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_shared_puts_keyless_requests_in_one_bucket(start_sluice, get):
    s = start_sluice(config("shared"))
    # burst 2 for all keyless requests together, whoever sends them.
    statuses = [get(s.port, "/v1/a", device_headers(ip="192.0.2.%d" % i)).status
                for i in range(1, 5)]
    assert statuses == [200, 200, 429, 429]
    # A device with its id has its own bucket still.
    assert get(s.port, "/v1/a", device_headers(dev="d1")).status == 200


def test_check_refuses_it_where_the_key_is_never_missing(sluice_bin, tmp_path):
    path = os.path.join(str(tmp_path), "c.yaml")
    with open(path, "w") as f:
        f.write('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
                'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
                'routes:\n  - name: d\n    upstream: u\n    rate_limits:\n'
                '      - { key: client_ip, rate: 5/s, missing_key: deny }\n'
                '      - { key: device_id, rate: 5/s, missing_key: sometimes }\n')
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    assert "%s:10:51: missing_key: every request has a client_ip key" % path in p.stderr, p.stderr
    assert "%s:11:51:" % path in p.stderr and "missing_key" in p.stderr, p.stderr
    # And it prints back as written.
    ok = os.path.join(str(tmp_path), "ok.yaml")
    with open(ok, "w") as f:
        f.write('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
                'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
                'routes:\n  - name: d\n    upstream: u\n    rate_limits:\n'
                '      - { key: device_class, rate: 5/s, missing_key: shared }\n')
    p = run_cli(["check", "-c", ok, "--print"], binary=sluice_bin)
    assert p.returncode == 0 and "missing_key: shared" in p.stdout, p.stdout + p.stderr
