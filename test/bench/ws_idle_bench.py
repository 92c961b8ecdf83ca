#!/usr/bin/python3
"""Memory of idle WebSocket tunnels: sluice's resident set with N open,
silent tunnels (a measurement, not a test; nothing here asserts).

  python3 test/bench/ws_idle_bench.py                     (10,000 tunnels)
  python3 test/bench/ws_idle_bench.py --tunnels 2000 --binary build/san/sluice

The release build (build/sluice, --workers 2) runs in front of the test
upstream (test/integration/upstream.py, whose /ws is a WebSocket echo: an
asyncio server, one coroutine per connection, no connection cap of its
own). Half of the tunnels are HTTP/1.1 upgrades, one TCP connection each;
the other half are RFC 8441 extended CONNECT streams, --streams-per-conn
(default 50, under sluice's SETTINGS_MAX_CONCURRENT_STREAMS of 100) on
each HTTP/2 connection. Each tunnel echoes one small message to prove it
is open, then stays silent.

Reported, from /proc/PID/status of sluice: VmRSS and RssAnon before the
first tunnel, after the h1 half and with all tunnels open (each after a
short settle), the growth per tunnel (overall, per h1 and per h2 tunnel),
and the whole process against the target of the issue: 10,000 idle
tunnels under 200 MiB resident.

Every process is started here with RLIMIT_NOFILE raised in preexec_fn
(sluice holds two sockets per h1 tunnel: client and upstream), and stopped
by its PID (SIGTERM, then SIGKILL). Every phase is bounded by --timeout.
"""

import argparse
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import helpers  # noqa: E402
from ws_helpers import (H2WSClient, OP_TEXT, accept_for, encode_frame,  # noqa: E402
                        new_key, proc_status, upgrade_request)

NOFILE = 65536


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def raise_nofile(n=NOFILE):
    """Soft and hard RLIMIT_NOFILE to |n| (root may raise the hard limit;
    otherwise the soft limit goes up to the hard one)."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise TimeoutError("time limit reached while %s" % what)


def stop_proc(proc, timeout=10.0):
    """SIGTERM the process we started (by PID), SIGKILL after |timeout|."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(10)


def start_upstream(workdir, deadline):
    err = open(os.path.join(workdir, "upstream.stderr"), "wb")
    proc = subprocess.Popen([helpers.PYTHON, helpers.UPSTREAM_PY, "--host", "127.0.0.1",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL, preexec_fn=raise_nofile)
    line = b""
    while not line.endswith(b"\n"):
        r, _, _ = select.select([proc.stdout], [], [], max(0.01, min(10, deadline.left())))
        if not r:
            stop_proc(proc)
            raise RuntimeError("upstream did not start")
        c = os.read(proc.stdout.fileno(), 1)
        if not c:
            raise RuntimeError("upstream exited at start")
        line += c
    if not line.startswith(b"READY "):
        stop_proc(proc)
        raise RuntimeError("upstream said %r" % line)
    return proc, int(line.split()[1])


def sluice_config(port, admin_port, upstream_port, tunnels):
    return {
        "listeners": [{"name": "public", "address": "127.0.0.1:%d" % port,
                       "max_connections": tunnels * 2,
                       "timeouts": {"request_header": "10s", "idle": "600s"}}],
        "admin": {"address": "127.0.0.1:%d" % admin_port},
        "upstreams": {"identity": {"address": "127.0.0.1:%d" % upstream_port,
                                   "max_connections": tunnels * 2, "max_pending": tunnels * 2,
                                   "timeouts": {"connect": "5s", "response": "30s",
                                                "idle": "600s"}}},
        "routes": [
            {"name": "ws", "match": {"path_prefix": "/ws", "websocket": True},
             "upstream": "identity", "idle_timeout": "600s"},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"},
        ],
        "drain_timeout": "5s",
    }


def start_sluice(binary, workdir, upstream_port, tunnels, workers, deadline):
    rp, ra = helpers.reserve_port(), helpers.reserve_port()
    port, admin_port = rp.port, ra.port
    path = os.path.join(workdir, "sluice.yaml")
    with open(path, "w") as f:
        f.write(helpers.to_yaml(sluice_config(port, admin_port, upstream_port, tunnels)))
    rp.release()
    ra.release()
    err = open(os.path.join(workdir, "sluice.stderr"), "wb")
    proc = subprocess.Popen([binary, "run", "-c", path, "--workers", str(workers),
                             "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                            cwd=workdir, preexec_fn=raise_nofile)
    while True:
        deadline.check("waiting for sluice to be ready")
        if proc.poll() is not None:
            raise RuntimeError("sluice exited with %d at start" % proc.returncode)
        try:
            if admin_get(admin_port, "/readyz")[0] == 200:
                return proc, port, admin_port
        except OSError:
            pass
        time.sleep(0.05)


def admin_get(admin_port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def tunnels_active(admin_port):
    _, body = admin_get(admin_port, "/metrics")
    m = helpers.parse_prometheus(body.decode())
    return helpers.metric_sum(m, "sluice_websocket_tunnels_active")


def open_h1_tunnels(port, n, deadline, batch=250):
    """|n| HTTP/1.1 upgrades, |batch| in flight at a time; returns the
    sockets (each tunnel echoed one message)."""
    socks = []
    while len(socks) < n:
        deadline.check("opening h1 tunnels (%d open)" % len(socks))
        group = []
        for _ in range(min(batch, n - len(socks))):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            key = new_key()
            s.sendall(upgrade_request("/ws", key=key))
            group.append((s, key))
        for s, key in group:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = s.recv(4096)
                if not data:
                    raise RuntimeError("upgrade: connection closed after %r" % buf[:200])
                buf += data
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            if not head.startswith("HTTP/1.1 101") or accept_for(key) not in head:
                raise RuntimeError("upgrade refused: %r" % head[:300])
        for s, _ in group:  # prove each tunnel carries bytes, then leave it idle
            s.sendall(encode_frame(b"hi", OP_TEXT))
        for s, _ in group:
            got = b""
            while len(got) < 4:
                data = s.recv(16)
                if not data:
                    raise RuntimeError("tunnel closed before its echo")
                got += data
            if got != b"\x81\x02hi":
                raise RuntimeError("bad echo %r" % got)
        socks.extend(s for s, _ in group)
    return socks


def open_h2_tunnels(port, n, per_conn, deadline):
    """|n| RFC 8441 streams, |per_conn| per HTTP/2 connection; returns the
    clients (each stream echoed one message)."""
    clients = []
    opened = 0
    while opened < n:
        deadline.check("opening h2 tunnels (%d open)" % opened)
        k = min(per_conn, n - opened)
        c = H2WSClient(port, timeout=30)
        c.wait_connect_protocol(10)
        sids = [c.open_ws("/ws", wait=False) for _ in range(k)]
        for sid in sids:
            st = c.wait_head(sid, max(1.0, deadline.left()))
            if st.status != 200:
                raise RuntimeError("extended CONNECT answered %s" % st.status)
        for sid in sids:
            c.send_ws(sid, b"hi", OP_TEXT)
        for sid in sids:
            msg = c.recv_message(sid, max(1.0, deadline.left()))
            if msg != (OP_TEXT, b"hi"):
                raise RuntimeError("bad echo on stream %d: %r" % (sid, msg))
        clients.append(c)
        opened += k
    return clients


def fmt_mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tunnels", type=int, default=10000)
    ap.add_argument("--streams-per-conn", type=int, default=50)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before the reading")
    ap.add_argument("--timeout", type=float, default=300.0, help="overall time limit (s)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit("no sluice binary at %s (make build/sluice)" % args.binary)
    raise_nofile()  # this process holds the client sockets
    deadline = Deadline(args.timeout)
    workdir = tempfile.mkdtemp(prefix="sluice-ws-bench-")
    up = sl = None
    socks, clients = [], []
    try:
        up, up_port = start_upstream(workdir, deadline)
        sl, port, admin_port = start_sluice(args.binary, workdir, up_port, args.tunnels,
                                            args.workers, deadline)
        time.sleep(0.5)
        before = proc_status(sl.pid)
        log("sluice pid %d ready: VmRSS %s, RssAnon %s" % (
            sl.pid, fmt_mib(before["VmRSS"]), fmt_mib(before["RssAnon"])))
        n_h1 = args.tunnels // 2
        n_h2 = args.tunnels - n_h1
        t0 = time.monotonic()
        socks = open_h1_tunnels(port, n_h1, deadline)
        log("%d h1 tunnels open (%.1fs)" % (len(socks), time.monotonic() - t0))
        time.sleep(args.settle)
        mid = proc_status(sl.pid)
        t1 = time.monotonic()
        clients = open_h2_tunnels(port, n_h2, args.streams_per_conn, deadline)
        log("%d h2 tunnels open on %d connections (%.1fs)" % (
            n_h2, len(clients), time.monotonic() - t1))
        time.sleep(args.settle)
        active = tunnels_active(admin_port)
        after = proc_status(sl.pid)
        fds = len(os.listdir("/proc/%d/fd" % sl.pid))
        res = {
            "tunnels": args.tunnels, "h1_tunnels": n_h1, "h2_tunnels": n_h2,
            "h2_connections": len(clients), "workers": args.workers,
            "tunnels_active_metric": active, "sluice_fds": fds,
            "vmrss_before_kib": before["VmRSS"], "vmrss_after_kib": after["VmRSS"],
            "rssanon_before_kib": before["RssAnon"], "rssanon_after_kib": after["RssAnon"],
            "vmhwm_kib": after["VmHWM"],
            "vmrss_after_h1_kib": mid["VmRSS"], "rssanon_after_h1_kib": mid["RssAnon"],
            "per_h1_tunnel_rssanon_bytes": (mid["RssAnon"] - before["RssAnon"]) * 1024
            / max(1, n_h1),
            "per_h2_tunnel_rssanon_bytes": (after["RssAnon"] - mid["RssAnon"]) * 1024
            / max(1, n_h2),
            "per_tunnel_vmrss_bytes": (after["VmRSS"] - before["VmRSS"]) * 1024 / args.tunnels,
            "per_tunnel_rssanon_bytes": (after["RssAnon"] - before["RssAnon"]) * 1024
            / args.tunnels,
            "upstream_vmrss_kib": proc_status(up.pid)["VmRSS"],
        }
        print("idle WebSocket tunnels: %d (%d h1, %d h2 on %d connections), %d workers"
              % (args.tunnels, n_h1, n_h2, len(clients), args.workers))
        print("  sluice_websocket_tunnels_active  %d" % active)
        print("  sluice open fds                  %d" % fds)
        print("  VmRSS   before %10s   after %10s   +%.0f B/tunnel" % (
            fmt_mib(before["VmRSS"]), fmt_mib(after["VmRSS"]), res["per_tunnel_vmrss_bytes"]))
        print("  RssAnon before %10s   after %10s   +%.0f B/tunnel" % (
            fmt_mib(before["RssAnon"]), fmt_mib(after["RssAnon"]),
            res["per_tunnel_rssanon_bytes"]))
        print("  RssAnon per h1 tunnel %.0f B, per h2 tunnel %.0f B" % (
            res["per_h1_tunnel_rssanon_bytes"], res["per_h2_tunnel_rssanon_bytes"]))
        print("  whole process %s resident with %d tunnels (target: 10,000 under 200 MiB)"
              % (fmt_mib(after["VmRSS"]), args.tunnels))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
        return 0
    finally:
        for s in socks:
            s.close()
        for c in clients:
            c.close()
        rc = stop_proc(sl)
        if rc not in (None, 0):
            log("sluice exited with %s" % rc)
        stop_proc(up)


if __name__ == "__main__":
    sys.exit(main())
