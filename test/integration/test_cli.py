"""Command line (SPEC §2): exit codes 0 ok, 1 invalid configuration or usage,
2 runtime failure; configuration errors as FILE:LINE:COL: message."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from helpers import H1Conn, _sanitizer_env, reserve_port, run_cli, sanitizer_report

GOOD = """\
listeners:
  - name: public
    address: "127.0.0.1:${PORT}"
    timeouts: { request_header: 1s, idle: 60s }
admin: { address: "127.0.0.1:${ADMIN_PORT}" }
upstreams:
  identity:
    address: "127.0.0.1:${UPSTREAM_PORT}"
    timeouts: { connect: 1s, response: 2s, idle: 60s }
routes:
  - name: default
    match: { path_prefix: "/" }
    upstream: identity
drain_timeout: 5s
"""


def write(tmp_path, text, name="sluice.yaml", port=18080, admin=19901, upstream=18081):
    text = (text.replace("${PORT}", str(port)).replace("${ADMIN_PORT}", str(admin))
            .replace("${UPSTREAM_PORT}", str(upstream)))
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def replace_line(text, lineno, new):
    lines = text.split("\n")
    lines[lineno - 1] = new
    return "\n".join(lines)


def error_locations(stderr, path):
    """[(line, col, message)] of every `FILE:LINE:COL: message` for |path|
    (or its base name) in |stderr|; fails if there is none."""
    lines = []
    for line in stderr.splitlines():  # plain text (check) or JSON log lines (run)
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "where" in obj:
            line = "%s: %s" % (obj["where"], obj.get("error") or obj.get("msg"))
        lines.append(line)
    pat = r"(?:%s|%s):(\d+):(\d+): ?(.*)" % (re.escape(path), re.escape(os.path.basename(path)))
    found = [(int(l), int(c), m) for l, c, m in re.findall(pat, "\n".join(lines))]
    assert found, "no %s:LINE:COL: in stderr:\n%s" % (path, stderr)
    return found


def error_at(stderr, path, line, col=None):
    """The message of the error reported at |line| (and |col|)."""
    for l, c, m in error_locations(stderr, path):
        if l == line and (col is None or c == col):
            return m
    raise AssertionError("no error at %s:%d:%s in stderr:\n%s" % (path, line, col or "*", stderr))


def _git_commit():
    """The checkout's commit as the Makefile names it, or None outside git."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@pytest.mark.parametrize("arg", ["version", "--version", "-V"])
def test_version(sluice_bin, arg):
    p = run_cli([arg], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    m = re.match(r"sluice (\d+\.\d+\.\d+) \(commit (\S+); nghttp2 [\d.]+, OpenSSL ", p.stdout)
    assert m, p.stdout
    commit = _git_commit()
    if commit:  # built from this checkout (possibly with local changes: -dirty)
        assert m.group(2).split("-")[0] == commit, (m.group(2), commit)


def test_sleep_verb(sluice_bin):
    """The runtime image's preStop hook: `sluice sleep N` waits N seconds and
    exits 0; anything else is a usage error."""
    t0 = time.monotonic()
    p = run_cli(["sleep", "1"], binary=sluice_bin)
    assert p.returncode == 0 and 1.0 <= time.monotonic() - t0 < 10, p.stderr
    for bad in (["sleep"], ["sleep", "x"], ["sleep", "-1"], ["sleep", "3601"], ["sleep", "1", "2"]):
        p = run_cli(bad, binary=sluice_bin)
        assert p.returncode == 1 and "0 to 3600" in p.stderr, (bad, p.stderr)


@pytest.mark.parametrize("arg", ["help", "--help", "-h"])
def test_help_lists_the_verbs(sluice_bin, arg):
    p = run_cli([arg], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    for verb in ("run", "check", "explain", "version"):
        assert re.search(r"^  %s  " % verb, p.stdout, re.M), (verb, p.stdout)
    assert "exit codes" in p.stdout


def test_no_arguments_is_usage_error(sluice_bin):
    p = run_cli([], binary=sluice_bin)
    assert p.returncode == 1
    assert "usage" in (p.stdout + p.stderr).lower()


@pytest.mark.parametrize("args", [["frobnicate"], ["check"], ["run", "--bogus-flag"],
                                  ["check", "-c"]], ids=["unknown-command", "check-without-c",
                                                         "unknown-flag", "c-without-file"])
def test_usage_errors(sluice_bin, args):
    p = run_cli(args, binary=sluice_bin)
    assert p.returncode == 1, (p.returncode, p.stderr)


def test_check_good_config(sluice_bin, tmp_path):
    p = run_cli(["check", "-c", write(tmp_path, GOOD)], binary=sluice_bin)
    assert p.returncode == 0, p.stderr


def test_check_print_round_trips(sluice_bin, tmp_path):
    p = run_cli(["check", "-c", write(tmp_path, GOOD), "--print"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert "listeners" in p.stdout and "public" in p.stdout and "identity" in p.stdout
    normalised = tmp_path / "normalised.yaml"
    normalised.write_text(p.stdout)
    p2 = run_cli(["check", "-c", str(normalised), "--print"], binary=sluice_bin)
    assert p2.returncode == 0, p2.stderr
    assert p2.stdout == p.stdout, "normalised output is not a fixed point"


def test_bad_yaml_syntax(sluice_bin, tmp_path):
    path = write(tmp_path, replace_line(GOOD, 4, "    timeouts: { request_header: 1s, idle: 60s"))
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    assert any(4 <= l <= 6 for l, _, _ in error_locations(p.stderr, path)), p.stderr


def test_unknown_key_with_did_you_mean(sluice_bin, tmp_path):
    path = write(tmp_path, replace_line(GOOD, 3, '    adress: "127.0.0.1:18080"'))
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    msg = error_at(p.stderr, path, 3, 5)
    assert "did you mean" in msg.lower() and "address" in msg, msg


@pytest.mark.parametrize("lineno,text,needle", [
    (4, "    timeouts: { request_header: 10 parsecs, idle: 60s }", "request_header"),
    (4, "    max_connections: lots", "max_connections"),
    (13, "    upstream: nosuch", "nosuch"),
    (3, '    address: "127.0.0.1:99999"', "99999"),
    (14, "drain_timeout: -5s", "drain_timeout"),
], ids=["bad-duration", "wrong-type", "undefined-upstream", "bad-port", "negative-duration"])
def test_invalid_values_are_located(sluice_bin, tmp_path, lineno, text, needle):
    path = write(tmp_path, replace_line(GOOD, lineno, text))
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1, p.stderr
    assert needle in error_at(p.stderr, path, lineno)


def test_error_in_drop_in_names_the_drop_in(sluice_bin, tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "10-emergency.yaml").write_text("blocklist:\n  firmwar:\n    - versions: \">=1.0.0\"\n")
    path = write(tmp_path, GOOD + "include: \"%s\"\n" % d)
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1
    drop_in = str(d / "10-emergency.yaml")
    assert "firmwar" in error_at(p.stderr, drop_in, 2)


def test_missing_config_file(sluice_bin, tmp_path):
    missing = str(tmp_path / "nope.yaml")
    p = run_cli(["check", "-c", missing], binary=sluice_bin)
    assert p.returncode in (1, 2)
    assert "nope.yaml" in p.stderr


def _held_listener():
    r = reserve_port()
    r.release()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", r.port))
    s.listen(1)
    return s, r.port


@pytest.mark.parametrize("which", ["listener", "admin"])
def test_run_with_port_in_use_exits_2(sluice_bin, tmp_path, which):
    held, port = _held_listener()
    try:
        free = reserve_port()
        free.release()
        kw = {"port": port, "admin": free.port} if which == "listener" else \
             {"port": free.port, "admin": port}
        path = write(tmp_path, GOOD, **kw)
        p = run_cli(["run", "-c", path, "--workers", "1"], binary=sluice_bin, timeout=20)
        assert p.returncode == 2, (p.returncode, p.stderr)
        assert str(port) in p.stderr
    finally:
        held.close()


def test_run_with_missing_certificate_exits_2(sluice_bin, tmp_path):
    r = reserve_port()
    r.release()
    a = reserve_port()
    a.release()
    text = GOOD.replace("    timeouts: { request_header: 1s, idle: 60s }\n",
                        "    timeouts: { request_header: 1s, idle: 60s }\n"
                        "    tls: { certificate: \"%s/missing.crt\", private_key: \"%s/missing.key\" }\n"
                        % (tmp_path, tmp_path), 1)
    path = write(tmp_path, text, port=r.port, admin=a.port)
    p = run_cli(["run", "-c", path, "--workers", "1"], binary=sluice_bin, timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "missing.crt" in p.stderr


def test_run_with_invalid_config_exits_1(sluice_bin, tmp_path):
    path = write(tmp_path, replace_line(GOOD, 3, '    adress: "127.0.0.1:18080"'))
    p = run_cli(["run", "-c", path, "--workers", "1"], binary=sluice_bin, timeout=20)
    assert p.returncode == 1
    error_at(p.stderr, path, 3, 5)


@pytest.mark.parametrize("args", [["--log-level", "bogus"], ["--workers", "abc"]])
def test_run_with_bad_flag_values_exits_1(sluice_bin, tmp_path, args):
    p = run_cli(["run", "-c", write(tmp_path, GOOD)] + args, binary=sluice_bin, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)


def test_run_is_the_default_command(start_sluice):
    s = start_sluice(GOOD, subcommand=None, args=["--log-level", "debug"])
    with H1Conn(s.port) as c:
        assert c.request("GET", "/v1/default-cmd").status == 200
    assert s.stop() == 0


def test_run_without_workers_flag(start_sluice):
    s = start_sluice(GOOD, workers=None)
    with H1Conn(s.port) as c:
        assert c.request("GET", "/v1/auto-workers").status == 200
    assert s.stop() == 0


# ---- bounds on what a configuration may cost ----------------------------------------

NODE_LIMIT = 200000  # README "Limits and bad input"


def list_config(items):
    """GOOD with a top-level `x: [a,a,...]` of |items| items. GOOD parses to
    45 nodes (its root mapping included), the key and the list add 2, so
    LIST_FIT items reach exactly the node bound."""
    return GOOD + "x: [" + ",".join(["a"] * items) + "]\n"


LIST_FIT = NODE_LIMIT - 47


def check_with_rusage(binary, path, tmp_path):
    """Runs `sluice check -c |path|`; returns (exit code, stderr, peak RSS in
    KiB, wall seconds). The peak is the child's own (wait4), not that of
    every child this test process ever had."""
    err_path = tmp_path / "check.stderr"
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([binary, "check", "-c", path], stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL, env=_sanitizer_env())
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        took = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    rep = sanitizer_report(stderr)
    assert not rep, rep
    return proc.returncode, stderr, ru.ru_maxrss, took


def test_check_huge_list_fails_fast_with_bounded_memory(sluice_bin, tmp_path):
    """Two million list items in 3.9 MiB (under the 4 MiB a file may have)
    cost 723 MiB before the node bound. The loader now stops at the item
    that crosses the bound, so the big file can cost no more than a file
    holding exactly the bound, give or take the bytes it has more (the file
    is read whole: 1x its size) and 8 MiB of allocator slack; and no more
    time than that file, 4x plus a second, for scheduling noise."""
    fit_path = write(tmp_path, list_config(LIST_FIT), name="fit.yaml")
    big_text = list_config(2000000)
    assert len(big_text) < 4 << 20
    big_path = write(tmp_path, big_text, name="big.yaml")

    rc, err, rss_fit, t_fit = check_with_rusage(sluice_bin, fit_path, tmp_path)
    assert rc == 1
    # exactly at the bound: parsed whole, rejected by the schema only
    assert "too many nodes" not in err, err
    assert "unknown key 'x'" in error_at(err, fit_path, 15, 1)

    rc, err, rss_big, t_big = check_with_rusage(sluice_bin, big_path, tmp_path)
    assert rc == 1
    extra_kib = (len(big_text) - os.path.getsize(fit_path)) // 1024
    bound = rss_fit + extra_kib + 8 * 1024
    assert rss_big <= bound, "peak RSS %d KiB, bound %d KiB (%d at the node bound)" % (
        rss_big, bound, rss_fit)
    assert t_big <= 4 * t_fit + 1.0, (t_big, t_fit)
    # item i (from 0) of line 15 is at column 5 + 2i; item LIST_FIT is over
    msg = error_at(err, big_path, 15, 5 + 2 * LIST_FIT)
    assert msg.startswith("too many nodes (limit %d" % NODE_LIMIT), msg
