#!/usr/bin/env python3
"""Summary of one loadtest.sh results folder: RSS per connection, CPU per message,
msgs/s, latency, errors. Reads run.txt, load.csv, load.txt, samples.csv; prints summary.txt.

RSS per connection = (gateway RSS at N - RSS at 0) / N, RSS at N = median over the steady
seconds (all N connected, before the drain), RSS at 0 = the last sample before the load.
CPU per message = gateway CPU time over the steady seconds / messages (echoes + pushes)
in the same time. With broadcasts (load.txt has broadcasts_planned): CPU per delivery =
gateway CPU time over the whole seconds of the broadcast window / deliveries in them (and
its inverse, deliveries per gateway CPU-second); RSS before broadcasts = median over the
seconds between the ramp's end and the first broadcast, during = median and peak (VmHWM
per sample, gw_hwm_kib) over the broadcast window. Usage: summarize.py RESULTS_DIR
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
    if "broadcasts_planned" in load:
        broadcasts(out, add, run, load, rows, samples, tck, t0, n)
    kinds = ", ".join(f"{k[7:]}={v}" for k, v in load.items() if k.startswith("errors_") and v != "0")
    add("errors", load.get("errors", "?") + (f" ({kinds})" if kinds else ""))
    print("\n".join(out))


def broadcasts(out, add, run, load, rows, samples, tck, t0, n):
    bf, bl = int(load["broadcast_first_second"]), int(load["broadcast_last_second"])
    pf, pl = int(load["pre_broadcast_first_second"]), int(load["pre_broadcast_last_second"])
    win = [r for r in rows if bf <= int(r["seconds"]) <= bl]
    deliveries = sum(int(r.get("deliveries") or 0) for r in win)
    inside = [s for s in samples if t0 + (bf - 1) * 1000 <= int(s["unix_ms"]) <= t0 + bl * 1000]
    pre = [s for s in samples if t0 + (pf - 1) * 1000 <= int(s["unix_ms"]) <= t0 + pl * 1000]
    if not pre:  # no whole second between the ramp and the first broadcast: the last before
        pre = [s for s in samples if int(s["unix_ms"]) < t0 + (bf - 1) * 1000][-1:]
    size = int(load.get("broadcast_size", "0"))
    add("broadcasts", f"{load.get('broadcasts_per_s')}/s to {load.get('broadcast_groups')} group(s), "
        f"{size} B; ok {load.get('broadcasts_ok')} of {load.get('broadcasts_planned')}, "
        f"complete {load.get('broadcasts_complete')}")
    add("deliveries / expected", f"{load.get('deliveries')} / {load.get('deliveries_expected')} "
        f"(gateway queued {load.get('broadcast_queued')}, full {load.get('broadcast_full')})")
    add("broadcast window", f"seconds {bf}..{bl} ({len(win)} s), {deliveries / max(1, len(win)):.0f} deliveries/s")
    if len(inside) >= 2 and deliveries > 0:
        a, b = inside[0], inside[-1]
        dt = (int(b["unix_ms"]) - int(a["unix_ms"])) / 1000
        gw_cpu = (int(b["gw_cpu_ticks"]) - int(a["gw_cpu_ticks"])) / tck
        busy = int(b["machine_busy_ticks"]) - int(a["machine_busy_ticks"])
        total = int(b["machine_total_ticks"]) - int(a["machine_total_ticks"])
        # deliveries over the sampled span, at the window's rate
        d = deliveries / max(1, len(win)) * dt
        add("gateway CPU (broadcasts)", f"{100 * gw_cpu / dt:.1f} % of one core; machine busy {100 * busy / max(1, total):.1f} %")
        add("gateway CPU per delivery", f"{gw_cpu * 1e6 / d:.2f} us")
        add("deliveries per gateway CPU-s", f"{d / gw_cpu:,.0f}" if gw_cpu > 0 else "inf")
    add("POST -> first delivery", f"p50 {load.get('bcast_first_p50_ms')} / p99 {load.get('bcast_first_p99_ms')} / max {load.get('bcast_first_max_ms')} ms (over broadcasts)")
    add("POST -> last delivery", f"p50 {load.get('bcast_last_p50_ms')} / p99 {load.get('bcast_last_p99_ms')} / max {load.get('bcast_last_max_ms')} ms (over broadcasts)")
    add("POST -> each delivery", f"p50 {load.get('delivery_p50_ms')} / p99 {load.get('delivery_p99_ms')} / max {load.get('delivery_max_ms')} ms (over deliveries)")
    if pre and inside:
        rss_pre = statistics.median(int(s["gw_rss_kib"]) for s in pre)
        rss_mid = statistics.median(int(s["gw_rss_kib"]) for s in inside)
        hwm = [int(s.get("gw_hwm_kib") or 0) for s in inside]
        hwm_pre = max(int(s.get("gw_hwm_kib") or 0) for s in pre)
        peak = max(hwm) if any(hwm) else max(int(s["gw_rss_kib"]) for s in inside)
        shards = int(dict(zip(run.get("connections", "").split()[1::2], run.get("connections", "").split()[2::2])).get("shards", "2"))
        add("gateway RSS before broadcasts", f"{rss_pre / 1024:.2f} MiB (median), peak {hwm_pre / 1024:.2f} MiB")
        add("gateway RSS during broadcasts", f"{rss_mid / 1024:.2f} MiB (median), peak {peak / 1024:.2f} MiB")
        add("RSS growth in broadcasts", f"median {(rss_mid - rss_pre):+.0f} KiB, peak {(peak - max(rss_pre, hwm_pre)):+.0f} KiB over the peak before; "
            f"2 frames per shard = {2 * size * shards / 1024:.0f} KiB, one per member = {n * size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1])
