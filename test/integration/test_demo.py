"""`make demo` in its small mode (deploy/demo.py --quick): the whole demo runs
to its end by itself with rc 0, prints the storm table, and writes a
parseable SVG with both runs' series, whose numbers agree with the storm
data it wrote beside it."""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SVG_NS = "{http://www.w3.org/2000/svg}"
SERIES = ("attempts/s", "upstream requests/s", "upstream failures/s (500 + stalled)",
          "connected devices", "latency p50 (ms)", "latency p99 (ms)")


def need(*paths):
    for p in paths:
        if not os.access(os.path.join(REPO, p), os.X_OK):
            pytest.fail("%s missing: make build/sluice tools" % p)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


@pytest.mark.timeout(120)
def test_quick_demo_prints_the_table_and_writes_the_picture(tmp_path):
    need("build/sluice", "build/standin", "build/fleetsim")
    out_dir = str(tmp_path / "demo")
    # The release binary, as make demo runs it; --quick is 500 devices for 10 s.
    p = subprocess.run([sys.executable, os.path.join(REPO, "deploy", "demo.py"), "--sluice",
                        os.path.join(REPO, "build", "sluice"), "--quick", "--out-dir", out_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=100)
    out = p.stdout
    assert p.returncode == 0, out[-4000:]
    for row in ("peak upstream load", r"upstream errors \(500 \+ stalled\)",
                r"time until 99% of 500 connected", "refusals and errors by reason"):
        assert re.search(row, out), "table row %r missing:\n%s" % (row, out[-3000:])
    m = re.search(r"upstream errors \(500 \+ stalled\)\s+(\d+) \+ (\d+)\s+(\d+) \+ (\d+)", out)
    assert m, out[-3000:]
    # Behind sluice the API is never pushed past its capacity (the demo
    # itself fails if it is); the same storm straight at it is.
    assert (int(m.group(3)), int(m.group(4))) == (0, 0)
    # Straight at it: 500 devices at once, 8 slots draining 200/s and 500s
    # past 256 waiting. Unless fleetsim takes more than (500 - 8 - 256) / 200
    # = 1.2 s to send them all, some find 256 waiting.
    assert int(m.group(1)) + int(m.group(2)) > 0
    assert re.search(r"through sluice:\s+429 rate_limited \d+", out), out[-3000:]
    assert "firmware block   drop-in picked up" in out

    root = ET.parse(os.path.join(out_dir, "storm.svg")).getroot()
    assert root.tag == SVG_NS + "svg"
    lines = root.findall(".//%spolyline" % SVG_NS)
    runs = sorted({l.get("data-run") for l in lines})
    assert len(runs) == 2 and any("sluice" in r for r in runs), runs
    for run in runs:
        got = {l.get("data-series") for l in lines if l.get("data-run") == run}
        assert got == set(SERIES), (run, got)
    texts = " ".join(t.text or "" for t in root.iter(SVG_NS + "text"))
    for label in ("offered load", "admitted load", "connected devices", "upstream latency",
                  "time (s)") + SERIES:
        assert label in texts, label

    # The picture carries the data: the connected series of the sluice run
    # is fleetsim's connected count, tick by tick.
    fleet = [t for t in read_jsonl(os.path.join(out_dir, "sluice-fleet.jsonl"))
             if t["type"] == "tick"]
    line = next(l for l in lines if "sluice" in l.get("data-run")
                and l.get("data-series") == "connected devices")
    pts = [tuple(map(float, xy.split(","))) for xy in line.get("data-points").split()]
    assert [v for _, v in pts] == [t["connected"] for t in fleet]
    assert max(v for _, v in pts) >= 0.99 * 500
