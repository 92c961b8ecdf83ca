"""The picture of make demo: an SVG chart of a storm run, pure Python.

    svg = storm_svg(runs, title)

runs is a list of (name, series) with series a dict panel -> [(t_s, value)]
for the four panels of PANELS (missing panels are drawn empty). Each run is
one column, each panel one row; the panels of a row share their y scale, so
the two runs compare at a glance. No matplotlib: the demo must run on a
fresh clone with the Debian python3 alone.
"""

from xml.sax.saxutils import escape

# (key, title, unit): the rows of the chart, in this order.
PANELS = (
    ("offered", "offered load", "attempts/s"),
    ("admitted", "admitted load (reaching the API)", "req/s"),
    ("connected", "connected devices", "devices"),
    ("latency", "upstream latency p99", "ms"),
)
COLOURS = ("#1f77b4", "#d62728")
W, H = 420, 150             # one panel's plot area
ML, MR, MT, MB = 70, 20, 40, 38  # margins around it


def nice_max(v):
    """The smallest 1, 2 or 5 x 10^k at or above v (an axis end that reads well)."""
    if v <= 0:
        return 1
    k = 1
    while k * 10 <= v:
        k *= 10
    while k > v:
        k /= 10
    for m in (1, 2, 5, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def fmt(v):
    if v >= 1000 and v % 1000 == 0:
        return "%dk" % (v // 1000)
    if v == int(v):
        return "%d" % v
    return "%g" % v


def storm_svg(runs, title):
    cols = len(runs)
    cell_w, cell_h = ML + W + MR, MT + H + MB
    width, height = cols * cell_w, 40 + len(PANELS) * cell_h + 30
    t_end = max([pt[0] for _, ser in runs for pts in ser.values() for pt in pts] + [1])
    t_max = nice_max(t_end)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">'
           % (width, height, width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>'
           % (width // 2, escape(title))]
    for row, (key, ptitle, unit) in enumerate(PANELS):
        y_top = max([v for _, ser in runs for _, v in ser.get(key, [])] + [0])
        y_max = nice_max(y_top)
        for col, (name, ser) in enumerate(runs):
            x0, y0 = col * cell_w + ML, 40 + row * cell_h + MT
            colour = COLOURS[col % len(COLOURS)]
            out.append('<g class="panel" data-run="%s" data-panel="%s">' % (escape(name), key))
            out.append('<text x="%d" y="%d" font-size="12">%s: %s</text>'
                       % (x0, y0 - 8, escape(name), escape(ptitle)))
            out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'
                       % (x0, y0, W, H))
            for i in range(5):  # y grid and labels
                v = y_max * i / 4
                y = y0 + H - H * i / 4
                out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>'
                           % (x0, y, x0 + W, y))
                out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                           % (x0 - 4, y + 4, fmt(v)))
            for i in range(6):  # x labels
                t = t_max * i / 5
                x = x0 + W * i / 5
                out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                           % (x, y0 + H + 14, fmt(t)))
            out.append('<text x="%d" y="%d" text-anchor="middle">time (s)</text>'
                       % (x0 + W // 2, y0 + H + 30))
            out.append('<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">'
                       '%s</text>' % (x0 - 50, y0 + H // 2, x0 - 50, y0 + H // 2, escape(unit)))
            pts = ser.get(key, [])
            if pts:
                path = " ".join("%.1f,%.1f" % (x0 + W * min(t, t_max) / t_max,
                                               y0 + H - H * min(v, y_max) / y_max)
                                for t, v in pts)
                out.append('<polyline class="series" data-run="%s" data-panel="%s" '
                           'data-points="%d" fill="none" stroke="%s" stroke-width="1.5" '
                           'points="%s"/>' % (escape(name), key, len(pts), colour, path))
            out.append('</g>')
    # Legend: one swatch per run.
    ly = height - 14
    for col, (name, _) in enumerate(runs):
        lx = 20 + col * 260
        out.append('<g class="legend"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" '
                   'stroke-width="3"/><text x="%d" y="%d">%s</text></g>'
                   % (lx, ly - 4, lx + 24, ly - 4, COLOURS[col % len(COLOURS)], lx + 30, ly,
                      escape(name)))
    out.append('</svg>')
    return "\n".join(out) + "\n"


def series_from_streams(fleet_ticks, standin_ticks):
    """The four panels of one run from the two JSON-lines streams: fleetsim's
    ticks (offered = attempts/s, connected) and the stand-in's (admitted =
    requests/s that reached it, its p99). Rates divide by each tick's length."""
    ser = {"offered": [], "admitted": [], "connected": [], "latency": []}
    prev = 0.0
    for t in fleet_ticks:
        dt = max(t["t"] - prev, 1e-3)
        prev = t["t"]
        ser["offered"].append((t["t"], t["attempts"] / dt))
        ser["connected"].append((t["t"], t["connected"]))
    prev = 0.0
    for t in standin_ticks:
        dt = t["t"] - prev
        prev = t["t"]
        if dt <= 1e-3:
            continue  # the final partial report right after the last tick
        ser["admitted"].append((t["t"], t["requests"] / dt))
        ser["latency"].append((t["t"], t["latency_ms"]["p99"]))
    return ser
