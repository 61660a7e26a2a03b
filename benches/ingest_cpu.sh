#!/usr/bin/env bash
# Ingest CPU of one OnAir binary, with no HLS requests at all: N `onair-loadgen` publishers of
# the 720p30 3 Mbit/s fixture (real time, looped), `reduced` latency, window 0. The gateway's
# CPU time (utime + stime from /proc) is read after WARMUP seconds and again WINDOW seconds
# later; the figure is CPU-seconds per stream-second over that window. Nothing polls the
# server while it is measured (a probe would load it too).
#
#   benches/ingest_cpu.sh ONAIR_BINARY LOADGEN_BINARY STREAMS [WARMUP_SECS] [WINDOW_SECS]
#
# RECONNECT_WINDOW=30 creates the streams with that reconnect window instead of 0 (reduced
# latency with a window: slate is rendered and the stall check runs, though no slate plays).
#
# PROTOCOL=srt publishes over SRT instead of RTMP (default PROTOCOL=rtmp): the same clip, each
# `onair-loadgen` caller with its stream's key as streamid and its `srt_passphrase` (AES-128),
# MPEG-TS in 1316-byte payloads, SRT latency SRT_LATENCY_MS (default 120, libsrt's). The gateway
# runs with the same listeners either way (RTMP and, when the binary has one, SRT on 127.0.0.1),
# so the two figures compare the ingest paths only.
#
# Prints one line: binary, protocol, streams, cpu_s, window_s, cpu_per_stream_s, publisher
# errors. Everything listens on 127.0.0.1 only; the data directory is a fresh temporary one.
set -euo pipefail
onair=$1
loadgen=$2
streams=$3
warmup=${4:-10}
window=${5:-20}
protocol=${PROTOCOL:-rtmp}
case "$protocol" in
  rtmp) url=rtmp://127.0.0.1:29222/app ;;
  srt) url=srt://127.0.0.1:29001 ;;
  *) echo "PROTOCOL must be rtmp or srt, not $protocol" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
fixture=target/fixtures/avc_aac_720p30.flv
[ -f "$fixture" ] || { echo "missing $fixture (run cargo test -p testkit once to generate the fixtures)" >&2; exit 1; }

work=$(mktemp -d /tmp/onair-ingest-cpu.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
token=bench:bench-secret-0123456789
# The streams are created through the API as fast as it answers: no rate limit.
printf '[api]\npost_requests_per_second = 0\nother_requests_per_second = 0\n' > "$work/onair.toml"
# Binaries from before SRT ingest have no --srt-addr (and no SRT listener to move off 0.0.0.0).
srt_args=()
if "$onair" serve --help | grep -- --srt-addr > /dev/null; then
  srt_args=(--srt-addr 127.0.0.1:29001)
elif [ "$protocol" = srt ]; then
  echo "$onair has no SRT listener (--srt-addr)" >&2; exit 1
fi
"$onair" --config "$work/onair.toml" --data-dir "$work/data" serve --rtmp-addr 127.0.0.1:29222 --rtmps-addr off \
  "${srt_args[@]}" --http-addr 127.0.0.1:29080 --access-token "$token" > "$work/stdout" 2> "$work/stderr" &
pid=$!
for _ in $(seq 100); do grep -q '^ready$' "$work/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready$' "$work/stdout" || { cat "$work/stderr" >&2; exit 1; }

: > "$work/keys"
: > "$work/passphrases"
for _ in $(seq "$streams"); do
  ONAIR_API_URL=http://127.0.0.1:29080 ONAIR_ACCESS_TOKEN=$token "$onair" live-streams create \
    --latency-mode reduced --reconnect-window "${RECONNECT_WINDOW:-0}" \
    | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["stream_key"], file=open(sys.argv[1], "a"))
if sys.argv[3] == "srt":
    print(s["srt_passphrase"], file=open(sys.argv[2], "a"))' "$work/keys" "$work/passphrases" "$protocol"
done
passphrase_args=()
[ "$protocol" = srt ] && passphrase_args=(--passphrases-file "$work/passphrases" --srt-latency-ms "${SRT_LATENCY_MS:-120}")

cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
"$loadgen" --url "$url" --keys-file "$work/keys" "${passphrase_args[@]}" --file "$fixture" \
  --duration-secs $((warmup + window + 5)) --ramp-ms 20 --report "$work/report.json" \
  > "$work/loadgen.out" 2>&1 &
gen=$!
sleep "$warmup"
start=$(cpu)
sleep "$window"
end=$(cpu)
wait "$gen" || true
errors=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for p in r["publishers"] if p.get("error")))' "$work/report.json" 2>/dev/null || echo "?")
python3 - "$onair" "$protocol" "$streams" "$start" "$end" "$hz" "$window" "$errors" <<'EOF'
import sys
onair, protocol, streams, start, end, hz, window, errors = sys.argv[1:]
cpu = (float(end) - float(start)) / float(hz)
per = cpu / (int(streams) * float(window))
print(f"{onair}\tprotocol={protocol}\tstreams={streams}\tcpu_s={cpu:.2f}\twindow_s={window}\tcpu_per_stream_s={per:.5f}\tpublisher_errors={errors}")
EOF
