"""The `require_header` route policy (policies/kinds/require_header.c)
through the real binary: a request without an allowed value of the header
is refused with the configured status before it reaches the upstream; a
good value is admitted; shadow mode lets everything through and counts
what it would have refused; /explain, `check --print` and bad YAML."""
import json

from helpers import base_config, h1_once, run_cli


def routes(mode=None, status=None):
    rh = {"name": "X-Device-Class", "values": ["hub", "cam"]}
    if mode:
        rh["mode"] = mode
    if status:
        rh["status"] = status
    return [{"name": "devices", "match": {"path_prefix": "/v1/"}, "upstream": "identity",
             "require_header": rh},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"}]


def test_refused_with_status_admitted_with_good_value(start_sluice, upstream):
    s = start_sluice(base_config(routes=routes(status=451)))
    status, _, body, _ = h1_once(s.port, "/v1/a")
    assert status == 451
    assert json.loads(body)["error"] == "header_required"
    status, _, _, _ = h1_once(s.port, "/v1/a", headers=[("X-Device-Class", "tv")])
    assert status == 451
    assert upstream.seen("/v1/a") == 0
    status, _, _, _ = h1_once(s.port, "/v1/a", headers=[("x-device-class", "cam")])
    assert status == 200
    assert upstream.seen("/v1/a") == 1
    # Other routes do not have the policy.
    assert h1_once(s.port, "/other")[0] == 200
    assert s.metric("sluice_rejections_total", route="devices", policy="devices/require_header",
                    reason="require_header") == 2


def test_default_status_is_403(start_sluice):
    s = start_sluice(base_config(routes=routes()))
    assert h1_once(s.port, "/v1/a")[0] == 403


def test_shadow_lets_through_and_counts(start_sluice, upstream):
    s = start_sluice(base_config(routes=routes(mode="shadow")))
    for _ in range(3):
        assert h1_once(s.port, "/v1/b")[0] == 200
    assert h1_once(s.port, "/v1/b", headers=[("x-device-class", "hub")])[0] == 200
    assert upstream.seen("/v1/b") == 4
    assert s.metric("sluice_shadow_rejections_total", route="devices",
                    policy="devices/require_header", reason="require_header") == 3
    assert s.metric("sluice_rejections_total", reason="require_header") == 0


def test_explain_and_print(start_sluice):
    s = start_sluice(base_config(routes=routes()))
    status, _, body = s.admin_get("/explain?path=/v1/a&header=x-device-class:tv")
    assert status == 200, body
    doc = json.loads(body)
    assert {"policy": "devices/require_header", "kind": "require_header", "verdict": "reject",
            "why": "x-device-class: 'tv' is not one of hub, cam"} in doc["policies"]
    assert doc["verdict"]["status"] == 403 and doc["verdict"]["error"] == "header_required"
    p = run_cli(["check", "-c", s.config_path, "--print"])
    assert p.returncode == 0, p.stderr
    assert ('    require_header:\n      name: "x-device-class"\n'
            '      values: ["hub", "cam"]\n      status: 403\n') in p.stdout


def test_bad_yaml_is_refused_at_its_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n  - name: public\n    address: \"127.0.0.1:1\"\n"
                    "upstreams:\n  identity: { address: \"127.0.0.1:2\" }\n"
                    "routes:\n  - name: r\n    upstream: identity\n"
                    "    require_header: { name: x-a, values: [], statu: 401 }\n")
    p = run_cli(["check", "-c", str(path)])
    assert p.returncode != 0
    assert "%s:9:42: require_header: 'values' must not be empty" % path in p.stderr
    assert "%s:9:46: unknown key 'statu' in require_header (did you mean 'status'?)" % path \
        in p.stderr
