#!/usr/bin/env bash
# Builds the bench (both providers in one binary) and runs it ROUNDS times, interleaved
# ring, aws-lc-rs, ring, ..., then prints the median of every number.
# Usage: ./run.sh [ROUNDS=5] [hs|rec|mem|all]
set -euo pipefail
cd "$(dirname "$0")"
rounds=${1:-5}; what=${2:-all}
[ -f certs/ca.pem ] || ./gen-certs.sh   # test-only keys, made here, not committed
cargo build --release --quiet
bin=target/release/ws2api-tls-providers
# No tcache/fastbins, so glibc's mallinfo2 sees frees at once (aws-lc mallocs in C).
export GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0
out=target/results.tsv; : > "$out"
for r in $(seq "$rounds"); do
  for p in ring aws-lc-rs; do
    echo "round $r/$rounds: $p" >&2
    "$bin" "$p" "$what" | sed "s/^/$r\t/" >> "$out"
  done
done
python3 - "$out" <<'PY'
import sys, statistics, collections
vals = collections.defaultdict(list); notes = {}
for line in open(sys.argv[1]):
    r, prov, metric, v, unit, note = line.rstrip("\n").split("\t")
    vals[(metric, unit, prov)].append(float(v)); notes[(metric, unit, prov)] = note
keys = sorted({(m, u) for m, u, _ in vals}, key=lambda k: list(vals).index(next(x for x in vals if x[:2] == k)))
print("| metric | unit | ring | aws-lc-rs | note (aws-lc-rs) |\n|---|---|---|---|---|")
for m, u in keys:
    cell = lambda p: (f"{statistics.median(vals[(m,u,p)]):.0f} ({min(vals[(m,u,p)]):.0f}–{max(vals[(m,u,p)]):.0f})" if (m,u,p) in vals else "n/a")
    print(f"| {m} | {u} | {cell('ring')} | {cell('aws-lc-rs')} | {notes.get((m,u,'aws-lc-rs'), notes.get((m,u,'ring'),''))} |")
PY
