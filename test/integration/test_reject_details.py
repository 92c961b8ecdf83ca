"""Details of refusals and their accounting (SPEC sections 4-5): blocked
firmware is told to stay away, text bodies for clients that cannot parse
JSON, unknown firmware counted, upstream queue-full refusals counted,
accepted connections counted, and `check` opening certificates."""
import json
import os

from helpers import H2Client, H2Stream, base_config, h1_once, run_cli


def get(port, path, headers=()):
    return h1_once(port, path, headers)[:3]


BLOCK = {"firmware": [{"class": "airtame-hub", "versions": ">=3.8.0-b3 <3.8.1",
                       "reason": "INC-2041"}]}


def test_blocked_firmware_is_told_to_stay_away(start_sluice):
    cfg = base_config(blocklist=BLOCK,
                      reject={"retry_after": {"min": "1s", "max": "90s", "jitter": 0}})
    s = start_sluice(cfg)
    status, hdrs, body = get(s.port, "/v1/connect", [("x-device-class", "airtame-hub"),
                                                      ("x-firmware-version", "3.8.0-b3")])
    assert status == 403
    assert hdrs["retry-after"] == "90"
    assert json.loads(body)["retry_after"] == 90


def test_text_body_when_configured(start_sluice):
    cfg = base_config(blocklist=BLOCK, reject={"body": "text"})
    s = start_sluice(cfg)
    status, hdrs, body = get(s.port, "/v1/connect", [("x-device-class", "airtame-hub"),
                                                      ("x-firmware-version", "3.8.0")])
    assert status == 403
    assert hdrs["content-type"].startswith("text/plain")
    assert body.startswith(b"blocked (policy blocklist/firmware/0); retry after ")


def test_unknown_firmware_is_counted_and_allowed_by_default(start_sluice):
    s = start_sluice(base_config(blocklist=BLOCK))
    assert get(s.port, "/v1/a")[0] == 200
    assert get(s.port, "/v1/a", [("x-firmware-version", "not-a-version")])[0] == 200
    assert s.metric("sluice_firmware_unknown_total", route="default", reason="absent") == 1
    assert s.metric("sluice_firmware_unknown_total", route="default", reason="unparseable") == 1


def test_unknown_firmware_denied_when_configured(start_sluice):
    block = dict(BLOCK, unknown="deny")
    s = start_sluice(base_config(blocklist=block))
    assert get(s.port, "/v1/a")[0] == 403
    assert get(s.port, "/v1/a", [("x-device-class", "tv"), ("x-firmware-version", "1.0")])[0] == 200


def test_queue_full_is_refused_503_and_counted(start_sluice):
    """One upstream connection, one waiting place: with the connection busy
    and the place taken, the next request is refused at once. The order is
    made by the protocol, not by sleeping: three HTTP/2 requests in one
    write reach sluice in stream order, once the pool's only connection is
    open and idle."""
    cfg = base_config()
    cfg["upstreams"]["identity"].update({"max_connections": 1, "max_pending": 1})
    s = start_sluice(cfg, workers=1)
    with H2Client(s.port) as c:
        warm = c.get("/v1/warm")  # opens the pool's one connection, left idle
        assert warm.status == 200
        sids = []
        for path in ("/slow?ms=1500", "/slow?ms=1500", "/v1/shed"):
            sid = c.conn.get_next_available_stream_id()
            c.streams[sid] = H2Stream(sid)
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "a"), (":path", path)], end_stream=True)
            sids.append(sid)
        c.flush()  # one write
        holds, waits, shed = c.wait_all(sids, timeout=10)
    assert shed.status == 503
    assert json.loads(shed.body)["error"] == "upstream_queue_full"
    assert (holds.status, waits.status) == (200, 200)
    assert s.metric("sluice_rejections_total", reason="queue_full") == 1


def test_connections_total_counts_accepts(start_sluice):
    s = start_sluice(base_config())
    for _ in range(3):
        get(s.port, "/v1/a")
    assert s.metric("sluice_connections_total", listener="public") == 3


def test_check_opens_certificates(sluice_bin, tmp_path):
    path = os.path.join(str(tmp_path), "c.yaml")
    with open(path, "w") as f:
        f.write('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
                '    tls: { certificate: /nonexistent.crt, private_key: /nonexistent.key }\n'
                'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
                'routes:\n  - { name: d, match: { path_prefix: "/" }, upstream: u }\n')
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    assert "%s:2:5: listener 'p': cannot load certificate /nonexistent.crt" % path in p.stderr


def test_client_ip_override_is_a_config_error(sluice_bin, tmp_path):
    path = os.path.join(str(tmp_path), "c.yaml")
    with open(path, "w") as f:
        f.write('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
                'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
                'routes:\n  - name: d\n    match: { path_prefix: "/" }\n    upstream: u\n'
                '    rate_limits:\n      - { key: client_ip, rate: "5/s", override: { a: "1/s" } }\n')
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    assert "has no named values to override" in p.stderr


def test_error_answer_to_head_has_no_body(start_sluice):
    """RFC 9110 §9.3.2, also for errors found before dispatch (found by
    fuzz_h1): 400 to a HEAD without Host announces its length, sends no
    content, and closes."""
    import socket
    s = start_sluice(base_config())
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"HEAD / HTTP/1.1\r\n\r\n")
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-length: " in head
    assert body == b""
