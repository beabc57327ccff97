#!/usr/bin/env bash
# Runs every fuzz target in turn, one in-process libFuzzer job each (no -jobs/-workers), on stable Rust (no sanitizer).
# Usage: fuzz/run_all.sh [SECONDS_PER_TARGET] [TARGET...]   (default 300 s, all six targets)
# Logs go to fuzz/logs/<target>.log; grown corpora to fuzz/corpus/<target>/ (ignored by git);
# crash reproducers to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_head proxy_header proxy_tlv cert_subject answer_codec ws_decoder)
declare -A max_len=([request_head]=9000 [proxy_header]=4200 [proxy_tlv]=1024 [cert_subject]=4096 [answer_codec]=8192 [ws_decoder]=8192)
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${secs}s" >&2
  cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len="${max_len[$t]:-8192}" \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || echo "!! $t exited $? (see logs/$t.log)" >&2
  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|Done [0-9]+ runs" "logs/$t.log" >&2 || true
done
