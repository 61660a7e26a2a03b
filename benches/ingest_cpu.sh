#!/usr/bin/env bash
# Ingest CPU of one server, with no HLS requests at all: N publishers of the 720p30 3 Mbit/s
# fixture (real time, looped). The server's CPU time (utime + stime from /proc, its whole
# process tree) is read after WARMUP seconds and again WINDOW seconds later; the figure is
# CPU-seconds per stream-second over that window. Nothing polls the server while it is
# measured (a probe would load it too).
#
#   benches/ingest_cpu.sh SERVER LOADGEN_BINARY STREAMS [WARMUP_SECS] [WINDOW_SECS]
#
# SERVER is an OnAir binary (streams created through its API: `reduced` latency, reconnect
# window 0) or the word `nginx-rtmp` (nginx with libnginx-mod-rtmp, one worker, `hls on`,
# `hls_fragment 2s`, `hls_playlist_length 12s`, `hls_cleanup off`: like OnAir it keeps every
# segment it writes).
#
# RECONNECT_WINDOW=30 creates the OnAir streams with that reconnect window instead of 0
# (reduced latency with a window: slate is rendered and the stall check runs, though no slate
# plays).
#
# PUBLISHER=ffmpeg publishes with N real `ffmpeg -re -stream_loop -1 -c copy` processes
# instead of `onair-loadgen` (RTMP only; encoders write differently from the generator; the
# ffmpeg processes share the machine's two cores with the server). The publisher error count
# is then the number of ffmpeg processes that exited before the end.
#
# PROTOCOL=srt publishes over SRT instead of RTMP (default PROTOCOL=rtmp; OnAir and the
# generator only): the same clip, each `onair-loadgen` caller with its stream's key as streamid
# and its `srt_passphrase` (AES-128), MPEG-TS in 1316-byte payloads, SRT latency SRT_LATENCY_MS
# (default 120, libsrt's). The gateway runs with the same listeners either way (RTMP and, when
# the binary has one, SRT on 127.0.0.1), so the two figures compare the ingest paths only.
#
# INGEST_THREADS=N sets OnAir's `[ingest] threads` (default: one per CPU; 0 runs RTMP
# connections on the shared multi-threaded runtime, as before that setting existed).
#
# PORT_BASE (default 29000) moves the ports used (PORT_BASE+222 RTMP, +1 SRT, +80 HTTP), so
# two runs never meet.
#
# Prints one line: server, protocol, publisher, streams, cpu_s, window_s, cpu_per_stream_s (and
# its user and system parts), the server's context switches per stream-second (how often its
# threads sleep and wake), publisher errors. Everything listens on 127.0.0.1 only; the data
# directory is a fresh temporary one.
set -euo pipefail
server=$1
loadgen=$2
streams=$3
warmup=${4:-10}
window=${5:-20}
protocol=${PROTOCOL:-rtmp}
publisher=${PUBLISHER:-loadgen}
base=${PORT_BASE:-29000}
rtmp_port=$((base + 222)); srt_port=$((base + 1)); http_port=$((base + 80))
case "$protocol" in
  rtmp) url=rtmp://127.0.0.1:$rtmp_port/app ;;
  srt) url=srt://127.0.0.1:$srt_port ;;
  *) echo "PROTOCOL must be rtmp or srt, not $protocol" >&2; exit 2 ;;
esac
case "$publisher" in
  loadgen) ;;
  ffmpeg) [ "$protocol" = rtmp ] || { echo "PUBLISHER=ffmpeg publishes over RTMP only" >&2; exit 2; } ;;
  *) echo "PUBLISHER must be loadgen or ffmpeg, not $publisher" >&2; exit 2 ;;
esac
[ "$server" != nginx-rtmp ] || [ "$protocol" = rtmp ] || { echo "nginx-rtmp takes RTMP only" >&2; exit 2; }
cd "$(dirname "$0")/.."
fixture=target/fixtures/avc_aac_720p30.flv
[ -f "$fixture" ] || { echo "missing $fixture (run cargo test -p testkit once to generate the fixtures)" >&2; exit 1; }

work=$(mktemp -d /tmp/onair-ingest-cpu.XXXXXX)
chmod 755 "$work"   # nginx workers run as nobody
pid=
publishers=()
cleanup() {
  for p in "${publishers[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pid" ]; then
    if [ "$server" = nginx-rtmp ]; then kill -QUIT "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
: > "$work/keys"
: > "$work/passphrases"
if [ "$server" = nginx-rtmp ]; then
  [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "needs nginx and libnginx-mod-rtmp" >&2; exit 1; }
  mkdir -p "$work/hls" "$work/logs"
  chmod 777 "$work/hls"
  cat > "$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:$rtmp_port;
    chunk_size 4096;
    application app {
      live on;
      hls on;
      hls_path $work/hls;
      hls_fragment 2s;
      hls_playlist_length 12s;
      hls_cleanup off;
    }
  }
}
CONF
  nginx -p "$work" -c "$work/nginx.conf" &
  pid=$!
  sleep 0.5
  kill -0 "$pid" || { cat "$work/logs/error.log" >&2; exit 1; }
  for i in $(seq "$streams"); do echo "stream$i"; done > "$work/keys"
else
  onair=$server
  token=bench:bench-secret-0123456789
  # The streams are created through the API as fast as it answers: no rate limit.
  # All publishers come from 127.0.0.1: the per-address limit on connections still in
  # handshake (16 by default) is lifted so that a slow ramp-up is not cut short.
  printf '[api]\npost_requests_per_second = 0\nother_requests_per_second = 0\n[rtmp]\nmax_unadmitted_per_address = 10000\n' > "$work/onair.toml"
  if [ -n "${INGEST_THREADS:-}" ]; then printf '[ingest]\nthreads = %s\n' "$INGEST_THREADS" >> "$work/onair.toml"; fi
  # Binaries from before SRT ingest have no --srt-addr (and no SRT listener to move off 0.0.0.0).
  srt_args=()
  if "$onair" serve --help | grep -- --srt-addr > /dev/null; then
    srt_args=(--srt-addr "127.0.0.1:$srt_port")
  elif [ "$protocol" = srt ]; then
    echo "$onair has no SRT listener (--srt-addr)" >&2; exit 1
  fi
  # Binaries from before the metrics listener have no --metrics-addr (metrics are counted
  # either way; only the listener is off, so that a Prometheus on :9090 cannot stop a run).
  metrics_args=()
  if "$onair" serve --help | grep -- --metrics-addr > /dev/null; then
    metrics_args=(--metrics-addr off)
  fi
  "$onair" --config "$work/onair.toml" --data-dir "$work/data" serve --rtmp-addr "127.0.0.1:$rtmp_port" \
    --rtmps-addr off "${srt_args[@]}" --http-addr "127.0.0.1:$http_port" "${metrics_args[@]}" --access-token "$token" \
    > "$work/stdout" 2> "$work/stderr" &
  pid=$!
  for _ in $(seq 100); do grep -q '^ready$' "$work/stdout" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ready$' "$work/stdout" || { cat "$work/stderr" >&2; exit 1; }
  for _ in $(seq "$streams"); do
    ONAIR_API_URL=http://127.0.0.1:$http_port ONAIR_ACCESS_TOKEN=$token "$onair" live-streams create \
      --latency-mode reduced --reconnect-window "${RECONNECT_WINDOW:-0}" \
      | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["stream_key"], file=open(sys.argv[1], "a"))
if sys.argv[3] == "srt":
    print(s["srt_passphrase"], file=open(sys.argv[2], "a"))' "$work/keys" "$work/passphrases" "$protocol"
  done
fi
created=$(wc -l < "$work/keys")
[ "$created" -eq "$streams" ] || { echo "created $created of $streams streams" >&2; exit 1; }
passphrase_args=()
[ "$protocol" = srt ] && passphrase_args=(--passphrases-file "$work/passphrases" --srt-latency-ms "${SRT_LATENCY_MS:-120}")

# CPU ticks of the server's process tree (nginx: master and worker): "user system".
tree() { echo "$1"; for c in $(pgrep -P "$1" || true); do tree "$c"; done; }
cpu() {
  local u=0 s=0
  for p in $(tree "$pid"); do
    if [ -r "/proc/$p/stat" ]; then
      read -r pu ps < <(awk '{ print $14, $15 }' "/proc/$p/stat")
      u=$((u + pu)); s=$((s + ps))
    fi
  done
  echo "$u $s"
}
# Context switches of the server's threads (voluntary and not): each is a thread going to
# sleep or being preempted, so this shows how often the server wakes up. Threads that exit
# within the window take their counts with them (tokio's blocking pool does that).
switches() {
  local n=0
  for p in $(tree "$pid"); do
    for f in /proc/"$p"/task/*/status; do
      [ -r "$f" ] && n=$((n + $(awk '/ctxt_switches/ { s += $2 } END { print s + 0 }' "$f" 2>/dev/null || echo 0)))
    done
  done
  echo "$n"
}
hz=$(getconf CLK_TCK)
if [ "$publisher" = ffmpeg ]; then
  while read -r key; do
    ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv \
      "$url/$key" 2>> "$work/ffmpeg.err" &
    publishers+=($!)
    sleep 0.02
  done < "$work/keys"
else
  "$loadgen" --url "$url" --keys-file "$work/keys" "${passphrase_args[@]}" --file "$fixture" \
    --duration-secs $((warmup + window + 5)) --ramp-ms 20 --report "$work/report.json" \
    > "$work/loadgen.out" 2>&1 &
  publishers+=($!)
fi
sleep "$warmup"
start=$(cpu); start_switches=$(switches)
sleep "$window"
end=$(cpu); end_switches=$(switches)
if [ "$publisher" = ffmpeg ]; then
  errors=0
  for p in "${publishers[@]}"; do kill -0 "$p" 2>/dev/null || errors=$((errors + 1)); done
else
  wait "${publishers[0]}" || true
  errors=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for p in r["publishers"] if p.get("error")))' "$work/report.json" 2>/dev/null || echo "?")
fi
python3 - "$server" "$protocol" "$publisher" "$streams" "$start" "$end" "$hz" "$window" "$errors" \
  "$((end_switches - start_switches))" <<'EOF'
import sys
server, protocol, publisher, streams, start, end, hz, window, errors, switches = sys.argv[1:]
(u0, s0), (u1, s1) = (map(float, start.split()), map(float, end.split()))
user, system = (u1 - u0) / float(hz), (s1 - s0) / float(hz)
stream_s = int(streams) * float(window)
print(f"{server}\tprotocol={protocol}\tpublisher={publisher}\tstreams={streams}\tcpu_s={user + system:.2f}"
      f"\twindow_s={window}\tcpu_per_stream_s={(user + system) / stream_s:.5f}"
      f"\tuser={user / stream_s:.5f}\tsystem={system / stream_s:.5f}"
      f"\tswitches_per_stream_s={int(switches) / stream_s:.0f}\tpublisher_errors={errors}")
EOF
