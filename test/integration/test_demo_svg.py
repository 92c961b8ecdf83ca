"""deploy/demo_svg.py, the picture of make demo, on real stand-in ticks:
two runs (one light, one past --fail-queue) become a parseable SVG with one
polyline per run and panel, sharing the y scale of their row."""

import os
import sys
import xml.etree.ElementTree as ET

import pytest

from helpers import REPO, wait_for
from test_standin import burst, standin_factory  # noqa: F401  (the fixture)

sys.path.insert(0, os.path.join(REPO, "deploy"))
import demo_svg  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"


@pytest.mark.timeout(60)
def test_two_runs_side_by_side(standin_factory):  # noqa: F811
    runs = []
    for name, n in (("light", 4), ("storm", 60)):
        sd = standin_factory("--workers", "4", "--service-ms", "20",
                             "--fail-queue", "16", "--stall-queue", "1000")
        burst(sd.port, n, 10)
        wait_for(lambda: sd.total("requests") == n and len(sd.ticks()) >= 3, 10,
                 what="the ticks of the burst")
        runs.append((name, demo_svg.series_from_streams([], sd.ticks())))
    root = ET.fromstring(demo_svg.storm_svg(runs, "test"))
    lines = {(p.get("data-run"), p.get("data-panel")): p for p in root.iter(NS + "polyline")}
    for name, _ in runs:
        for panel in ("admitted", "latency"):
            assert (name, panel) in lines, (name, panel, sorted(lines))
            assert int(lines[(name, panel)].get("data-points")) >= 3
    panels = [g for g in root.iter(NS + "g") if g.get("class") == "panel"]
    assert len(panels) == len(runs) * len(demo_svg.PANELS)
    # One y scale per row: the storm's 60 requests in one tick draw higher
    # above their panel's floor than the light run's 4.
    def peak_height(name):
        g = [g for g in panels if g.get("data-run") == name and g.get("data-panel") == "admitted"][0]
        rect = g.find(NS + "rect")
        floor = float(rect.get("y")) + float(rect.get("height"))
        return max(floor - float(xy.split(",")[1])
                   for xy in lines[(name, "admitted")].get("points").split())
    assert peak_height("storm") > peak_height("light") > 0
    legend = [g for g in root.iter(NS + "g") if g.get("class") == "legend"]
    assert [g.find(NS + "text").text for g in legend] == ["light", "storm"]
