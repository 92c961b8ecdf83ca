"""Configuration reload (SPEC section 4 "Reload", section 5 POST /reload):
SIGHUP, POST /reload and file changes (plain writes, rename-over writes, the
Kubernetes ConfigMap ..data swap, drop-ins); invalid files keep the old
configuration; limiter state carries over unchanged policies; listeners are
added, removed and re-certified without dropping connections; storms of
reloads under load lose no request."""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import threading
import time

import pytest

from admission_helpers import admission_config, device_headers, route
from helpers import (H1Conn, H2Client, base_config, metric_sum, port_refuses, release_ports,
                     run_cli, run_h2load, to_yaml, wait_for)

BLOCK = {"firmware": [{"name": "inc-2041", "class": "airtame-hub", "versions": ">=3.8.0 <3.8.1",
                       "status": 403, "reason": "INC-2041"}]}
BLOCKED_DEVICE = device_headers(cls="airtame-hub", fw="3.8.0")


# ---- helpers -------------------------------------------------------------------

def generation(s):
    status, _, body = s.admin_get("/config")
    assert status == 200
    m = re.search(rb"^# generation: (\d+)$", body, re.M)
    assert m, body[:200]
    return int(m.group(1))


def reloads(s, result):
    return s.metric("sluice_config_reloads_total", result=result)


def last_ok(s):
    return s.metric("sluice_config_last_reload_successful")


def post_reload(s):
    status, headers, body = s.admin_get("/reload", method="POST")
    assert headers.get("content-type", "").startswith("application/json"), headers
    return status, json.loads(body)


def reload_lines(s):
    return [l for l in s.logs() if l["msg"] == "configuration reloaded"]


def apply(s, cfg):
    """Writes |cfg| and reloads it through POST /reload; returns the answer
    (the file watcher may see the write too: the fingerprint taken at each
    load keeps it from loading the same files twice)."""
    s.write_config(cfg)
    release_ports(s)  # ports of new listeners, held by the harness until now
    status, doc = post_reload(s)
    assert (status, doc["result"]) == (200, "success"), doc
    return doc


def get_status(port, path="/v1/x", headers=(), tls=None):
    with H1Conn(port, tls=tls) as c:
        return c.request("GET", path, headers).status


def blocked_now(s):
    return get_status(s.port, "/v1/connect", BLOCKED_DEVICE) == 403


def block_config():
    return admission_config(blocklist=BLOCK)


# ---- triggers --------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_sighup_reloads_and_logs_one_line(start_sluice):
    s = start_sluice(admission_config())
    g0 = generation(s)
    assert s.reload() == 1
    assert generation(s) == g0 + 1
    line = s.wait_log(lambda l: l["msg"] == "configuration reloaded" and l["trigger"] == "SIGHUP",
                      what="reload log line")
    assert line["generation"] == g0 + 1
    assert line["blocklist_entries"] == "0->0"
    assert "routes +0 -0 ~0" in line["summary"], line
    # Nothing changed: every policy with state carried over, none fresh.
    assert line["policies_fresh"] == 0
    assert get_status(s.port) == 200


@pytest.mark.timeout(30)
def test_post_reload_answers_success_and_failure(start_sluice):
    s = start_sluice(admission_config())
    status, doc = post_reload(s)
    assert status == 200 and doc["result"] == "success", doc
    assert doc["generation"] == generation(s)
    assert "routes +0 -0 ~0" in doc["changes"]
    fails = reloads(s, "failure")

    bad = s.config_text.replace("routes:", "routez:")
    with open(s.config_path, "w") as f:
        f.write(bad)
    status, doc = post_reload(s)
    assert status == 400 and doc["result"] == "failure", doc
    # The answer says why, with FILE:LINE:COL.
    assert re.search(r"sluice\.yaml:\d+:\d+: .*routez", doc["errors"]), doc
    assert last_ok(s) == 0
    assert reloads(s, "failure") >= fails + 1
    assert get_status(s.port) == 200  # the old configuration serves on

    doc = apply(s, block_config())
    assert last_ok(s) == 1
    assert "blocklist 0->1" in doc["changes"], doc
    assert blocked_now(s)


@pytest.mark.timeout(30)
def test_file_change_takes_effect_within_2s(start_sluice):
    s = start_sluice(admission_config())
    assert not blocked_now(s)
    g0 = generation(s)
    t0 = time.monotonic()
    s.write_config(block_config())  # write a temporary file, rename it over
    wait_for(lambda: blocked_now(s), 2.0, interval=0.02, what="the blocklist to apply")
    took = time.monotonic() - t0
    assert took < 2.0, took
    assert generation(s) == g0 + 1
    line = s.wait_log(lambda l: l["msg"] == "configuration reloaded" and l["trigger"] == "file")
    assert line["blocklist_entries"] == "0->1"

    # An in-place rewrite (same inode) is seen too.
    g1 = generation(s)
    text = s.config_text.replace('"INC-2041"', '"INC-2041 (in place)"')
    with open(s.config_path, "w") as f:
        f.write(text)
    wait_for(lambda: generation(s) > g1, 2.0, interval=0.02, what="in-place write reloaded")


@pytest.mark.timeout(30)
def test_poll_finds_changes_without_inotify(start_sluice):
    """Filesystems where inotify sees nothing (NFS, some overlays): the 1 s
    poll of the files' fingerprint still applies a change within 2 s. The
    sanitizer build (SLUICE_TESTING) turns inotify off on request."""
    s = start_sluice(admission_config(), env=dict(os.environ, SLUICE_TEST_NO_INOTIFY="1"))
    if not any(l["msg"].startswith("inotify unavailable") for l in s.logs()):
        pytest.skip("not a SLUICE_TESTING build: inotify cannot be switched off")
    g0 = generation(s)
    t0 = time.monotonic()
    s.write_config(block_config())
    wait_for(lambda: blocked_now(s), 2.0, interval=0.02, what="the poll to apply the change")
    assert time.monotonic() - t0 < 2.0
    assert generation(s) == g0 + 1


@pytest.mark.timeout(30)
def test_configmap_symlink_swap(start_sluice):
    """The kubelet's AtomicWriter: the visible file is a symlink through
    ..data to a timestamped directory; an update writes a new directory,
    points a ..data_tmp symlink at it, renames ..data_tmp over ..data and
    deletes the old directory."""
    s = start_sluice(admission_config())
    d = s.workdir
    name = os.path.basename(s.config_path)

    def payload(ts, text):
        tsdir = os.path.join(d, "..%s" % ts)
        os.mkdir(tsdir)
        with open(os.path.join(tsdir, name), "w") as f:
            f.write(text)
        return "..%s" % ts

    # Turn the plain file into the ConfigMap layout (same content).
    first = payload("2026_01_01_00_00_00.000000001", s.config_text)
    os.symlink(first, os.path.join(d, "..data"))
    os.symlink(os.path.join("..data", name), os.path.join(d, name + ".lnk"))
    g0 = generation(s)
    os.replace(os.path.join(d, name + ".lnk"), s.config_path)
    wait_for(lambda: generation(s) > g0, 2.5, what="reload after the layout change")
    assert os.path.islink(s.config_path)
    assert not blocked_now(s)

    # The update, step by step as the kubelet does it.
    new_text = _render(s, block_config())
    second = payload("2026_01_01_00_01_00.000000002", new_text)
    g1 = generation(s)
    t0 = time.monotonic()
    os.symlink(second, os.path.join(d, "..data_tmp"))
    os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
    shutil.rmtree(os.path.join(d, first))
    wait_for(lambda: blocked_now(s), 2.0, interval=0.02, what="the swapped configuration")
    assert time.monotonic() - t0 < 2.0
    assert generation(s) == g1 + 1
    assert last_ok(s) == 1


def _render(s, cfg):
    """The YAML the harness would write for |cfg| (same ports), without
    touching the file: render into a scratch path, then put the file back."""
    path = s.config_path
    keep = os.path.realpath(path)
    with open(keep) as f:
        old = f.read()
    scratch = os.path.join(s.workdir, "render.tmp")
    s.config_path = scratch
    try:
        text = s.write_config(cfg)
    finally:
        s.config_path = path
        os.unlink(scratch)
    assert open(keep).read() == old
    return text


# ---- invalid files ----------------------------------------------------------------


def _write_atomically(path, text):
    """Replaces |path| in one rename, so the watcher never sees a half or an
    empty file that is not the one under test."""
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _rejections(s, path):
    """(line, col, error) of every "reload rejected" log line about |path|."""
    out = []
    for l in s.logs():
        m = re.match(r"(.*):(\d+):(\d+)$", l.get("where", ""))
        if l["msg"].startswith("reload rejected") and m and m.group(1) == path:
            out.append((int(m.group(2)), int(m.group(3)), l.get("error", "")))
    return out


def _check_old_serves_then_fix(s, g0, fails0, config0, path, line, error):
    """The reload of the broken file failed, for the reason the test caused
    (the error at |path|:|line| contains |error|), and the configuration
    running before (|config0|, which blocks a device) still serves; then a
    good file is picked up."""
    wait_for(lambda: any(l == line and error in e for l, _, e in _rejections(s, path)), 3.0,
             what="the reload of the broken file to be rejected")
    assert reloads(s, "failure") > fails0
    assert last_ok(s) == 0
    assert generation(s) == g0
    status, _, body = s.admin_get("/config")
    assert status == 200 and body == config0, "the running configuration changed"
    assert blocked_now(s), "the old configuration's blocklist no longer applies"
    assert get_status(s.port) == 200
    s.write_config(admission_config())  # good, and it blocks nothing
    wait_for(lambda: last_ok(s) == 1, 3.0, what="the fixed file to load")
    assert not blocked_now(s)
    assert generation(s) == g0 + 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_broken_file_keeps_old_config(start_sluice, how):
    """The running configuration blocks a device; a broken file must leave
    it exactly as it was (a fallback to defaults or to the part of the file
    that parses would unblock the device or change /config)."""
    s = start_sluice(block_config())
    assert blocked_now(s)
    g0, fails0 = generation(s), reloads(s, "failure")
    _, _, config0 = s.admin_get("/config")
    text = s.config_text
    if how == "truncated":
        # Cut inside a quoted scalar: the YAML ends mid-token.
        cut = text.index("INC-2041") + 3
        broken = text[:cut]
        line, error = broken.count("\n") + 1, "syntax error"
    else:
        broken = ""
        line, error = 1, "no listeners defined"
    _write_atomically(s.config_path, broken)
    _check_old_serves_then_fix(s, g0, fails0, config0, s.config_path, line, error)


@pytest.mark.timeout(30)
def test_file_invalid_mid_write_then_completed(start_sluice):
    s = start_sluice(admission_config())
    g0, fails0 = generation(s), reloads(s, "failure")
    text = _render(s, block_config())
    half = text.index('"', len(text) // 2) + 2  # stop inside a quoted scalar
    with open(s.config_path, "w") as f:
        f.write(text[:half])
        f.flush()
        # The writer stalls: the debounce ends, the half file fails to load.
        wait_for(lambda: reloads(s, "failure") > fails0, 3.0, what="the half-written file to fail")
        assert last_ok(s) == 0
        assert get_status(s.port) == 200 and not blocked_now(s)
        assert generation(s) == g0
        f.write(text[half:])
    wait_for(lambda: last_ok(s) == 1, 3.0, what="the completed file to load")
    assert blocked_now(s)
    assert generation(s) == g0 + 1
    lines = [l for l in s.logs() if l["msg"].startswith("reload rejected")]
    assert lines, "no log line for the rejected reload"


# ---- drop-ins and policy state ------------------------------------------------------


@pytest.mark.timeout(30)
def test_dropin_overrides_route_by_name(start_sluice, tmp_path):
    confd = tmp_path / "conf.d"  # must exist at the first load
    confd.mkdir()
    s = start_sluice(admission_config(include=str(confd)))
    assert get_status(s.port, "/v1/a", device_headers(ip="198.51.100.7")) == 200
    g0 = generation(s)
    drop = {"routes": [route(rate_limits=[{"key": "client_ip", "rate": "1/h", "burst": 2}])]}
    tmp = str(confd / ".50-limit.yaml.tmp")  # a leading dot: not a drop-in
    with open(tmp, "w") as f:
        f.write(to_yaml(drop))
    os.replace(tmp, str(confd / "50-limit.yaml"))
    wait_for(lambda: generation(s) > g0, 2.0, what="the drop-in to load")
    h = device_headers(ip="198.51.100.7")
    assert [get_status(s.port, "/v1/a", h) for _ in range(3)] == [200, 200, 429]
    # One route "default" (replaced in place, not appended).
    status, _, body = s.admin_get("/config")
    assert body.count(b'name: "default"') + body.count(b"name: default") == 1, body.decode()
    line = reload_lines(s)[-1]
    assert "default" in line.get("routes_changed", ""), line
    assert "default/client_ip" in line.get("policies_fresh_names", ""), line


def _vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1))


@pytest.mark.timeout(60)
def test_huge_dropin_is_rejected_with_bounded_memory(start_sluice, tmp_path):
    """A drop-in of two million list items (3.9 MiB, under the 4 MiB a file
    may have) must fail the reload at the node bound, with the drop-in's
    FILE:LINE:COL, keep the running configuration, and cost the process no
    more memory than a drop-in that holds exactly the bound (parsed whole,
    then rejected by the schema), give or take the bytes it has more (read
    whole: 1x) and 8 MiB of allocator slack. Before the bound it cost
    hundreds of MiB: what gets a pod OOM-killed."""
    confd = tmp_path / "conf.d"
    confd.mkdir()
    # AddressSanitizer keeps freed memory in quarantine (256 MiB) instead of
    # reusing it, so a second load would look like growth: none for this
    # process, whose peaks are the figure under test.
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                                        "quarantine_size_mb=0")
    s = start_sluice(admission_config(include=str(confd), blocklist=BLOCK), env=env)
    assert blocked_now(s)
    g0 = generation(s)
    _, _, config0 = s.admin_get("/config")
    drop = str(confd / "50-huge.yaml")

    def items(n):
        return "mode: [" + ",".join(["a"] * n) + "]\n"

    # Where the bound falls in such a drop-in (the item at column 8 + 2i):
    # asked of `sluice check` on a copy, so that the process under test
    # loads the drop-in at the bound first.
    huge = items(2000000)
    assert len(huge) < 4 << 20
    probe = tmp_path / "probe.d"
    probe.mkdir()
    (probe / "50-huge.yaml").write_text(huge)
    probe_main = tmp_path / "probe.yaml"
    probe_main.write_text(s.config_text.replace(str(confd), str(probe)))
    p = run_cli(["check", "-c", str(probe_main)], binary=s.binary)
    m = re.search(re.escape(str(probe / "50-huge.yaml")) + r":1:(\d+): too many nodes "
                  r"\(limit 200000", p.stderr)
    assert m, p.stderr
    fit = (int(m.group(1)) - 8) // 2

    # The drop-in at exactly the bound: its tree is the largest a load can
    # build; it is parsed whole and rejected by the schema.
    fails0 = reloads(s, "failure")
    _write_atomically(drop, items(fit))
    status, doc = post_reload(s)
    assert (status, doc["result"]) == (400, "failure"), doc
    assert "too many nodes" not in doc["errors"] and re.search(
        re.escape(drop) + r":1:7: mode: ", doc["errors"]), doc["errors"]
    hwm_fit = _vm_hwm_kib(s.proc.pid)

    # The huge one: rejected at the bound, and the process's peak grows by
    # no more than the extra bytes and the slack.
    _write_atomically(drop, huge)
    status, doc = post_reload(s)
    assert (status, doc["result"]) == (400, "failure"), doc
    assert re.search(re.escape(drop) + r":1:%d: too many nodes \(limit 200000" % (8 + 2 * fit),
                     doc["errors"]), doc["errors"]
    hwm_huge = _vm_hwm_kib(s.proc.pid)
    extra_kib = (len(huge) - len(items(fit))) // 1024
    assert hwm_huge - hwm_fit <= extra_kib + 8 * 1024, (hwm_fit, hwm_huge)
    assert reloads(s, "failure") >= fails0 + 2

    # the running configuration is the one from before
    assert last_ok(s) == 0 and generation(s) == g0
    assert s.admin_get("/config")[2] == config0
    assert blocked_now(s) and get_status(s.port) == 200
    os.unlink(drop)
    assert post_reload(s)[1]["result"] == "success"
    assert generation(s) == g0 + 1


@pytest.mark.timeout(30)
def test_limiter_state_carries_over_rate_change_converts(start_sluice):
    def cfg(rate, extra_route=False):
        routes = [route(rate_limits=[{"key": "client_ip", "rate": rate, "burst": 3}])]
        if extra_route:
            routes.insert(0, route(name="health", prefix="/healthz-upstream"))
        return admission_config(routes=routes)
    s = start_sluice(cfg("1/h"))
    h = device_headers(ip="203.0.113.9")
    assert [get_status(s.port, "/v1/c", h) for _ in range(4)] == [200, 200, 200, 429]

    apply(s, cfg("1/h", extra_route=True))  # unrelated change
    assert get_status(s.port, "/v1/c", h) == 429, "bucket not carried over"
    line = reload_lines(s)[-1]
    assert "health" in line.get("routes_added", ""), line
    assert "default/client_ip" in line.get("policies_carried_names", ""), line
    assert "policies_retuned_names" not in line, line

    # The rate changed: the bucket is carried and converted (3 of 3 tokens
    # consumed stay consumed), not started full.
    apply(s, cfg("2/h", extra_route=True))
    assert get_status(s.port, "/v1/c", h) == 429, "bucket should be carried, converted"
    line = reload_lines(s)[-1]
    assert "default/client_ip" in line.get("policies_carried_names", ""), line
    assert "default/client_ip" in line.get("policies_retuned_names", ""), line
    assert "default" in line.get("routes_changed", ""), line


# ---- listeners ---------------------------------------------------------------------


def two_listeners(cfg):
    cfg["listeners"] = [cfg["listeners"][0], {"name": "extra"}]
    return cfg


@pytest.mark.timeout(30)
def test_listener_added_while_old_keepalive_connection_works(start_sluice):
    s = start_sluice(base_config())
    old_h1 = H1Conn(s.port)
    old_h2 = H2Client(s.port)
    try:
        assert old_h1.request("GET", "/v1/before").status == 200
        assert old_h2.get("/v1/before").status == 200
        doc = apply(s, two_listeners(base_config()))
        assert "listeners +1" in doc["changes"], doc
        extra = s.ports["extra"]
        for _ in range(5):  # several connections: each worker's socket
            assert get_status(extra, "/v1/new") == 200
        with H2Client(extra) as c:
            assert c.get("/v1/new-h2").status == 200
        assert old_h1.request("GET", "/v1/after").status == 200
        assert old_h2.get("/v1/after").status == 200
        line = reload_lines(s)[-1]
        assert line.get("listeners_added") == "extra", line
    finally:
        old_h1.close()
        old_h2.close()


@pytest.mark.timeout(30)
def test_listener_removed_refuses_new_connections_open_ones_finish(start_sluice):
    s = start_sluice(two_listeners(base_config()))
    extra = s.ports["extra"]
    held = H1Conn(extra)
    try:
        assert held.request("GET", "/v1/held").status == 200
        doc = apply(s, base_config())
        assert "listeners +0 -1" in doc["changes"], doc
        # POST /reload returns once every worker closed its socket.
        for _ in range(5):
            assert port_refuses(extra), "removed listener still accepts"
        assert held.request("GET", "/v1/still-open").status == 200
        assert get_status(s.port) == 200
    finally:
        held.close()
    line = reload_lines(s)[-1]
    assert line.get("listeners_removed") == "extra", line


@pytest.mark.timeout(30)
def test_listener_bind_failure_fails_whole_reload(start_sluice):
    s = start_sluice(base_config())
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        cfg = base_config()
        cfg["listeners"].append({"name": "clash", "address": "127.0.0.1:%d" % busy.getsockname()[1]})
        cfg["routes"][0]["match"]["path_prefix"] = "/v1/"  # a change that must not apply
        s.write_config(cfg)
        status, doc = post_reload(s)
        assert status == 400 and doc["result"] == "failure", doc
        assert "clash" in doc["errors"] and "bind" in doc["errors"], doc
        assert last_ok(s) == 0
        assert get_status(s.port, "/other") == 200  # old catch-all route still there
        s.wait_log(lambda l: l["msg"].startswith("reload rejected") and "clash" in l.get("error", ""))
    finally:
        busy.close()
    doc = apply(s, base_config())
    assert last_ok(s) == 1


@pytest.mark.timeout(30)
def test_listener_limits_apply_on_reload(start_sluice):
    s = start_sluice(base_config())
    hdrs = [("x-h%d" % i, "v") for i in range(12)]
    assert get_status(s.port, "/v1/h", hdrs) == 200
    cfg = base_config()
    cfg["listeners"][0]["limits"] = {"headers": 8}
    doc = apply(s, cfg)
    assert "listeners +0 -0 ~1" in doc["changes"], doc
    assert get_status(s.port, "/v1/h", hdrs) == 431
    assert get_status(s.port, "/v1/h") == 200


@pytest.mark.timeout(30)
def test_tls_certificate_change_new_connections_only(start_sluice, tls_cert):
    def cfg(cert):
        c = base_config()
        c["listeners"][0]["tls"] = {"certificate": cert.cert, "private_key": cert.key}
        return c
    s = start_sluice(cfg(tls_cert.ecdsa))
    old = H1Conn(s.port, tls=tls_cert.ecdsa.client_context(alpn=("http/1.1",)))
    try:
        assert old.request("GET", "/v1/ecdsa").status == 200
        doc = apply(s, cfg(tls_cert.rsa))
        assert "tls 1" in doc["changes"], doc
        # New connections get the RSA certificate; ECDSA-only trust fails.
        assert get_status(s.port, tls=tls_cert.rsa.client_context(alpn=("http/1.1",))) == 200
        with pytest.raises(ssl.SSLError):
            get_status(s.port, tls=tls_cert.ecdsa.client_context(alpn=("http/1.1",)))
        # The open connection keeps its session.
        assert old.request("GET", "/v1/still-ecdsa").status == 200
    finally:
        old.close()


@pytest.mark.timeout(30)
def test_rotated_certificate_same_paths_picked_up_by_watcher(start_sluice, tls_cert, tmp_path):
    """cert-manager style: the files keep their paths, their content is
    replaced (rename over); the watcher sees it and the listener gets a new
    TLS context without a configuration change."""
    crt, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    shutil.copy(tls_cert.ecdsa.cert, crt)
    shutil.copy(tls_cert.ecdsa.key, key)
    cfg = base_config()
    cfg["listeners"][0]["tls"] = {"certificate": crt, "private_key": key}
    s = start_sluice(cfg)
    ecdsa = tls_cert.ecdsa.client_context(alpn=("http/1.1",))
    rsa = tls_cert.rsa.client_context(alpn=("http/1.1",))
    assert get_status(s.port, tls=ecdsa) == 200
    g0 = generation(s)
    for src, dst in ((tls_cert.rsa.key, key), (tls_cert.rsa.cert, crt)):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)
    wait_for(lambda: generation(s) > g0, 3.0, what="a reload after the certificate rotation")

    def serves_rsa():
        try:
            return get_status(s.port, tls=rsa) == 200
        except ssl.SSLError:
            return False  # a reload between the key and the certificate
    wait_for(serves_rsa, 3.0, what="the rotated certificate")
    assert last_ok(s) == 1
    line = s.wait_log(lambda l: l["msg"] == "configuration reloaded"
                      and l.get("listeners_tls_reloaded") == "public")
    assert line["trigger"] == "file"


@pytest.mark.timeout(30)
def test_renamed_listener_keeps_its_socket(start_sluice):
    s = start_sluice(base_config())
    port = s.port
    held = H1Conn(port)
    try:
        assert held.request("GET", "/v1/a").status == 200
        cfg = base_config()
        cfg["listeners"][0] = {"name": "front", "address": "127.0.0.1:%d" % port}
        doc = apply(s, cfg)
        assert "listeners +0 -0 ~1" in doc["changes"], doc
        assert get_status(port) == 200
        assert held.request("GET", "/v1/b").status == 200
        m = s.metrics()
        assert metric_sum(m, "sluice_connections_active", listener="public") >= 1
    finally:
        held.close()


# ---- storms under load ---------------------------------------------------------------


def h2load_background(url, *args):
    out = []
    t = threading.Thread(target=lambda: out.append(run_h2load(url, *args, timeout=120)))
    t.start()
    return t, out


@pytest.mark.timeout(60)
def test_thousand_sighups_under_load(start_sluice):
    s = start_sluice(admission_config())
    ok0 = reloads(s, "success")
    t, out = h2load_background(s.url("/v1/load"), "-n", "30000", "-c", "4", "-m", "4")
    wait_for(lambda: s.metric("sluice_requests_total") > 0, 10, interval=0.02,
             what="the load to reach sluice")
    for i in range(1000):  # spread over ~2 s of the run
        s.send_signal(signal.SIGHUP)
        time.sleep(0.002)  # paces the storm (the thing under test), synchronises nothing
    assert s.running()
    t.join(120)
    r = out[0]
    assert (r["failed"], r["errored"], r["timeout"]) == (0, 0, 0), r["output"][-800:]
    assert r["succeeded"] == 30000 and r.get("2xx") == 30000, r["output"][-800:]
    wait_for(lambda: reloads(s, "success") > ok0, 3, what="reloads")
    assert reloads(s, "failure") == 0
    assert s.running()
    assert get_status(s.port) == 200
    n = reloads(s, "success") - ok0
    assert 1 <= n <= 1000, n


@pytest.mark.timeout(90)
def test_100k_h2_requests_across_reloads(start_sluice):
    a = admission_config()
    b = admission_config(blocklist=BLOCK, routes=[route(name="v2", prefix="/v2/"), route()])
    s = start_sluice(a)
    texts = [_render(s, a), _render(s, b)]
    stop = threading.Event()
    flips = [0]

    def flipper():
        i = 0
        while not stop.is_set():
            i += 1
            tmp = s.config_path + ".flip"
            with open(tmp, "w") as f:
                f.write(texts[i % 2])
            os.replace(tmp, s.config_path)
            s.send_signal(signal.SIGHUP)
            flips[0] += 1
            stop.wait(0.1)

    ok0 = reloads(s, "success")
    th = threading.Thread(target=flipper)
    th.start()
    try:
        r = run_h2load(s.url("/v1/load"), "-n", "100000", "-c", "10", "-m", "10", timeout=80)
    finally:
        stop.set()
        th.join(5)
    assert (r["failed"], r["errored"], r["timeout"]) == (0, 0, 0), r["output"][-800:]
    assert r["succeeded"] == 100000 and r.get("2xx") == 100000, r["output"][-800:]
    n = reloads(s, "success") - ok0
    assert n >= 10, "only %d reloads during the run (%d flips)" % (n, flips[0])
    assert reloads(s, "failure") == 0
    assert s.running()


@pytest.mark.timeout(60)
def test_listener_churn_under_load(start_sluice):
    """A listener added and removed every 100 ms while h2 load runs on
    another: sockets are bound, handed to the workers, closed and freed
    over and over; the loaded listener loses nothing."""
    s = start_sluice(base_config())
    texts = [_render(s, base_config()), _render(s, two_listeners(base_config()))]
    release_ports(s)
    extra = s.ports["extra"]
    stop = threading.Event()
    seen = {"accepting": 0, "refusing": 0}

    def churn():
        i = 0
        while not stop.is_set():
            i += 1
            tmp = s.config_path + ".churn"
            with open(tmp, "w") as f:
                f.write(texts[i % 2])
            os.replace(tmp, s.config_path)
            status, doc = post_reload(s)
            assert status == 200, doc
            seen["refusing" if port_refuses(extra) else "accepting"] += 1
            stop.wait(0.1)

    errors = []

    def run():
        try:
            churn()
        except Exception as e:  # reported by the test thread below
            errors.append(e)
    th = threading.Thread(target=run)
    th.start()
    try:
        r = run_h2load(s.url("/v1/load"), "-n", "20000", "-c", "8", "-m", "8", timeout=50)
    finally:
        stop.set()
        th.join(10)
    assert not errors, errors
    assert (r["failed"], r["errored"], r["timeout"]) == (0, 0, 0), r["output"][-800:]
    assert r["succeeded"] == 20000
    assert seen["accepting"] >= 3 and seen["refusing"] >= 3, seen
    assert reloads(s, "failure") == 0
    assert get_status(s.port) == 200
