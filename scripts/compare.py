#!/usr/bin/env python3
"""compare.txt of one scripts/compare.sh results folder: per workload, ws2api and Pushpin
side by side with the ratio ws2api / Pushpin (below 1 = ws2api uses less / is faster,
except msgs/s where above 1 = ws2api moved more), plus Pushpin's CPU split by process.
Reads <dir>/{ws2api,pushpin}-{a,b}/{summary.txt,run.txt,load.txt,procs.csv}.
Usage: compare.py RESULTS_DIR
"""
import csv
import os
import re
import statistics
import sys

WORKLOADS = {"a": "open loop, 1 msg per interval", "b": "closed loop", "c": "broadcast fan-out"}


def kv(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 1)
                if len(parts) == 2:
                    out[parts[0]] = parts[1]
    except OSError:
        pass
    return out


def num(s):
    m = re.match(r"-?[0-9.]+", s or "")
    return float(m.group()) if m else None


def window(load, rows, run):
    """The load seconds the figures cover: ws2api-load's steady window (all connections up,
    after the ramp, before the drain) when it has 3+ seconds; else, when connections were
    lost or never all opened, the planned one: after the ramp until the end of --duration."""
    first, last = int(load.get("steady_first_second", 0)), int(load.get("steady_last_second", 0))
    if first > 0 and last - first >= 2:
        return first, last, True
    plan = run.get("connections", "").split()
    args = dict(zip(plan[1::2], plan[2::2]))
    n, ramp = int(plan[0]) if plan else 0, int(args.get("ramp", "1000"))
    dur = args.get("duration", "0s")
    dur_s = float(re.match(r"[0-9.]+", dur).group()) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[re.sub(r"[0-9.]", "", dur)]
    ramp_s = n / max(1, ramp)
    return int(ramp_s) + 2, int(ramp_s + dur_s), False


def side(d):
    """ws2api's or Pushpin's figures from the raw files, the way summarize.py computes them."""
    load = kv(os.path.join(d, "load.txt"))
    run = kv(os.path.join(d, "run.txt"))
    res = {"present": os.path.isdir(d), "run": run, "load": load, "steady": True,
           "errors": num(load.get("errors")), "connections": num(load.get("connections_max"))}
    err_kinds = ", ".join(f"{k[7:]}={v}" for k, v in load.items() if k.startswith("errors_") and v != "0")
    res["errors_text"] = (load.get("errors", "n/a (no summary)") + (f" ({err_kinds})" if err_kinds else ""))
    try:
        rows = list(csv.DictReader(open(os.path.join(d, "load.csv"))))
        samples = list(csv.DictReader(open(os.path.join(d, "samples.csv"))))
        t0 = int(load["t0_unix_ms"])
    except (OSError, KeyError, ValueError):
        return res
    first, last, steady = window(load, rows, run)
    res["steady"] = steady
    res["window"] = f"{first}..{last}"
    tck = int(run.get("clk_tck", "100"))
    win = [r for r in rows if first <= int(r["seconds"]) <= last]
    lo, hi = t0 + (first - 1) * 1000, t0 + last * 1000
    before = [s for s in samples if int(s["unix_ms"]) < t0]
    inside = [s for s in samples if lo <= int(s["unix_ms"]) <= hi]
    msgs = sum(int(r["received"]) + int(r["pushes"]) for r in win)
    rate = msgs / max(1, len(win))
    res["rate"] = rate
    conns = statistics.median(int(r["connections"]) for r in win) if win else 0
    if inside and before and conns > 0:
        rss0 = int(before[-1]["gw_rss_kib"])
        rssn = statistics.median(int(s["gw_rss_kib"]) for s in inside)
        res["rss"] = (rssn - rss0) * 1024 / conns
    if len(inside) >= 2:
        a, b = inside[0], inside[-1]
        dt = (int(b["unix_ms"]) - int(a["unix_ms"])) / 1000
        gw = (int(b["gw_cpu_ticks"]) - int(a["gw_cpu_ticks"])) / tck
        api = (int(b["api_cpu_ticks"]) - int(a["api_cpu_ticks"])) / tck
        busy = int(b["machine_busy_ticks"]) - int(a["machine_busy_ticks"])
        total = int(b["machine_total_ticks"]) - int(a["machine_total_ticks"])
        res["cpu_pct"] = 100 * gw / dt
        res["busy"] = 100 * busy / max(1, total)
        if rate > 0:
            res["cpu"] = gw * 1e6 / (rate * dt)
            res["api_cpu"] = api * 1e6 / (rate * dt)
    key = "steady_rtt" if steady else "rtt"
    res["p50"], res["p99"] = num(load.get(f"{key}_p50_ms")), num(load.get(f"{key}_p99_ms"))
    return res


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    if abs(v) >= 100 or digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "0 / 0" if a == 0 else "inf"
    return f"{a / b:.2f}"


def cpu_split(d, win):
    """Pushpin CPU per process over the measured window."""
    load = kv(os.path.join(d, "load.txt"))
    path = os.path.join(d, "procs.csv")
    if not load.get("t0_unix_ms") or not win or not os.path.exists(path):
        return None
    t0 = int(load["t0_unix_ms"])
    first, last = (int(x) for x in win.split(".."))
    lo, hi = t0 + (first - 1) * 1000, t0 + last * 1000
    first, last, rss = {}, {}, {}
    with open(path) as f:
        for r in csv.DictReader(f):
            t = int(r["unix_ms"])
            if lo <= t <= hi:
                first.setdefault(r["comm"], (t, int(r["cpu_ticks"])))
                last[r["comm"]] = (t, int(r["cpu_ticks"]))
                rss[r["comm"]] = int(r["rss_kib"])
    tck = int(kv(os.path.join(d, "run.txt")).get("clk_tck", "100"))
    parts = []
    for comm in first:
        (ta, ca), (tb, cb) = first[comm], last[comm]
        dt = (tb - ta) / 1000
        if dt > 0:
            parts.append(f"{comm} {100 * (cb - ca) / tck / dt:.0f} % ({rss[comm] / 1024:.0f} MiB)")
    return ", ".join(parts) if parts else None


def main(d):
    top = kv(os.path.join(d, "compare-run.txt"))
    out = []
    out.append("ws2api vs Pushpin (ratio = ws2api / Pushpin)")
    out.append(f"machine: {top.get('nproc')} cores, {top.get('cpu')}, Linux {top.get('kernel')}; "
               "gateway or Pushpin, bench API and load generator all share these cores")
    out.append(f"pushpin: {top.get('pushpin')}")
    out.append(f"command: {top.get('command')}")
    out.append("pushes: not measured for either side (Pushpin publishes through GRIP channels, "
               "not per-client POSTs; skipped for Pushpin, so for ws2api too)")
    for w in ("a", "b"):
        ws, pp = side(os.path.join(d, f"ws2api-{w}")), side(os.path.join(d, f"pushpin-{w}"))
        if not ws.get("present") and not pp.get("present"):
            continue
        desc = (ws.get("run") or pp.get("run")).get("connections", "")
        out.append("")
        out.append(f"workload {w} ({WORKLOADS[w]}): connections {desc}")
        rows = [
            ("metric", "ws2api", "Pushpin", "ratio"),
            ("seconds measured", ws.get("window", "n/a"), pp.get("window", "n/a"), ""),
            ("connections (max)", fmt(ws.get("connections"), digits=0), fmt(pp.get("connections"), digits=0),
             ratio(ws.get("connections"), pp.get("connections"))),
            ("RSS per connection", fmt(ws.get("rss"), " B", 0), fmt(pp.get("rss"), " B", 0), ratio(ws.get("rss"), pp.get("rss"))),
            ("CPU per message", fmt(ws.get("cpu"), " us"), fmt(pp.get("cpu"), " us"), ratio(ws.get("cpu"), pp.get("cpu"))),
            ("CPU (% of one core)", fmt(ws.get("cpu_pct"), " %"), fmt(pp.get("cpu_pct"), " %"), ratio(ws.get("cpu_pct"), pp.get("cpu_pct"))),
            ("msgs/s", fmt(ws.get("rate"), digits=0), fmt(pp.get("rate"), digits=0), ratio(ws.get("rate"), pp.get("rate"))),
            ("latency p50", fmt(ws.get("p50"), " ms", 2), fmt(pp.get("p50"), " ms", 2), ratio(ws.get("p50"), pp.get("p50"))),
            ("latency p99", fmt(ws.get("p99"), " ms", 2), fmt(pp.get("p99"), " ms", 2), ratio(ws.get("p99"), pp.get("p99"))),
            ("errors", fmt(ws.get("errors"), digits=0), fmt(pp.get("errors"), digits=0), ratio(ws.get("errors"), pp.get("errors"))),
            ("bench API CPU per request", fmt(ws.get("api_cpu"), " us"), fmt(pp.get("api_cpu"), " us"), ratio(ws.get("api_cpu"), pp.get("api_cpu"))),
            ("machine busy", fmt(ws.get("busy"), " %"), fmt(pp.get("busy"), " %"), ""),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for i, r in enumerate(rows):
            out.append("  " + "  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
            if i == 0:
                out.append("  " + "  ".join("-" * x for x in widths))
        for name, s in (("ws2api", ws), ("Pushpin", pp)):
            if not s["present"]:
                out.append(f"  {name}: not run")
                continue
            notes = []
            rc = s["run"].get("load_rc")
            if rc not in (None, "0"):
                notes.append(f"load generator exit {rc}")
            if s["errors"]:
                notes.append(f"errors {s['errors_text']}")
            if s.get("window") and not s["steady"]:
                notes.append("no steady window (connections never held at their max for 3 s): "
                             "figures over the planned window, latency over the whole run")
            died = s["run"].get("died")
            if died and died != "none":
                notes.append(f"died during the run: {died}")
            for k in ("log_warnings", "log_errors"):
                if s["run"].get(k, "0") != "0":
                    notes.append(f"{k.replace('_', ' ')} {s['run'][k]}")
            if notes:
                out.append(f"  {name}: " + "; ".join(notes))
        split = cpu_split(os.path.join(d, f"pushpin-{w}"), pp.get("window"))
        if split:
            out.append(f"  Pushpin CPU by process (measured window, % of one core, RSS at its end): {split}")
    broadcast(d, out)
    print("\n".join(out))


def broadcast(d, out):
    """Workload c: the broadcast lines of each side's summary.txt, side by side, and the
    ratio of deliveries per gateway CPU-second (above 1 = ws2api delivers more per CPU)."""
    ws, pp = (kv_label(os.path.join(d, f"{n}-c", "summary.txt")) for n in ("ws2api", "pushpin"))
    if not ws and not pp:
        return
    run = kv(os.path.join(d, "ws2api-c", "run.txt")) or kv(os.path.join(d, "pushpin-c", "run.txt"))
    out.append("")
    out.append(f"workload c (broadcast fan-out): connections {run.get('connections', '')}")
    keys = ["connections (max)", "broadcasts", "deliveries / expected", "broadcast window",
            "gateway CPU (broadcasts)", "gateway CPU per delivery", "deliveries per gateway CPU-s",
            "POST -> first delivery", "POST -> last delivery", "POST -> each delivery",
            "RSS growth in broadcasts", "errors"]
    for k in keys:
        out.append(f"  {k}")
        out.append(f"    ws2api : {ws.get(k, 'n/a')}")
        out.append(f"    Pushpin: {pp.get(k, 'n/a')}")
    a = num((ws.get("deliveries per gateway CPU-s") or "").replace(",", ""))
    b = num((pp.get("deliveries per gateway CPU-s") or "").replace(",", ""))
    out.append(f"  deliveries per gateway CPU-second, ws2api / Pushpin: {ratio(a, b)}")


def kv_label(path):
    """summary.txt lines: a label padded to 28 columns, then the value."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if len(line) > 29:
                    out[line[:28].strip()] = line[29:].strip()
    except OSError:
        pass
    return out


if __name__ == "__main__":
    main(sys.argv[1])
