"""TLS session resumption across workers, reloads and replicas
(issue 15: "Resumption across the fleet"): `tls.ticket_keys_file` shared by
several sluice processes, key rotation on reload, the process's own key
kept across certificate rotations, and bad key files refused with their
line."""

import base64
import os
import socket
import ssl

import yaml

from helpers import base_config, make_cert, recv_all, run_cli

KEY_BYTES = 80


def new_key():
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def write_keys(path, keys, comment=True):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        if comment:
            f.write("# session ticket keys: the first encrypts, all decrypt\n\n")
        for k in keys:
            f.write(k + "\n")
    os.replace(tmp, path)


def client_context():
    # Resumption is what is tested, not the certificate (one test rotates
    # it): verification off, TLS 1.3 only so a ticket is a PSK ticket.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def connect(port, ctx, session=None):
    """One HTTP/1.1 request over a new TLS connection; returns (reused,
    session). The response is read in full, so the server's
    NewSessionTicket (sent after the handshake in TLS 1.3) has arrived."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(b"GET /v1/resume HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        return s.session_reused, s.session


def tls_config(cert, keys_file=None):
    cfg = base_config()
    tls = {"certificate": cert.cert, "private_key": cert.key}
    if keys_file:
        tls["ticket_keys_file"] = keys_file
    cfg["listeners"][0]["tls"] = tls
    return cfg


def test_a_ticket_from_one_replica_resumes_on_another(start_sluice, tls_cert, tmp_path):
    keys = str(tmp_path / "ticket.keys")
    write_keys(keys, [new_key()])
    a = start_sluice(tls_config(tls_cert.ecdsa, keys), name="replica-a")
    b = start_sluice(tls_config(tls_cert.ecdsa, keys), name="replica-b")
    c = start_sluice(tls_config(tls_cert.ecdsa), name="own-key")
    ctx = client_context()
    reused, sess = connect(a.port, ctx)
    assert not reused and sess.has_ticket
    # Both workers of both replicas accept it: several connections each.
    for port in (b.port, a.port) * 4:
        assert connect(port, ctx, sess)[0], "ticket from replica a not resumed on port %d" % port
    # A process without the file has its own key: a full handshake there.
    assert connect(c.port, ctx, sess)[0] is False


def test_rotation_keeps_the_previous_key_for_decryption(start_sluice, tls_cert, tmp_path):
    keys = str(tmp_path / "ticket.keys")
    k1, k2 = new_key(), new_key()
    write_keys(keys, [k1])
    s = start_sluice(tls_config(tls_cert.ecdsa, keys))
    ctx = client_context()
    _, old = connect(s.port, ctx)
    write_keys(keys, [k2, k1])  # step 1 of a rotation: the new key first
    assert s.reload() == 1.0
    reused, new = connect(s.port, ctx, old)
    assert reused  # a ticket under k1 still resumes...
    _, fresh = connect(s.port, ctx)  # ...and new tickets are issued under k2
    write_keys(keys, [k2])  # step 2: the previous key retired
    assert s.reload() == 1.0
    assert connect(s.port, ctx, fresh)[0]
    assert connect(s.port, ctx, old)[0] is False  # k1's tickets: full handshake, still served


def test_own_key_survives_a_certificate_rotation(start_sluice, tls_cert, tmp_path):
    d = str(tmp_path / "rotating")
    cert = make_cert(d, "ecdsa")
    s = start_sluice(tls_config(cert))
    ctx = client_context()
    _, sess = connect(s.port, ctx)
    before = open(cert.cert).read()
    make_cert(d, "ecdsa")  # a new certificate and key at the same paths
    assert open(cert.cert).read() != before
    assert s.reload() == 1.0
    reused, _ = connect(s.port, ctx, sess)
    assert reused, "a certificate rotation invalidated every session ticket"


def check(sluice_bin, tmp_path, name, cert, keys_file):
    """`sluice check` of a configuration whose listener uses |keys_file|."""
    cfg = tls_config(cert, keys_file)
    cfg["listeners"][0]["address"] = "127.0.0.1:8443"
    cfg["admin"]["address"] = "127.0.0.1:9901"
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:8081"
    path = tmp_path / (name + ".yaml")
    path.write_text(yaml.safe_dump(cfg))
    return str(path), run_cli(["check", "-c", str(path)], binary=sluice_bin)


def test_bad_key_files_are_refused_with_their_line(sluice_bin, tls_cert, tmp_path):
    cases = {
        "short": (["# ok\n", base64.b64encode(os.urandom(48)).decode()],
                  ":3: a key is 80 bytes, this one is 48"),
        "garbage": ([new_key(), "not*base64!"], ":2: not base64"),
        "empty": (["# nothing here"], ": no key"),
        "same-name": ([base64.b64encode(b"n" * 16 + os.urandom(64)).decode() for _ in "ab"],
                      ":2: the same key name as line 1's key"),
    }
    for name, (lines, want) in cases.items():
        path = str(tmp_path / (name + ".keys"))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        cfgp, p = check(sluice_bin, tmp_path, name, tls_cert.ecdsa, path)
        assert p.returncode == 1, (name, p.stdout, p.stderr)
        assert path + want in p.stderr, (name, p.stderr)
        assert p.stderr.startswith(cfgp + ":"), p.stderr  # FILE:LINE:COL of the listener
    missing = str(tmp_path / "absent.keys")
    _, p = check(sluice_bin, tmp_path, "missing", tls_cert.ecdsa, missing)
    assert p.returncode == 1 and "cannot open ticket key file " + missing in p.stderr, p.stderr
    good = str(tmp_path / "good.keys")
    write_keys(good, [new_key(), new_key()])
    _, p = check(sluice_bin, tmp_path, "good", tls_cert.ecdsa, good)
    assert p.returncode == 0, p.stderr


def test_a_bad_key_file_on_reload_keeps_the_running_keys(start_sluice, tls_cert, tmp_path):
    keys = str(tmp_path / "ticket.keys")
    write_keys(keys, [new_key()])
    s = start_sluice(tls_config(tls_cert.ecdsa, keys))
    ctx = client_context()
    _, sess = connect(s.port, ctx)
    with open(keys, "w") as f:
        f.write("truncated\n")
    assert s.reload() == 0.0
    assert connect(s.port, ctx, sess)[0]


def test_a_changed_key_file_is_picked_up_by_the_watcher(start_sluice, tls_cert, tmp_path):
    """A Secret update (kubelet swaps the file) reloads by itself: the
    listener gets the new keys without a SIGHUP."""
    keys = str(tmp_path / "ticket.keys")
    k1 = new_key()
    write_keys(keys, [k1])
    s = start_sluice(tls_config(tls_cert.ecdsa, keys))
    ctx = client_context()
    _, old = connect(s.port, ctx)
    write_keys(keys, [new_key()])  # k1 retired at once
    line = s.wait_log(lambda l: l["msg"] == "configuration reloaded"
                      and l.get("listeners_tls_reloaded") == "public",
                      what="a reload of the listener's TLS context after the key file changed")
    assert line["trigger"] == "file"
    assert connect(s.port, ctx, old)[0] is False


def test_a_resumed_tls13_connection_gets_a_new_ticket(start_sluice, tls_cert):
    """RFC 8446 has a client use a TLS 1.3 ticket once: every resumption
    must bring a fresh one, or the device's next reconnection is a full
    handshake. A chain of reconnections, each with the session of the one
    before (as OpenSSL's client keeps it), resumes every time, each time
    with a ticket of its own. (wrk over https, whose client keeps only the
    session of its last connection, made every other connection a full
    handshake when resumptions brought no ticket.)"""
    s = start_sluice(tls_config(tls_cert.ecdsa))
    ctx = client_context()
    reused, sess = connect(s.port, ctx)
    assert not reused and sess.has_ticket
    for i in range(6):
        reused, nxt = connect(s.port, ctx, sess)
        assert reused, "reconnection %d after a resumption was a full handshake" % (i + 1)
        # A new ticket makes a new client session (OpenSSL names it by the
        # ticket): without one, the client holds the used ticket again.
        assert nxt.has_ticket and nxt.id != sess.id, "resumption %d brought no new ticket" % (i + 1)
        sess = nxt
