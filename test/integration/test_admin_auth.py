"""The admin API's guarded endpoints (issue 14): /config, /reload and
/explain want `Authorization: Bearer <token>` once admin.token_file is set
(beyond loopback they are refused without one: unit-tested in
test/unit/test_admin_auth.c, since tests bind loopback only); the token is
re-read on reload; admin.metrics_address serves scraping and probes only;
the admin address defaults to loopback."""
import json
import os

from helpers import base_config, closed_port, run_cli


def admin(s, path, method="GET", token=None, port=None):
    headers = {"Authorization": "Bearer " + token} if token else None
    return s.admin_get(path, method=method, headers=headers, port=port)


def write_token(tmp_path, token, name="admin.token"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(token + "\n")
    return path


def test_token_guards_config_reload_explain(start_sluice, tmp_path):
    tok = write_token(tmp_path, "t0k3n-A.b~c")
    s = start_sluice(base_config(admin={"token_file": tok}))
    for path, method in (("/config", "GET"), ("/explain?path=/v1/x", "GET"), ("/reload", "POST")):
        status, hdrs, body = admin(s, path, method)
        assert status == 401, (path, status)
        assert hdrs["www-authenticate"].startswith("Bearer")
        assert json.loads(body)["error"] == "unauthorized"
        assert admin(s, path, method, token="wrong")[0] == 401
        assert admin(s, path, method, token="t0k3n-A.b~c")[0] == 200, path
    # Scraping and probes need nothing.
    assert admin(s, "/metrics")[0] == 200
    assert admin(s, "/readyz")[0] == 200
    # /config shows the file, never the token.
    body = admin(s, "/config", token="t0k3n-A.b~c")[2].decode()
    assert "token_file: %s" % tok in body or "token_file: \"%s\"" % tok in body, body
    assert "t0k3n" not in body


def test_token_rotates_on_reload(start_sluice, tmp_path):
    tok = write_token(tmp_path, "first")
    s = start_sluice(base_config(admin={"token_file": tok}))
    assert admin(s, "/config", token="first")[0] == 200
    write_token(tmp_path, "second")
    assert s.reload() == 1.0  # SIGHUP: the file is read again
    assert admin(s, "/config", token="first")[0] == 401
    assert admin(s, "/config", token="second")[0] == 200
    # A reload through the API with the new token works too.
    status, _, body = admin(s, "/reload", "POST", token="second")
    assert status == 200 and json.loads(body)["result"] == "success"


def test_unreadable_token_file_is_a_reload_failure(start_sluice, tmp_path):
    tok = write_token(tmp_path, "keep")
    s = start_sluice(base_config(admin={"token_file": tok}))
    os.unlink(tok)
    assert s.reload() == 0.0  # rejected: the running configuration stays
    assert admin(s, "/config", token="keep")[0] == 200


def test_metrics_address_serves_scraping_only(start_sluice):
    port = closed_port()
    s = start_sluice(base_config(admin={"metrics_address": "127.0.0.1:%d" % port}))
    assert admin(s, "/metrics", port=port)[0] == 200
    assert admin(s, "/readyz", port=port)[0] == 200
    assert admin(s, "/healthz", port=port)[0] == 200
    assert "sluice_build_info" in admin(s, "/metrics", port=port)[2].decode()
    for path, method in (("/config", "GET"), ("/explain?path=/", "GET"), ("/reload", "POST")):
        assert admin(s, path, method, port=port)[0] == 404, path
        assert admin(s, path, method)[0] == 200, path  # the admin port: loopback, no token


def test_check_defaults_and_errors(sluice_bin, tmp_path):
    d = str(tmp_path)
    base = ('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
            'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
            'routes:\n  - { name: d, match: { path_prefix: "/" }, upstream: u }\n')
    path = os.path.join(d, "ok.yaml")
    with open(path, "w") as f:
        f.write(base + "admin: {}\n")
    p = run_cli(["check", "-c", path, "--print"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert "address: 127.0.0.1:9901" in p.stdout or 'address: "127.0.0.1:9901"' in p.stdout

    zeros = os.path.join(d, "zeros.token")  # a preallocated file, never written
    with open(zeros, "wb") as f:
        f.write(b"\0" * 32)
    halfnul = os.path.join(d, "halfnul.token")
    with open(halfnul, "wb") as f:
        f.write(b"abc\0def\n")
    empty = write_token(tmp_path, "", "empty.token")
    spaced = write_token(tmp_path, "two words", "spaced.token")
    for token_file, want in ((os.path.join(d, "missing.token"), "cannot read token_file"),
                             (empty, "is empty"), (spaced, "may hold only"),
                             (zeros, "may hold only"), (halfnul, "may hold only")):
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write(base + "admin:\n  token_file: %s\n" % token_file)
        p = run_cli(["check", "-c", bad], binary=sluice_bin)
        assert p.returncode == 1, p.stdout
        assert "%s:9:15: admin: " % bad in p.stderr and want in p.stderr, p.stderr
