"""The emergency-firmware runbook's template cannot go out stale (issue 14):
copied as is, `sluice check` refuses its `expires` placeholder; after the
runbook's own `sed` line (run verbatim) it passes and explain refuses the
blocked firmware with the entry's name."""
import json
import os
import re
import shutil
import subprocess

from helpers import run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNBOOK = os.path.join(REPO, "deploy", "runbooks", "emergency-firmware-block.md")
TEMPLATE = os.path.join(REPO, "deploy", "runbooks", "emergency-firmware.yaml")
MAIN = """listeners:
  - name: public
    address: "127.0.0.1:1"
upstreams:
  identity: { address: "127.0.0.1:2" }
identify:
  device_class: { header: x-device-class }
  firmware: { header: x-firmware-version }
routes:
  - { name: connect, match: { path_prefix: "/" }, upstream: identity }
include: conf.d
"""


def sed_line():
    text = open(RUNBOOK).read()
    m = re.search(r"^sed -i .*emergency-firmware\.yaml$", text, re.M)
    assert m, "the runbook has no sed line for expires"
    return m.group(0)


def test_template_needs_its_expires_set(sluice_bin, tmp_path):
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "conf.d"))
    main = os.path.join(d, "sluice.yaml")
    with open(main, "w") as f:
        f.write(MAIN)
    drop = os.path.join(d, "conf.d", "emergency-firmware.yaml")
    shutil.copy(TEMPLATE, drop)
    p = run_cli(["check", "-c", main], binary=sluice_bin)
    assert p.returncode == 1 and "expires" in p.stderr and "emergency-firmware.yaml:" in p.stderr, \
        p.stderr
    # The runbook's line, verbatim, in the directory holding the copy.
    subprocess.run(["bash", "-c", sed_line()], cwd=os.path.join(d, "conf.d"), check=True)
    p = run_cli(["check", "-c", main, "--strict"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    p = run_cli(["explain", "-c", main, "--header", "X-Device-Class: airtame-hub",
                 "--header", "X-Firmware-Version: 3.8.0-b10", "/v1/connect"], binary=sluice_bin)
    verdict = json.loads(p.stdout)["verdict"]
    assert (verdict["admit"], verdict["status"], verdict["policy"]) == \
        (False, 403, "blocklist/firmware/inc-2041"), verdict
