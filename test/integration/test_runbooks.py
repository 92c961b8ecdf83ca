"""Every runbook works verbatim against `make run` (issue 14).

The blocks a runbook fences as ```sh local are its `make run` rehearsal:
they are run here, in order, by one bash, exactly as written, against a
sluice laid out the way `make run` (deploy/demo.py --forever) lays it out:
the example configuration with free ports and `include: demo.d`, the demo's
drop-ins (trusted loopback proxies, a TLS listener, the emergency firmware
block it leaves behind), logs in sluice.stderr beside it. The reader's
terminal is modelled by $D (the directory `make run` prints) and a working
directory that looks like the repository root. The outcomes each runbook
states (status codes, body fields, metric names) are asserted on the output.

Blocks fenced ```sh (kubectl) cannot run here; they are kept consistent with
the chart by hand (deploy/check_manifests.py checks the names they use)."""
import datetime
import os
import re
import subprocess
import sys

import pytest

from helpers import Sluice, make_cert

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "deploy"))
import demo  # noqa: E402  (the configuration make run runs)

BLOCK = re.compile(r"^```sh local\n(.*?)^```$", re.M | re.S)

# What each runbook says its commands print, in the order they print it.
EXPECT = {
    "ban-a-source": [
        r"ban/sluice.yaml: ok",
        r'"admit":false,"status":403,"error":"blocked","policy":"blocklist/client_ip/spam-source-002"',
        r'"admit":false,"status":403,"error":"blocked","policy":"blocklist/client_ip/spam-source-002"',
        r'"admit":false,"status":410,"error":"blocked","policy":"blocklist/device_id/stolen-units"',
        r'"verdict":\{"admit":true',
        r'\{"result":"success"',
        r"HTTP/1.1 403 Forbidden",
        r"retry-after: (6\d|[7-9]\d|1[01]\d|120)\r?\n",
        r"x-ban: spam",
        r'\{"error":"blocked","policy":"blocklist/client_ip/spam-source-002","retry_after":\d+,'
        r'"help_url":"https://status.example.com/incidents/002","contact":"api@example.com"\}',
        r"^200$",
        r'sluice_rejections_total\{route="connect",policy="blocklist/client_ip/spam-source-002",'
        r'reason="blocklist"\} 1',
        r"sluice_config_last_reload_successful 1",
        r'"msg":"configuration reloaded"',
        r'"msg":"rejected".*"policy":"blocklist/client_ip/spam-source-002"',
        r'\{"result":"success"',
        r"^200$",
    ],
    "exempt-a-partner": [
        r"^200 (200 ){9,}429 ",   # the burst of 10, plus what 5/s refills while curl loops
        r"sluice.yaml: ok",
        r'\{"result":"success".*other: allow',
        r"^(200 ){30}$",
        r"^200$",
        r'"policy":"allow/wallet-api","kind":"allow","verdict":"exempt"',
        r'sluice_exemptions_total\{allow="wallet-api",route="connect"\} 31',
        r'\{"result":"success".*other: allow',
    ],
    "emergency-firmware-block": [
        r'"verdict":\{"admit":true',
        r"sluice.yaml: ok",
        r'"admit":false,"status":403,"error":"blocked","policy":"blocklist/firmware/inc-2041"',
        r'"verdict":\{"admit":true',
        r'"verdict":\{"admit":true',
        r'\{"result":"success"',
        r"^403$",
        r"sluice_config_last_reload_successful 1",
        r'sluice_rejections_total\{route="connect",policy="blocklist/firmware/inc-2041",'
        r'reason="blocklist"\} [1-9]',
        r'\{"result":"success"',
        r"^200$",
    ],
    "maintenance-mode": [
        r"sluice.yaml: ok",
        r'"verdict":\{"admit":false,"status":503,"error":"maintenance","policy":"maintenance"',
        r'\{"result":"success"',
        r"HTTP/1.1 503 Service Unavailable",
        r"retry-after: (6\d|[7-9]\d|1[01]\d|120)\r?\n",
        r"x-maintenance: planned",
        r'\{"error":"maintenance","policy":"maintenance","retry_after":\d+,'
        r'"message":"planned maintenance, back at 14:00 UTC"\}',
        r'sluice_rejections_total\{route="connect",policy="maintenance",reason="maintenance"\} 1',
        r'\{"result":"success"',
        r"^200$",
    ],
    "rehearse-a-storm": [
        r'sluice_rejections_total\{route="connect",policy="connect/device_class",'
        r'reason="rate_limit"\} [1-9]',
        r'sluice_circuit_breaker_state\{upstream="identity"\} 0',
        r'"type":"summary","devices":300,.*"errors":0,.*"refused_by":\{"429 rate_limited":\d+\}'
        r'.*"connected":300,',
    ],
    "reconnect-storm": [
        r"^(200 ){10}(429 )+",
        r"retry-after: [12]\r?\n",
        r'\{"error":"rate_limited","policy":"connect/client_ip","retry_after":[12]\}',
        r"sluice.yaml: ok",
        r'\{"result":"success"',
        r'sluice_shadow_rejections_total\{route="connect",policy="connect/device_class",'
        r'reason="rate_limit"\} [1-9]',
        r'\{"result":"success"',
    ],
}


def blocks(name):
    with open(os.path.join(REPO, "deploy", "runbooks", name + ".md")) as f:
        return BLOCK.findall(f.read())


def make_run_layout(d, upstream, binary):
    """The directory `make run` prints as "config": sluice.yaml, demo.d/
    with the demo's drop-ins, sluice.stderr. Returns the started Sluice."""
    demo_d = os.path.join(d, "demo.d")
    os.makedirs(demo_d)
    cert = make_cert(os.path.join(d, "tls"), "ecdsa")
    s = Sluice(d, demo.demo_config_text(), upstream=upstream, binary=binary)
    tls = s._reserve()
    demo.write_file(os.path.join(demo_d, "10-demo.yaml"),
                    demo.DEMO_DROPIN.format(tls_port=tls, cert=cert.cert, key=cert.key))
    expires = (datetime.datetime.now(datetime.timezone.utc)
               + datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    demo.write_file(os.path.join(demo_d, "emergency-firmware.yaml"),
                    demo.EMERGENCY_DROPIN.format(expires=expires))
    return s.start()


def terminal(tmp):
    """A working directory that reads like the repository root."""
    root = os.path.join(tmp, "checkout")
    os.makedirs(root)
    for entry in ("build", "deploy", "scripts", "test", "Makefile"):
        os.symlink(os.path.join(REPO, entry), os.path.join(root, entry))
    return root


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_runbook_local_blocks_run_verbatim(name, upstream, sluice_bin, tmp_path):
    if not os.access(os.path.join(REPO, "build", "sluice"), os.X_OK):
        pytest.fail("the runbooks run ./build/sluice: make build/sluice")
    found = blocks(name)
    assert found, "%s.md has no ```sh local block" % name
    d = str(tmp_path / "sluice-demo-test")
    s = make_run_layout(d, upstream, sluice_bin)
    try:
        script = "".join("echo '@@ block %d'\n%s" % (i, b) for i, b in enumerate(found))
        p = subprocess.run(["bash", "-c", script], cwd=terminal(str(tmp_path)),
                           env=dict(os.environ, D=d), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=90)
        out = p.stdout  # with stderr, where `sluice check` says "ok", as a terminal shows it
        assert p.returncode == 0, "exit %d\n%s" % (p.returncode, out[-3000:])
        assert not re.search(r"command not found|No such file|: line \d+:|^curl: \(", out, re.M), out
        pos = 0
        for rx in EXPECT[name]:
            m = re.compile(rx, re.M).search(out, pos)
            assert m, "%s.md: %r not found after offset %d in:\n%s\n--- all:\n%s" % (name, rx, pos, out[pos:][:4000], out[-6000:])
            pos = m.end()
    finally:
        s.stop()
