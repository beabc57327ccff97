#!/usr/bin/env python3
"""plot.svg of one loadtest.sh results folder, dependency-free (SVG written by hand):
connections, msgs/s (echoes received, pushes), round-trip p50/p99/p999, gateway RSS and
CPU over time. Usage: plot.py RESULTS_DIR"""
import csv
import os
import sys

W, PANEL_H, LEFT, TOP, GAP = 900, 170, 70, 50, 45
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;")


def nice_max(v):
    if v <= 0:
        return 1
    m = 10 ** len(str(int(v))) / 10
    for f in (1, 2, 2.5, 5, 10):
        if v <= f * m:
            return f * m
    return v


def panel(out, i, title, xs, series, xmax, unit):
    y0 = TOP + i * (PANEL_H + GAP)
    pw = W - LEFT - 20
    ymax = nice_max(max([max(ys) if ys else 0 for _, ys in series] + [0]))
    out.append(f'<text x="{LEFT}" y="{y0 - 8}" font-weight="bold">{esc(title)}</text>')
    out.append(f'<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#888"/>')
    for k in range(5):
        v = ymax * k / 4
        y = y0 + PANEL_H - PANEL_H * k / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{v:g}{unit}</text>')
    for k in range(11):
        x = LEFT + pw * k / 10
        out.append(f'<text x="{x:.1f}" y="{y0 + PANEL_H + 14}" text-anchor="middle" font-size="11">{xmax * k / 10:.0f}s</text>')
    for j, (name, ys) in enumerate(series):
        pts = " ".join(
            f"{LEFT + pw * x / xmax:.1f},{y0 + PANEL_H - PANEL_H * min(y, ymax) / ymax:.1f}" for x, y in zip(xs, ys)
        )
        c = COLORS[j % len(COLORS)]
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        out.append(f'<text x="{LEFT + 10 + 150 * j}" y="{y0 + 14}" fill="{c}" font-size="12">{esc(name)}</text>')


def main(d):
    rows = list(csv.DictReader(open(os.path.join(d, "load.csv"))))
    samples = list(csv.DictReader(open(os.path.join(d, "samples.csv"))))
    load = {}
    for line in open(os.path.join(d, "load.txt")):
        k, _, v = line.strip().partition(" ")
        load[k] = v
    t0 = int(load["t0_unix_ms"])
    tck = 100
    for line in open(os.path.join(d, "run.txt")):
        if line.startswith("clk_tck "):
            tck = int(line.split()[1])
    xs = [int(r["seconds"]) for r in rows]
    col = lambda name: [float(r[name]) for r in rows]
    sx = [(int(s["unix_ms"]) - t0) / 1000 for s in samples]
    rss = [int(s["gw_rss_kib"]) / 1024 for s in samples]
    cpu = [0.0] + [
        100 * (int(b["gw_cpu_ticks"]) - int(a["gw_cpu_ticks"])) / tck / max(0.001, (int(b["unix_ms"]) - int(a["unix_ms"])) / 1000)
        for a, b in zip(samples, samples[1:])
    ]
    keep = [k for k, x in enumerate(sx) if x >= 0]
    sx, rss, cpu = [sx[k] for k in keep], [rss[k] for k in keep], [cpu[k] for k in keep]
    xmax = max(xs + [int(x) + 1 for x in sx] + [1])
    out = []
    panel(out, 0, "open connections", xs, [("connections", col("connections"))], xmax, "")
    panel(out, 1, "messages per second", xs, [("echoes received", col("received")), ("pushes", col("pushes")), ("errors", col("errors"))], xmax, "")
    panel(out, 2, "round trip (ms)", xs, [("p50", col("p50_ms")), ("p99", col("p99_ms")), ("p99.9", col("p999_ms"))], xmax, "")
    panel(out, 3, "gateway RSS (MiB) and CPU (% of one core)", sx, [("RSS MiB", rss), ("CPU %", cpu)], xmax, "")
    h = TOP + 4 * (PANEL_H + GAP)
    title = f"ws2api load: {os.path.basename(os.path.normpath(d))}"
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="13">',
           f'<rect width="{W}" height="{h}" fill="white"/>', f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{esc(title)}</text>']
    svg += out + ["</svg>"]
    with open(os.path.join(d, "plot.svg"), "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
