"""Harness for sluice integration tests (and deploy/demo.py).

Plain standard library (h2 is imported lazily), no pytest: the demo imports
this module too. Every wait here is bounded and every process is stopped by
the PID this module started.

  Ports        reserve_port() -> PortReservation (held until .release())
  Processes    Upstream (test/integration/upstream.py), Sluice (the binary)
  Config       base_config(), to_yaml()
  Certificates make_cert(dir, "ecdsa"|"rsa") -> CertPair
  Clients      H1Conn (raw sockets), curl(), H2Client (python3-h2), run_h2load()
  Metrics      parse_prometheus(), metric_sum()
"""

import atexit
import copy
import errno
import hashlib
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UPSTREAM_PY = os.path.join(HERE, "upstream.py")
PYTHON = "/usr/bin/python3"  # the Debian interpreter with python3-h2 & co.

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")

MiB = 1024 * 1024


class HarnessError(Exception):
    """A process of the harness did not start or stop as it should."""


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Polls |pred| until it returns a true value (returned) or |timeout|
    seconds pass (raises TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def tcp_sockets(local_port=None, remote_port=None, established=True):
    """The IPv4 TCP sockets on this host (/proc/net/tcp) whose local and
    remote ports are the ones given (None: any), as (local_port,
    remote_port, tx_queue, rx_queue) tuples; only ESTABLISHED ones unless
    |established| is False."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if established and fields[3] != "01":
                continue
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            if (local_port is None or lport == local_port) and \
                    (remote_port is None or rport == remote_port):
                tx, rx = fields[4].split(":")
                out.append((lport, rport, int(tx, 16), int(rx, 16)))
    return out


def tcp_rx_queues(local_port=None, remote_port=None):
    """Bytes waiting in the receive queue of each established IPv4 TCP
    socket whose local (or remote) port is the one given, sorted."""
    return sorted(s[3] for s in tcp_sockets(local_port, remote_port))


def proc_status(pid):
    """{"VmRSS": KiB, "RssAnon": KiB, "VmHWM": KiB, ...} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                out[k] = int(v[0])
    return out


def wait_tcp_stalled(timeout=10.0, what="the transfer to stall", **ports):
    """Waits until the receive queues tcp_rx_queues(**ports) hold bytes and
    do not move across three looks 100 ms apart: the reader has stopped
    reading (back-pressure reached), a state, not a time. A reader that
    keeps reading leaves queues that change, then empty ones. Returns the
    queues."""
    looks = []

    def stalled():
        looks.append(tcp_rx_queues(**ports))
        del looks[:-3]
        q = looks[-1]
        return q if len(looks) == 3 and q and q[-1] > 0 and looks.count(q) == 3 else None

    return wait_for(stalled, timeout, interval=0.1, what=what)


# ---- ports -----------------------------------------------------------------
#
# A port is picked below the kernel's ephemeral range (so that no outgoing
# connection of a test client or of sluice itself can take it as its local
# port), claimed with a lock file shared by every test process on the host
# (so that parallel runs never pick the same one), and held bound until just
# before the process that needs it starts.

PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "sluice-test-ports")
_my_locks = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_lock(port):
    path = os.path.join(PORT_LOCK_DIR, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and _pid_alive(owner):
                return False
            try:  # stale: its owner is gone
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _my_locks.add(path)
        return True
    return False


@atexit.register
def _drop_locks():
    for path in list(_my_locks):
        try:
            os.unlink(path)
        except OSError:
            pass
        _my_locks.discard(path)


class PortReservation:
    """A TCP port on 127.0.0.1 bound by this process until release()."""

    def __init__(self, port, sock):
        self.port = port
        self._sock = sock

    def release(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self):
        return "PortReservation(%d%s)" % (self.port, "" if self._sock else ", released")


def reserve_port(host="127.0.0.1"):
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    hi = _ephemeral_low() - 1
    lo = 10000
    for _ in range(500):
        if hi - lo < 1000:
            break
        port = random.randint(lo, hi)
        if not _claim_lock(port):
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))  # no SO_REUSEADDR: refuses TIME_WAIT too
        except OSError:
            s.close()
            continue
        return PortReservation(port, s)
    # Fallback: let the kernel pick (ephemeral range).
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    _claim_lock(port)
    return PortReservation(port, s)


def closed_port():
    """A port with nothing listening on it (claimed, then released)."""
    r = reserve_port()
    r.release()
    return r.port


class Blackhole:
    """A port where TCP connects hang (SYNs dropped): a listener with a full
    accept queue that never accepts. For connect-timeout tests."""

    def __init__(self):
        self._ls = socket.socket()
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(0)
        self.port = self._ls.getsockname()[1]
        self._held = []
        for _ in range(4):  # fill the accept queue (backlog 0 holds one or two)
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._held.append(c)
        time.sleep(0.05)

    def close(self):
        for c in self._held:
            c.close()
        self._ls.close()


# ---- processes -------------------------------------------------------------

def _read_line_bounded(proc, timeout):
    """Reads one line of |proc|.stdout within |timeout| seconds, or None."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        c = os.read(fd, 1)
        if not c:
            break
        buf += c
        if c == b"\n":
            return buf.decode(errors="replace")
    return None


def read_text(path):
    """A process's captured output so far ("" when there is none yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _stop_pid(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signals the process we started and waits; SIGKILL after |timeout|.
    Returns (returncode, killed)."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(10), True


class Upstream:
    """test/integration/upstream.py in a child process."""

    def __init__(self, workdir=None, args=(), host="127.0.0.1"):
        self.host = host
        self.args = list(args)
        self.workdir = workdir or tempfile.mkdtemp(prefix="sluice-upstream-")
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(self.workdir, "upstream-%d.stderr" % id(self))

    def start(self, timeout=10):
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([PYTHON, UPSTREAM_PY, "--host", self.host, "--port", "0"]
                                     + self.args, stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        line = _read_line_bounded(self.proc, timeout)
        if not line or not line.startswith("READY "):
            self.stop()
            raise HarnessError("upstream did not start: %r\n%s" % (line, self.stderr()))
        self.port = int(line.split()[1])
        return self

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def url(self, path="/"):
        return "http://%s%s" % (self.address, path)

    def _json(self, method, path):
        c = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            c.request(method, path)
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def stats(self):
        """{"total", "paths": {path: n}, "connections", "open_connections",
        "inflight", "max_inflight", "errors", "error_reasons", ...}"""
        return self._json("GET", "/stats")

    def reset_stats(self):
        return self._json("POST", "/stats/reset")

    def seen(self, path):
        return self.stats()["paths"].get(path, 0)

    def stderr(self):
        return read_text(self.stderr_path)

    def stop(self):
        if self.proc is None:
            return None
        rc, _ = _stop_pid(self.proc, signal.SIGTERM, 5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()
        self.proc = None
        return rc

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


class Standin:
    """build/standin, the stand-in identity API of the storm demo
    (test/tools/fleetsim/standin.c), on a free loopback port; its JSON lines
    go to |stats| (.lines() reads them back). For deploy/demo.py and
    test_standin.py."""

    BINARY = os.path.join(REPO, "build", "standin")

    def __init__(self, workdir, args=(), name="standin"):
        self.workdir, self.args, self.name = workdir, list(args), name
        self.stats = os.path.join(workdir, "%s.jsonl" % name)
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self.proc = None

    def start(self, timeout=10.0):
        if not os.access(self.BINARY, os.X_OK):
            raise HarnessError("%s missing: make build/standin" % self.BINARY)
        r = reserve_port()
        r.release()
        self.port = r.port
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([self.BINARY, "--listen", "127.0.0.1:%d" % self.port,
                                          "--stats", self.stats] + self.args,
                                         stdout=subprocess.DEVNULL, stderr=err)

        def listening():
            if self.proc.poll() is not None:
                raise HarnessError("standin exited %d: %s"
                                   % (self.proc.returncode, read_text(self.stderr_path)))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, timeout, what="standin to listen")
        self.t0 = time.monotonic()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def lines(self):
        return [json.loads(l) for l in read_text(self.stats).splitlines() if l.strip()]

    def stop(self):
        """SIGTERM (standin writes its summary line and exits 0): (rc, killed)."""
        if self.proc is None:
            return None, False
        return _stop_pid(self.proc)


# ---- configuration ---------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted scalar


def _yaml_key(k):
    k = str(k)
    return k if _PLAIN_KEY.match(k) else json.dumps(k)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (no PyYAML needed)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, _yaml_key(k), to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, _yaml_key(k), "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, _yaml_key(k), _yaml_scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                out.append(pad + "- " + inner[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(v) if not isinstance(v, (dict, list))
                                         else ("{}" if isinstance(v, dict) else "[]")))
        return "".join(out)
    return pad + _yaml_scalar(obj) + "\n"


def base_config(**overrides):
    """The standard test configuration (SPEC §3): one cleartext listener
    "public", an admin listener and one upstream "identity" behind a catch-all
    route "default". Addresses left out are filled in by Sluice (free ports,
    the upstream it is given). Top-level keys in |overrides| replace the
    defaults."""
    cfg = {
        "listeners": [{"name": "public", "timeouts": {"request_header": "1s", "idle": "60s"}}],
        "admin": {},
        "upstreams": {"identity": {"timeouts": {"connect": "1s", "response": "5s", "idle": "60s"}}},
        "routes": [{"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"}],
        "drain_timeout": "5s",
    }
    cfg.update(overrides)
    return cfg


# ---- certificates ----------------------------------------------------------

class CertPair:
    def __init__(self, kind, cert, key):
        self.kind = kind
        self.cert = cert
        self.key = key

    def client_context(self, alpn=("h2", "http/1.1")):
        """A client SSLContext that trusts this (self-signed) certificate."""
        ctx = ssl.create_default_context(cafile=self.cert)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx

    def __repr__(self):
        return "CertPair(%s)" % self.kind


def make_cert(directory, kind):
    """Self-signed certificate for 127.0.0.1/localhost with the openssl CLI.
    |kind| is "ecdsa" (P-256) or "rsa" (2048)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, "%s.crt" % kind)
    key = os.path.join(directory, "%s.key" % kind)
    newkey = {"ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
              "rsa": ["-newkey", "rsa:2048"]}[kind]
    cmd = (["openssl", "req", "-x509", "-nodes", "-days", "7", "-sha256", "-subj",
            "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE", "-keyout", key, "-out", cert]
           + newkey)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise HarnessError("openssl req failed: %s" % p.stderr.decode(errors="replace"))
    return CertPair(kind, cert, key)


# ---- sluice ----------------------------------------------------------------

def find_sluice_bin():
    """$SLUICE_BIN, else build/san/sluice, else build/sluice (or None)."""
    env = os.environ.get("SLUICE_BIN")
    if env:
        return env
    for p in ("build/san/sluice", "build/sluice"):
        full = os.path.join(REPO, p)
        if os.access(full, os.X_OK):
            return full
    return None


def sanitizer_report(text):
    """The sanitizer report in |text| (from its first marker), or None."""
    idx = [text.find(m) for m in SANITIZER_MARKERS if m in text]
    if not idx:
        return None
    start = text.rfind("\n", 0, min(idx)) + 1
    return text[start:start + 8000]


def parse_log_lines(text):
    """Parses JSON-line logs; raises AssertionError on a line that is not a
    JSON object with ts/level/msg (sanitizer reports are reported as such)."""
    rep = sanitizer_report(text)
    if rep:
        raise AssertionError("sanitizer report on sluice's stderr:\n" + rep)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError("stderr line %d is not JSON: %r" % (n, line[:300]))
        if not isinstance(obj, dict) or not {"ts", "level", "msg"} <= obj.keys():
            raise AssertionError("stderr line %d lacks ts/level/msg: %r" % (n, line[:300]))
        out.append(obj)
    return out


def _sanitizer_env(env=None):
    e = dict(os.environ if env is None else env)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return e


def run_cli(args, timeout=20, binary=None, cwd=None, env=None):
    """Runs `sluice ARGS` to completion; returns CompletedProcess with text
    stdout/stderr. Fails on a sanitizer report."""
    binary = binary or find_sluice_bin()
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd, env=_sanitizer_env(env))
    p.stdout = p.stdout.decode(errors="replace")
    p.stderr = p.stderr.decode(errors="replace")
    rep = sanitizer_report(p.stderr)
    if rep:
        raise AssertionError("sanitizer report from sluice %s:\n%s" % (" ".join(args), rep))
    return p


class Sluice:
    """The sluice binary running on a configuration written by the test.

    |config| is a dict (see base_config(); listeners without "address" get a
    free port, a missing/empty admin gets one, upstreams without "address"
    point at |upstream|), or YAML text with placeholders ${PORT}, ${PORT2},
    ${PORT3}, ${ADMIN_PORT}, ${UPSTREAM_PORT}, ${DIR}. The admin listener is
    required: readiness is GET /readyz == 200.
    """

    def __init__(self, workdir, config, upstream=None, workers=2, binary=None, args=(),
                 env=None, config_name="sluice.yaml", subcommand="run"):
        self.binary = binary or find_sluice_bin()
        if not self.binary or not os.access(self.binary, os.X_OK):
            raise HarnessError("sluice binary not found (set SLUICE_BIN or make build/san/sluice): %r"
                               % self.binary)
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, config_name)
        self.stderr_path = os.path.join(self.workdir, "sluice.stderr")
        self.stdout_path = os.path.join(self.workdir, "sluice.stdout")
        self.workers = workers
        self.subcommand = subcommand  # None: `sluice -c FILE` (run is the default)
        self.extra_args = list(args)
        self.env = env
        self.proc = None
        self.returncode = None
        self.stopped = False  # stop() was called (by the test or teardown)
        self.ports = {}      # listener name -> port
        self.tls = {}        # listener name -> bool
        self.admin_port = None
        self._reservations = []
        self.upstream_port = (upstream.port if isinstance(upstream, Upstream) else upstream)
        self.write_config(config)

    # -- configuration --

    def _reserve(self):
        r = reserve_port()
        self._reservations.append(r)
        return r.port

    def write_config(self, config):
        """(Re)writes the configuration file; ports already assigned to a
        listener name are kept, so a rewrite + reload() keeps the sockets."""
        if isinstance(config, str):
            text = config
            subs = {"${DIR}": self.workdir}
            if self.upstream_port is not None:
                subs["${UPSTREAM_PORT}"] = str(self.upstream_port)
            for i, ph in enumerate(("${PORT}", "${PORT2}", "${PORT3}")):
                key = "#%d" % i
                if ph in text:
                    if key not in self.ports:
                        self.ports[key] = self._reserve()
                    subs[ph] = str(self.ports[key])
            if "${ADMIN_PORT}" in text:
                if self.admin_port is None:
                    self.admin_port = self._reserve()
                subs["${ADMIN_PORT}"] = str(self.admin_port)
            for k, v in subs.items():
                text = text.replace(k, v)
            self._first_listener = "#0"
        else:
            cfg = copy.deepcopy(config)
            for i, lst in enumerate(cfg.get("listeners") or []):
                name = lst.get("name", "#%d" % i)
                if "address" not in lst:
                    if name not in self.ports:
                        self.ports[name] = self._reserve()
                    lst["address"] = "127.0.0.1:%d" % self.ports[name]
                else:
                    self.ports[name] = int(str(lst["address"]).rsplit(":", 1)[1])
                self.tls[name] = bool(lst.get("tls"))
                if i == 0:
                    self._first_listener = name
            adm = cfg.get("admin")
            if adm is None or (isinstance(adm, dict) and "address" not in adm):
                if self.admin_port is None:
                    self.admin_port = self._reserve()
                cfg["admin"] = dict(adm or {}, address="127.0.0.1:%d" % self.admin_port)
            else:
                self.admin_port = int(str(adm["address"]).rsplit(":", 1)[1])
            for up in (cfg.get("upstreams") or {}).values():
                if isinstance(up, dict) and "address" not in up and self.upstream_port is not None:
                    up["address"] = "127.0.0.1:%d" % self.upstream_port
            text = to_yaml(cfg)
        self.config_text = text
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)  # atomic, like a ConfigMap swap
        return text

    # -- lifecycle --

    @property
    def port(self):
        return self.ports[self._first_listener]

    def url(self, path="/", listener=None, host="127.0.0.1"):
        name = listener or self._first_listener
        scheme = "https" if self.tls.get(name) else "http"
        return "%s://%s:%d%s" % (scheme, host, self.ports[name], path)

    def admin_url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    def command(self):
        cmd = [self.binary] + ([self.subcommand] if self.subcommand else [])
        cmd += ["-c", self.config_path]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        return cmd + self.extra_args

    def start(self, wait_ready=True, timeout=10.0):
        for r in self._reservations:
            r.release()
        self._reservations = []
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     env=_sanitizer_env(self.env))
        self.pid = self.proc.pid
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._finish()
                raise HarnessError("sluice exited with %d before it was ready\n--- stderr:\n%s"
                                   % (self.returncode, self.stderr_text()[-6000:]))
            try:
                status, _, _ = self.admin_get("/readyz", timeout=1)
                if status == 200:
                    return
                last = "readyz %d" % status
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        self.kill()
        raise HarnessError("sluice not ready after %.0fs (last: %s)\n--- stderr:\n%s"
                           % (timeout, last, self.stderr_text()[-6000:]))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code (raises TimeoutError)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("sluice (pid %d) still running after %.1fs" % (self.proc.pid, timeout))
        self._finish()
        return self.returncode

    def _finish(self):
        self.returncode = self.proc.returncode
        for f in (self._err, self._out):
            if not f.closed:
                f.close()

    def stop(self, sig=signal.SIGTERM, timeout=30.0, check=True):
        """Sends |sig| (SIGTERM: drain), waits up to |timeout| s and returns the
        exit code. With |check|, fails on a sanitizer report or a stderr line
        that is not a JSON log line."""
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            rc, killed = _stop_pid(self.proc, sig, timeout)
            self._finish()
            if killed:
                raise AssertionError("sluice did not exit %.0fs after %s; killed\n--- stderr:\n%s"
                                     % (timeout, signal.Signals(sig).name, self.stderr_text()[-6000:]))
        else:
            self._finish()
        if check:
            self.check_stderr()
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self._finish()

    def reload(self, wait=True, timeout=5.0):
        """SIGHUP. With |wait|, waits until sluice_config_reloads_total grows
        and returns sluice_config_last_reload_successful (1.0 or 0.0)."""
        before = metric_sum(self.metrics(), "sluice_config_reloads_total") if wait else 0
        self.send_signal(signal.SIGHUP)
        if not wait:
            return None
        wait_for(lambda: metric_sum(self.metrics(), "sluice_config_reloads_total") > before,
                 timeout, what="sluice_config_reloads_total to grow after SIGHUP")
        return metric_sum(self.metrics(), "sluice_config_last_reload_successful")

    # -- output --

    def stderr_text(self):
        return read_text(self.stderr_path)

    def check_stderr(self):
        parse_log_lines(self.stderr_text())

    def logs(self):
        """stderr as a list of JSON objects (see parse_log_lines)."""
        return parse_log_lines(self.stderr_text())

    def wait_log(self, pred, timeout=5.0, what="log line"):
        return wait_for(lambda: next((l for l in self.logs() if pred(l)), None), timeout, what=what)

    # -- admin --

    def admin_get(self, path, timeout=5.0, method="GET", body=None, headers=None, port=None):
        """(status, headers dict lower-case, body bytes) from the admin port
        (or |port|: admin.metrics_address), with request |headers| (a dict)."""
        c = http.client.HTTPConnection("127.0.0.1", port or self.admin_port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def metrics_text(self):
        status, _, body = self.admin_get("/metrics")
        if status != 200:
            raise AssertionError("/metrics answered %d" % status)
        return body.decode()

    def metrics(self):
        """{'name{label="v",...}': value} with labels sorted by name."""
        return parse_prometheus(self.metrics_text())

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop(check=exc[0] is None)


# ---- Prometheus text --------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(s):
    labels = {}
    pos = 0
    while pos < len(s):
        m = _LABEL.match(s, pos)
        if not m:
            raise ValueError("bad label set %r" % s)
        labels[m.group(1)] = m.group(2).encode().decode("unicode_escape")
        pos = m.end()
    return labels


def series_key(name, labels):
    if not labels:
        return name
    return "%s{%s}" % (name, ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)))


def parse_prometheus(text, strict=True):
    """Parses the text exposition format into {series_key: value}. With
    |strict|, every sample must belong to a family announced by # TYPE."""
    out = {}
    types = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("metrics line %d unparseable: %r" % (n, line))
        name, labels = m.group(1), parse_labels(m.group(3) or "")
        if strict:
            fam = name
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and name[:-len(suf)] in types:
                    fam = name[:-len(suf)]
            if fam not in types:
                raise AssertionError("metrics line %d: no # TYPE for %s" % (n, name))
        v = m.group(4)
        out[series_key(name, labels)] = float({"+Inf": "inf", "-Inf": "-inf"}.get(v, v))
    return out


def metric_series(metrics, name, **labels):
    """[(labels dict, value)] of the series of |name| whose labels include |labels|."""
    res = []
    for key, v in metrics.items():
        n, _, rest = key.partition("{")
        if n != name:
            continue
        ls = parse_labels(rest[:-1]) if rest else {}
        if all(ls.get(k) == str(want) for k, want in labels.items()):
            res.append((ls, v))
    return res


def metric_sum(metrics, name, **labels):
    return sum(v for _, v in metric_series(metrics, name, **labels))


# ---- HTTP/1.1 over raw sockets ---------------------------------------------

class H1Response:
    def __init__(self, version, status, reason, headers, body, interim):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(lower-case name, value)]
        self.body = body
        self.interim = interim      # [(status, headers)] of 1xx answers

    def header(self, name, default=None):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "H1Response(%d, %r, %d bytes)" % (self.status, self.headers, len(self.body))


class H1Conn:
    """A raw TCP (or TLS) connection with a strict HTTP/1.1 response reader."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, tls=None, server_hostname="localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self):
        if self.eof:
            raise ConnectionError("connection closed by peer")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ConnectionError("connection closed by peer")
        self.buf += data

    def _line(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("response line longer than %d" % limit)
            self._fill()
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not line.endswith(b"\r\n"):
            raise AssertionError("response line not terminated by CRLF: %r" % line[:100])
        return line[:-2]

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=None):
        """Reads one response head: (version, status, reason, headers)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        line = self._line().decode("latin-1")
        m = re.match(r"^(HTTP/1\.[01]) (\d{3}) ?(.*)$", line)
        if not m:
            raise AssertionError("bad status line %r" % line)
        headers = []
        while True:
            h = self._line()
            if not h:
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep or name != name.strip():
                raise AssertionError("bad response header line %r" % h)
            headers.append((name.lower(), value.strip()))
        return m.group(1), int(m.group(2)), m.group(3), headers

    def read_response(self, method="GET", timeout=None):
        """Reads one response (after any 1xx), body included, framed as
        RFC 9112 §6.3 says (HEAD/204/304 have none)."""
        self.sock.settimeout(timeout or self.timeout)
        interim = []
        while True:
            version, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                interim.append((status, headers))
                continue
            break
        hv = lambda n: [v for k, v in headers if k == n]
        if method == "HEAD" or status in (204, 304) or status == 101:
            body = b""
        elif hv("transfer-encoding"):
            if hv("transfer-encoding")[-1].lower().split(",")[-1].strip() != "chunked":
                raise AssertionError("unexpected transfer-encoding %r" % hv("transfer-encoding"))
            if hv("content-length"):
                raise AssertionError("response has both Content-Length and Transfer-Encoding")
            parts = []
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                parts.append(self._exact(size))
                if self._exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
            body = b"".join(parts)
        elif hv("content-length"):
            cls = set(hv("content-length"))
            if len(cls) != 1:
                raise AssertionError("conflicting Content-Length %r" % cls)
            body = self._exact(int(cls.pop()))
        else:
            while not self.eof:
                try:
                    self._fill()
                except ConnectionError:
                    break
            body, self.buf = self.buf, b""
        return H1Response(version, status, reason, headers, body, interim)

    def request(self, method, path, headers=(), body=None, host="127.0.0.1", timeout=None):
        """Sends one request (Content-Length framing when |body| is given)
        and reads its response."""
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(method, timeout)

    def pending(self, wait=0.2):
        """Bytes that arrive within |wait| s beyond what was read (stray
        body bytes, an unexpected response...)."""
        deadline = time.monotonic() + wait
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                break
            self.buf += data
        return self.buf

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within |timeout| seconds,
        discarding any bytes that arrive first; False if still open."""
        deadline = time.monotonic() + timeout
        if self.eof:
            return True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return True
            if not data:
                self.eof = True
                return True
            self.buf += data


def build_request(method, path, headers=(), body=None, host="127.0.0.1"):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(data, size=16384):
    """|data| in chunked transfer-coding."""
    out = bytearray()
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


# ---- bodies -----------------------------------------------------------------

def pattern_bytes(offset, n):
    """The bytes upstream.py sends for GET /bytes (byte i is i % 251)."""
    import upstream as _up  # test/integration/upstream.py
    return _up.pattern_bytes(offset, n)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def random_bytes(n, seed=1):
    return random.Random(seed).randbytes(n)


# ---- curl --------------------------------------------------------------------

class CurlResult:
    def __init__(self, rc, status, http_version, headers, body, stderr, time_total):
        self.rc = rc
        self.status = status
        self.http_version = http_version  # "1.1", "2"
        self.headers = headers            # [(lower-case name, value)], final response
        self.body = body
        self.stderr = stderr
        self.time_total = time_total

    def header(self, name, default=None):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "CurlResult(rc=%d, status=%s, http/%s, %d bytes, stderr=%r)" % (
            self.rc, self.status, self.http_version, len(self.body), self.stderr[-300:])


def curl(url, *args, timeout=60, check=True):
    """Runs curl on |url| with extra |args|; returns CurlResult. With
    |check|, a non-zero curl exit status raises AssertionError."""
    with tempfile.TemporaryDirectory(prefix="sluice-curl-") as d:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = (["curl", "-sS", "--max-time", str(timeout), "-D", hdr, "-o", body,
                "-w", "%{http_code} %{http_version} %{time_total}"] + list(args) + [url])
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout + 10)
        out = p.stdout.decode().split()
        status, version, ttotal = (int(out[0]), out[1], float(out[2])) if len(out) == 3 else (0, "", 0.0)
        headers = []
        if os.path.exists(hdr):
            with open(hdr, "rb") as f:
                blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
            if blocks:
                for line in blocks[-1].split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    headers.append((k.strip().lower(), v.strip()))
        data = b""
        if os.path.exists(body):
            with open(body, "rb") as f:
                data = f.read()
        res = CurlResult(p.returncode, status, version, headers, data,
                         p.stderr.decode(errors="replace"), ttotal)
    if check and res.rc != 0:
        raise AssertionError("curl %s failed: %r" % (" ".join(cmd), res))
    return res


# ---- HTTP/2 ------------------------------------------------------------------

class H2Stream:
    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = []      # [(name, value)] str
        self.data = bytearray()
        self.trailers = []
        self.ended = False
        self.reset_code = None  # RST_STREAM error code received
        self.informational = []

    @property
    def done(self):
        return self.ended or self.reset_code is not None

    def header(self, name, default=None):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else default

    @property
    def body(self):
        return bytes(self.data)

    def json(self):
        return json.loads(bytes(self.data))

    def __repr__(self):
        return "H2Stream(%d, status=%s, reset=%s, %d bytes)" % (
            self.id, self.status, self.reset_code, len(self.data))


class H2Client:
    """A blocking HTTP/2 client on python3-h2: prior knowledge over TCP, or
    TLS with ALPN h2 (|tls| is an SSLContext). With |validate| False the
    client sends whatever headers it is given (for bad-input tests)."""

    def __init__(self, port, host="127.0.0.1", tls=None, server_hostname="localhost",
                 timeout=10.0, validate=True):
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
        self._ev = h2.events
        self._exc = h2.exceptions
        self.port = port
        self.timeout = timeout
        self.scheme = "https" if tls else "http"
        self.authority = "%s:%d" % (host, port)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
            if self.sock.selected_alpn_protocol() != "h2":
                raise AssertionError("ALPN selected %r, not h2" % self.sock.selected_alpn_protocol())
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self._accept_frames_after_goaway()
        self.conn.initiate_connection()
        self.streams = {}
        self.goaway = None     # h2.events.ConnectionTerminated once received
        self.ping_acks = 0
        self.closed = False
        self.flush()

    def _accept_frames_after_goaway(self):
        """python-h2 treats a received GOAWAY as the end of the connection and
        refuses the frames of the streams that GOAWAY lets finish (RFC 9113
        §6.8: streams up to last_stream_id complete normally). Let the
        connection state machine take them in its CLOSED state."""
        from h2.connection import ConnectionInputs as CI, ConnectionState as CS
        sm = self.conn.state_machine
        table = dict(sm._transitions)
        for (state, inp), (func, _) in sm._transitions.items():
            if state == CS.CLIENT_OPEN and (inp.name.startswith("RECV_") or inp in (
                    CI.SEND_WINDOW_UPDATE, CI.SEND_RST_STREAM, CI.SEND_PING)):
                table.setdefault((CS.CLOSED, inp), (func, CS.CLOSED))
        sm._transitions = table

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self):
        try:
            if not self.closed:
                self.conn.close_connection()
                self.flush()
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    recv_size = 65536

    def _on_data(self, st, e):
        """DATA for stream |st| (None: a stream this client does not track):
        kept and acknowledged at once. Subclasses change what happens."""
        self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        if st is not None:
            st.data += e.data

    def pump(self, timeout):
        """Reads once (up to |timeout| s) and handles the frames. Returns
        False on timeout; sets .closed on EOF."""
        if self.closed:
            raise ConnectionError("HTTP/2 connection closed by peer")
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(self.recv_size)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return True
        ev = self._ev
        for e in self.conn.receive_data(data):
            st = self.streams.get(getattr(e, "stream_id", None))
            if isinstance(e, ev.PingAckReceived):
                self.ping_acks += 1
            elif isinstance(e, ev.ConnectionTerminated):
                self.goaway = e
            elif isinstance(e, ev.DataReceived):
                self._on_data(st, e)
            elif st is None:
                continue
            elif isinstance(e, ev.ResponseReceived):
                st.headers = list(e.headers)
                st.status = int(st.header(":status"))
            elif isinstance(e, ev.InformationalResponseReceived):
                st.informational.append(list(e.headers))
            elif isinstance(e, ev.TrailersReceived):
                st.trailers = list(e.headers)
            elif isinstance(e, ev.StreamEnded):
                st.ended = True
            elif isinstance(e, ev.StreamReset):
                st.reset_code = int(e.error_code)
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def _deadline(self, timeout):
        return time.monotonic() + (timeout if timeout is not None else self.timeout)

    def start(self, method, path, headers=(), body=None, authority=None, raw_headers=None,
              timeout=None):
        """Opens a stream and sends the request (body respecting flow
        control). Returns the stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = H2Stream(sid)
        if raw_headers is not None:
            hdrs = list(raw_headers)
        else:
            hdrs = [(":method", method), (":scheme", self.scheme),
                    (":authority", authority or self.authority), (":path", path)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=not body)
        self.flush()
        if body:
            self.send_body(sid, body, timeout)
        return sid

    def send_body(self, sid, body, timeout=None, end_stream=True):
        deadline = self._deadline(timeout)
        view = memoryview(body)
        off = 0
        st = self.streams[sid]
        while off < len(body):
            if st.done or self.closed:
                return  # answered or reset early: stop sending
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("no flow-control window for stream %d" % sid)
                self.pump(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            chunk = view[off:off + window]
            try:
                self.conn.send_data(sid, chunk.tobytes())
            except self._exc.StreamClosedError:
                return
            off += len(chunk)
            self.flush()
        if end_stream:
            try:
                self.conn.end_stream(sid)
                self.flush()
            except self._exc.StreamClosedError:
                pass

    def wait(self, sid, timeout=None):
        """Pumps until stream |sid| ends or is reset; returns its H2Stream."""
        deadline = self._deadline(timeout)
        st = self.streams[sid]
        while not st.done:
            if self.closed:
                raise ConnectionError("connection closed before stream %d finished (goaway=%r)"
                                      % (sid, self.goaway))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("stream %d not finished after %.1fs" % (sid, timeout or self.timeout))
            self.pump(left)
        return st

    def wait_all(self, sids, timeout=None):
        deadline = self._deadline(timeout)
        return [self.wait(s, max(0.001, deadline - time.monotonic())) for s in sids]

    def request(self, method, path, headers=(), body=None, authority=None, timeout=None):
        return self.wait(self.start(method, path, headers, body, authority, timeout=timeout), timeout)

    def get(self, path, headers=(), timeout=None):
        return self.request("GET", path, headers, timeout=timeout)

    def ping_ok(self, timeout=5.0):
        """Sends PING and waits for its ACK: the connection is alive."""
        before = self.ping_acks
        self.conn.ping(b"sluice!!")
        self.flush()
        deadline = time.monotonic() + timeout
        while self.ping_acks == before and not self.closed and time.monotonic() < deadline:
            self.pump(deadline - time.monotonic())
        return self.ping_acks > before


# ---- h2load ------------------------------------------------------------------

def run_h2load(url, *args, timeout=180):
    """Runs h2load and parses its summary: {"total", "started", "done",
    "succeeded", "failed", "errored", "timeout", "2xx".."5xx", "output"}."""
    p = subprocess.run(["h2load"] + list(args) + [url], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    res = {"rc": p.returncode, "output": out}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        raise AssertionError("cannot parse h2load output:\n" + out)
    for k, v in zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                    m.groups()):
        res[k] = int(v)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        for k, v in zip(("2xx", "3xx", "4xx", "5xx"), m.groups()):
            res[k] = int(v)
    return res


def port_refuses(port, host="127.0.0.1", timeout=1.0):
    """True if a TCP connect to |port| is refused (nothing listening)."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()
    return False


def release_ports(sluice):
    """Releases the ports Sluice.write_config() reserved for listeners that
    appeared after start() (start() releases only those known then), so
    that a reload can bind them."""
    for r in sluice._reservations:
        r.release()
    sluice._reservations = []


def recv_all(sock):
    """Everything |sock| receives until the peer closes (EOF)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def h1_once(port, path, headers=(), timeout=10):
    """One HTTP/1.1 GET on a fresh connection (Connection: close), read to
    EOF. Returns (status, {lowercase header: value}, body, seconds)."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        req = "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" % path
        req += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
        s.sendall(req.encode())
        data = recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split(" ")[1]), hdrs, body, time.monotonic() - t0
