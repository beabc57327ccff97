#!/usr/bin/env bash
# Clean `cargo build --release` time of the bench with one provider at a time, each in a
# fresh target dir (crates already downloaded: run `cargo fetch` first). Usage: ./build-time.sh [ROUNDS=1]
set -euo pipefail
cd "$(dirname "$0")"
[ -f certs/ca.pem ] || ./gen-certs.sh
cargo fetch --quiet
for r in $(seq "${1:-1}"); do
  for p in ring aws-lc-rs; do
    d=target-build-$p; rm -rf "$d"
    s=$(date +%s.%N)
    CARGO_TARGET_DIR=$d cargo build --release --offline --quiet --no-default-features --features "$p"
    e=$(date +%s.%N)
    printf '%s\tround %s\tclean release build\t%.1f s\n' "$p" "$r" "$(echo "$e - $s" | bc)"
    rm -rf "$d"
  done
done
