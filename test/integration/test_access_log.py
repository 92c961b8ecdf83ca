"""The access log line and the request id (issue 14): a request id that is
generated when absent and passed to the origin, the client's kept; the user
agent and the W3C trace id logged; query values redacted unless
`access_log_query: full`."""
import json
import re

from helpers import H2Client, base_config, h1_once, wait_for


def origin_saw(body):
    """The header list the origin received (its echo)."""
    return json.loads(body)["header_list"]


def access_lines(s, n):
    """The access lines, once there are |n| of them."""
    def lines():
        return [l for l in s.logs() if l.get("msg") == "access"]
    wait_for(lambda: len(lines()) >= n, 5, what="%d access lines" % n)
    return lines()


def test_request_id_generated_passed_upstream_and_logged(start_sluice):
    s = start_sluice(base_config(access_log="on"))
    ids = []
    for i in range(20):
        status, _, body, _ = h1_once(s.port, "/v1/r%d" % i)
        assert status == 200
        sent = [v for n, v in origin_saw(body) if n == "x-request-id"]
        assert len(sent) == 1 and re.fullmatch(r"[0-9a-f]{32}", sent[0]), sent
        ids.append(sent[0])
    assert len(set(ids)) == 20  # unique
    lines = access_lines(s, 20)
    logged = {l["path"]: l["request_id"] for l in lines}
    assert [logged["/v1/r%d" % i] for i in range(20)] == ids


def test_client_request_id_kept_once_and_bad_ones_replaced(start_sluice):
    s = start_sluice(base_config(access_log="on"))
    # Kept, and the origin sees exactly one field even if the client sent two.
    _, _, body, _ = h1_once(s.port, "/v1/mine", [("X-Request-Id", "abc-123"),
                                                 ("X-Request-Id", "second")])
    assert [v for n, v in origin_saw(body) if n == "x-request-id"] == ["abc-123"]
    # Too long (129 bytes) or with a space: sluice's own instead.
    for bad in ("x" * 129, "has space"):
        _, _, body, _ = h1_once(s.port, "/v1/bad", [("X-Request-Id", bad)])
        sent = [v for n, v in origin_saw(body) if n == "x-request-id"]
        assert len(sent) == 1 and re.fullmatch(r"[0-9a-f]{32}", sent[0]), (bad, sent)
    # Over h2 too, and a refusal (no upstream) is logged with its id.
    with H2Client(s.port) as c:
        r = c.get("/v1/h2", headers=[("x-request-id", "h2-id")])
        assert r.status == 200
        assert [v for n, v in origin_saw(r.body) if n == "x-request-id"] == ["h2-id"]
    lines = access_lines(s, 4)
    assert {l["path"]: l["request_id"] for l in lines}["/v1/mine"] == "abc-123"
    assert [l["request_id"] for l in lines if l["path"] == "/v1/h2"] == ["h2-id"]


def test_user_agent_trace_id_and_refusals(start_sluice):
    cfg = base_config(access_log="on", routes=[
        {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity",
         "require_header": {"name": "x-app", "values": ["yes"]}}])
    s = start_sluice(cfg)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, _, body, _ = h1_once(s.port, "/v1/t", [("User-Agent", 'dev/1.0 "quoted"'),
                                                   ("traceparent", tp), ("x-app", "yes")])
    assert status == 200
    assert [v for n, v in origin_saw(body) if n == "traceparent"] == [tp]  # passed on
    assert h1_once(s.port, "/v1/refused", [("traceparent", "00-" + "0" * 32 + "-00f067aa0ba902b7-01")])[0] == 403
    lines = {l["path"]: l for l in access_lines(s, 2)}
    ok, refused = lines["/v1/t"], lines["/v1/refused"]
    assert ok["user_agent"] == 'dev/1.0 "quoted"'
    assert ok["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert refused["trace_id"] == ""  # an all-zero trace id is invalid
    assert refused["local"] is True and re.fullmatch(r"[0-9a-f]{32}", refused["request_id"])


def test_query_values_redacted_unless_full(start_sluice):
    s = start_sluice(base_config(access_log="on"))
    assert h1_once(s.port, "/v1/login?token=s3cr3t&user=bob&flag")[0] == 200
    line = access_lines(s, 1)[0]
    assert line["path"] == "/v1/login?token=*&user=*&*"
    assert "s3cr3t" not in s.stderr_text()
    s2 = start_sluice(base_config(access_log="on", access_log_query="full"))
    assert h1_once(s2.port, "/v1/login?token=s3cr3t")[0] == 200
    assert access_lines(s2, 1)[0]["path"] == "/v1/login?token=s3cr3t"
