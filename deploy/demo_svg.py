"""The storm demo's picture: an SVG chart, plain Python (no matplotlib).

    demo_svg.render(runs, path)

|runs| is a list of runs, drawn side by side (one column each); every run is
{"title": str, "fleet": [fleetsim tick dicts], "standin": [standin tick dicts]}
in the JSON-lines formats of test/tools/fleetsim/ (README.md, "Storm demo").
Four panels, one row each, with the same y scale across the runs of a row so
the columns compare at a glance:

  offered load      fleetsim attempts/s (what the devices try), log scale
  admitted load     standin requests/s (what reaches the identity API), and
                    the part of it that failed (500 + stalled)/s, log scale
  connected         devices holding a tunnel
  upstream latency  standin p50 and p99, ms

Every series is also written as a <polyline> with data-run, data-series and
data-points ("t,v t,v ...", data units) attributes, so a test (or a reader)
can read the numbers back out of the picture.
"""

import math
from xml.sax.saxutils import escape

PANEL_W, PANEL_H = 420, 150
MARGIN_L, MARGIN_R, MARGIN_T, GAP_Y, GAP_X = 70, 20, 70, 60, 40
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"

# (series name, colour, dashed)
SERIES_STYLE = {
    "attempts/s": ("#1f77b4", False),
    "upstream requests/s": ("#2ca02c", False),
    "upstream failures/s (500 + stalled)": ("#d62728", False),
    "connected devices": ("#9467bd", False),
    "latency p50 (ms)": ("#ff7f0e", False),
    "latency p99 (ms)": ("#8c564b", True),
}


def _rate(ticks, key):
    """Per-second rates from per-interval counts: (t, count / interval)."""
    out, prev_t = [], 0.0
    for tk in ticks:
        dt = tk["t"] - prev_t
        out.append((tk["t"], tk[key] / dt if dt > 0 else 0.0))
        prev_t = tk["t"]
    return out


def panels_of(run):
    """The four panels of one run: [(title, y label, log y?, {series: [(t, v)]})].
    Loads are drawn on a log scale: a storm's first second is a hundred
    times its admitted rate, and both must be readable."""
    fleet, up = run["fleet"], run["standin"]
    # A second in which nothing was answered has no latency (not 0 ms).
    answered = [t for t in up if t["ok"] + t["errors_500"] > 0]
    fails = []
    prev_t = 0.0
    for tk in up:
        dt = tk["t"] - prev_t
        fails.append((tk["t"], (tk["errors_500"] + tk["stalled"]) / dt if dt > 0 else 0.0))
        prev_t = tk["t"]
    return [
        ("offered load (log scale)", "attempts/s", True, {"attempts/s": _rate(fleet, "attempts")}),
        ("admitted load, at the identity API (log scale)", "requests/s", True,
         {"upstream requests/s": _rate(up, "requests"),
          "upstream failures/s (500 + stalled)": fails}),
        ("connected devices", "devices", False,
         {"connected devices": [(t["t"], t["connected"]) for t in fleet]}),
        ("upstream latency, answered requests", "ms", False,
         {"latency p50 (ms)": [(t["t"], t["latency_ms"]["p50"]) for t in answered],
          "latency p99 (ms)": [(t["t"], t["latency_ms"]["p99"]) for t in answered]}),
    ]


def nice_ceiling(v):
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above |v| (an axis top)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def _fmt(v):
    if v >= 10000:
        return "%dk" % round(v / 1000)
    return ("%g" % v) if v == int(v) or v < 10 else "%d" % v


def render(runs, path):
    per_run = [panels_of(r) for r in runs]
    n_rows = len(per_run[0])
    t_max = nice_ceiling(max([1.0] + [tk["t"] for r in runs for tk in r["fleet"] + r["standin"]]))
    width = MARGIN_L + len(runs) * PANEL_W + (len(runs) - 1) * (GAP_X + MARGIN_L) + MARGIN_R
    height = MARGIN_T + n_rows * PANEL_H + n_rows * GAP_Y + 40
    out = ["<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
           "viewBox='0 0 %d %d' %s font-size='11'>" % (width, height, width, height, FONT),
           "<rect width='100%' height='100%' fill='white'/>"]
    # Legend, top.
    x = MARGIN_L
    for name, (colour, dashed) in SERIES_STYLE.items():
        out.append("<line x1='%d' y1='18' x2='%d' y2='18' stroke='%s' stroke-width='2'%s/>"
                   % (x, x + 20, colour, " stroke-dasharray='4,3'" if dashed else ""))
        out.append("<text x='%d' y='22'>%s</text>" % (x + 25, escape(name)))
        x += 30 + 6.2 * len(name)
    for row in range(n_rows):
        y_top = max([0.0] + [v for panels in per_run for pts in panels[row][3].values()
                             for _, v in pts])
        log = per_run[0][row][2]
        if log:  # decades from 1 to the first power of ten at or above the top
            decades = max(1, math.ceil(math.log10(max(y_top, 1.0)) - 1e-9))
            y_top = 10.0 ** decades
            ticks = [10.0 ** i for i in range(decades + 1)]

            def frac(v, decades=decades):
                return math.log10(max(v, 1.0)) / decades
        else:
            y_top = nice_ceiling(y_top * 1.05)
            ticks = [y_top * i / 4 for i in range(5)]

            def frac(v, y_top=y_top):
                return min(v, y_top) / y_top
        for col, (run, panels) in enumerate(zip(runs, per_run)):
            title, ylabel, _, series = panels[row]
            x0 = MARGIN_L + col * (PANEL_W + GAP_X + MARGIN_L)
            y0 = MARGIN_T + row * (PANEL_H + GAP_Y)
            if row == 0:
                out.append("<text x='%d' y='%d' font-size='14' font-weight='bold'>%s</text>"
                           % (x0, y0 - 25, escape(run["title"])))
            out.append("<text x='%d' y='%d' font-weight='bold'>%s</text>"
                       % (x0, y0 - 6, escape(title)))
            out.append("<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#999'/>"
                       % (x0, y0, PANEL_W, PANEL_H))
            for v in ticks:  # y grid and labels
                y = y0 + PANEL_H - PANEL_H * frac(v)
                out.append("<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#eee'/>"
                           % (x0, y, x0 + PANEL_W, y))
                out.append("<text x='%d' y='%.1f' text-anchor='end'>%s</text>"
                           % (x0 - 4, y + 4, _fmt(v)))
            out.append("<text transform='translate(%d,%d) rotate(-90)' text-anchor='middle'>"
                       "%s</text>" % (x0 - 48, y0 + PANEL_H // 2, escape(ylabel)))
            for i in range(6):  # time axis
                t = t_max * i / 5
                x = x0 + PANEL_W * i / 5
                out.append("<text x='%.1f' y='%d' text-anchor='middle'>%s</text>"
                           % (x, y0 + PANEL_H + 14, _fmt(t)))
            out.append("<text x='%d' y='%d' text-anchor='middle'>time (s)</text>"
                       % (x0 + PANEL_W // 2, y0 + PANEL_H + 28))
            for name, pts in series.items():
                colour, dashed = SERIES_STYLE[name]
                xy = " ".join("%.1f,%.1f" % (x0 + PANEL_W * t / t_max,
                                             y0 + PANEL_H - PANEL_H * frac(v))
                              for t, v in pts)
                data = " ".join("%g,%g" % (round(t, 3), round(v, 3)) for t, v in pts)
                out.append("<polyline fill='none' stroke='%s' stroke-width='1.6'%s points='%s' "
                           "data-run='%s' data-series='%s' data-points='%s'/>"
                           % (colour, " stroke-dasharray='4,3'" if dashed else "", xy,
                              escape(run["title"], {"'": "&apos;"}),
                              escape(name, {"'": "&apos;"}), data))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
