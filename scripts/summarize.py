#!/usr/bin/env python3
"""Summary of one loadtest.sh results folder: RSS per connection, CPU per message,
msgs/s, latency, errors. Reads run.txt, load.csv, load.txt, samples.csv; prints summary.txt.

RSS per connection = (gateway RSS at N - RSS at 0) / N, RSS at N = median over the steady
seconds (all N connected, before the drain), RSS at 0 = the last sample before the load.
CPU per message = gateway CPU time over the steady seconds / messages (echoes + pushes)
in the same time. Usage: summarize.py RESULTS_DIR
"""
import csv
import os
import statistics
import sys


def kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 1)
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def main(d):
    run = kv(os.path.join(d, "run.txt"))
    load = kv(os.path.join(d, "load.txt"))
    rows = list(csv.DictReader(open(os.path.join(d, "load.csv"))))
    samples = list(csv.DictReader(open(os.path.join(d, "samples.csv"))))
    tck = int(run.get("clk_tck", "100"))
    t0 = int(load["t0_unix_ms"])
    n = int(load["connections_max"])
    first, last = int(load["steady_first_second"]), int(load["steady_last_second"])
    # Second s of load.csv covers [t0 + (s-1) s, t0 + s s).
    win_lo, win_hi = t0 + (first - 1) * 1000, t0 + last * 1000
    before = [s for s in samples if int(s["unix_ms"]) < t0]
    inside = [s for s in samples if win_lo <= int(s["unix_ms"]) <= win_hi]
    steady_rows = [r for r in rows if first <= int(r["seconds"]) <= last]
    msgs = sum(int(r["received"]) + int(r["pushes"]) for r in steady_rows)
    secs = max(1, len(steady_rows))
    rate = msgs / secs

    out = []
    add = lambda k, v: out.append(f"{k:<28} {v}")
    add("run", run.get("name", "?") + ": " + run.get("connections", ""))
    add("machine", f"{run.get('nproc')} cores, {run.get('cpu')}, Linux {run.get('kernel')}")
    add("connections (max)", n)
    add("steady seconds", f"{first}..{last} ({len(steady_rows)} s)")
    rss0 = int(before[-1]["gw_rss_kib"]) if before else 0
    if inside and n > 0:
        rssn = statistics.median(int(s["gw_rss_kib"]) for s in inside)
        add("gateway RSS at 0", f"{rss0 / 1024:.1f} MiB")
        add("gateway RSS at N", f"{rssn / 1024:.1f} MiB")
        add("RSS per connection", f"{(rssn - rss0) * 1024 / n:.0f} B")
    if len(inside) >= 2:
        a, b = inside[0], inside[-1]
        dt = (int(b["unix_ms"]) - int(a["unix_ms"])) / 1000
        gw_cpu = (int(b["gw_cpu_ticks"]) - int(a["gw_cpu_ticks"])) / tck
        api_cpu = (int(b["api_cpu_ticks"]) - int(a["api_cpu_ticks"])) / tck
        busy = int(b["machine_busy_ticks"]) - int(a["machine_busy_ticks"])
        total = int(b["machine_total_ticks"]) - int(a["machine_total_ticks"])
        add("gateway CPU", f"{100 * gw_cpu / dt:.1f} % of one core")
        add("bench API CPU", f"{100 * api_cpu / dt:.1f} % of one core")
        add("machine busy", f"{100 * busy / max(1, total):.1f} % of all cores")
        if rate > 0:
            add("gateway CPU per message", f"{gw_cpu * 1e6 / (rate * dt):.1f} us")
            add("bench API CPU per request", f"{api_cpu * 1e6 / (rate * dt):.1f} us")
    add("msgs/s (steady)", f"{rate:.0f}")
    add("latency steady p50/p99/p999", f"{load.get('steady_rtt_p50_ms')} / {load.get('steady_rtt_p99_ms')} / {load.get('steady_rtt_p999_ms')} ms")
    add("latency all p50/p99/p999/max", f"{load.get('rtt_p50_ms')} / {load.get('rtt_p99_ms')} / {load.get('rtt_p999_ms')} / {load.get('rtt_max_ms')} ms")
    add("sent / received", f"{load.get('sent')} / {load.get('received')}")
    add("pushes ok / received", f"{load.get('pushes_ok')} / {load.get('pushes_received')} (p50 {load.get('push_p50_ms')} ms, p99 {load.get('push_p99_ms')} ms)")
    kinds = ", ".join(f"{k[7:]}={v}" for k, v in load.items() if k.startswith("errors_") and v != "0")
    add("errors", load.get("errors", "?") + (f" ({kinds})" if kinds else ""))
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
