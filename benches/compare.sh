#!/usr/bin/env bash
# OnAir against nginx-rtmp on this machine, in one run, with the same load generator and clip.
#
#   benches/compare.sh [DURATION_SECS [STREAMS...]]      default: 60 s at 50 and 200 streams
#
# For each load point and each server: N real-time RTMP publishers of the 720p30 3 Mbit/s
# H.264/AAC fixture (onair-loadgen), 2 s HLS segments on both sides (OnAir `reduced` latency,
# nginx-rtmp `hls_fragment 2s`). Measured from /proc for the server's whole process tree:
# CPU-seconds per stream-second over the load window, peak RSS, RSS growth per stream; from the
# generator's latency probe: segment availability delay after the keyframe that closes it
# (p50/p95); then wrk against a live playlist and a segment (same concurrency for both).
# Prints one table. Needs: nginx + libnginx-mod-rtmp, wrk (apt-get install -y nginx
# libnginx-mod-rtmp wrk). Everything listens on 127.0.0.1 only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-60}
shift || true
points=("$@")
[ ${#points[@]} -gt 0 ] || points=(50 200)
for tool in nginx wrk; do command -v $tool >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }; done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "compare.sh: libnginx-mod-rtmp is required" >&2; exit 1; }

cargo build --release -q -p onair -p onair-benches
clip=$root/target/fixtures/avc_aac_720p30.flv
[ -f "$clip" ] || tests/fixtures/generate.sh target/fixtures
onair=$root/target/release/onair
loadgen=$root/target/release/onair-loadgen
work=$(mktemp -d /tmp/onair-compare.XXXXXX)
chmod 755 "$work"   # nginx workers run as nobody
hz=$(getconf CLK_TCK)
token=bench:bench-secret-0123456789
results=$work/results.tsv
: > "$results"
echo "work directory: $work" >&2

# CPU ticks (utime+stime) of a process and all its descendants.
tree_pids() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done; }
cpu_ticks() { local t=0; for p in $(tree_pids "$1"); do
  [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
rss_kb() { local t=0; for p in $(tree_pids "$1"); do
  v=$(awk '/^VmRSS/{print $2}' /proc/$p/status 2>/dev/null || echo 0); t=$((t + ${v:-0})); done; echo $t; }
# Samples the tree's RSS every 200 ms into $2 (the maximum) until killed.
sample_peak() { local peak=0; while kill -0 "$1" 2>/dev/null; do r=$(rss_kb "$1");
  [ "$r" -gt "$peak" ] && peak=$r && echo $peak > "$2"; sleep 0.2; done; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# Runs the load and the measurements against a server whose process is $1.
# $2 name, $3 N, $4 rtmp url, $5 keys file, $6 probe ids file, $7 probe url template,
# $8 playlist path for wrk, $9 http base.
measure() {
  local pid=$1 name=$2 n=$3 url=$4 keys=$5 ids=$6 template=$7 http=$9
  local out=$work/$name-$n
  mkdir -p "$out"
  local idle; idle=$(rss_kb "$pid")
  echo "$idle" > "$out/peak"
  sample_peak "$pid" "$out/peak" & local sampler=$!
  # The generator runs the load window plus time for wrk while the streams are still live.
  "$loadgen" --url "$url" --keys-file "$keys" --file "$clip" --duration-secs $((duration + 30)) \
    --probe 4 --probe-ids-file "$ids" --probe-url-template "$template" --report "$out/loadgen.json" \
    > "$out/loadgen.log" 2>&1 & local gen=$!
  sleep 5   # ramp-up: publishers connect, first segments
  local c0; c0=$(cpu_ticks "$pid")
  sleep "$duration"
  local c1; c1=$(cpu_ticks "$pid")
  # HLS serving: a live playlist and a segment it lists, same concurrency on both servers.
  local playlist; playlist=$(head -1 "$ids")
  local list_url; list_url=${template//\{key\}/$playlist}
  local rps_list rps_seg
  rps_list=$(wrk -t2 -c32 -d8s "$list_url" 2>/dev/null | awk '/Requests\/sec/{print $2}')
  local seg; seg=$(curl -s "$list_url" | grep -v '^#' | tail -1)
  local seg_url=${list_url%/*}/$seg
  rps_seg=$(wrk -t2 -c32 -d8s "$seg_url" 2>/dev/null | awk '/Requests\/sec/{print $2}')
  wait "$gen" || true
  kill "$sampler" 2>/dev/null || true
  local peak; peak=$(cat "$out/peak")
  python3 - "$name" "$n" "$duration" "$hz" "$c0" "$c1" "$idle" "$peak" "$rps_list" "$rps_seg" "$out/loadgen.json" >> "$results" <<'PY'
import json, sys
name, n, dur, hz, c0, c1, idle, peak, rl, rs, report = sys.argv[1:]
n, dur, hz = int(n), float(dur), float(hz)
cpu = (int(c1) - int(c0)) / hz
r = json.load(open(report))
lat = r["probe"]["delay_ms"]
print("\t".join(str(x) for x in [
    name, n, f"{cpu / (n * dur):.6f}", f"{int(peak) / 1024:.1f}", f"{(int(peak) - int(idle)) / 1024 / n:.2f}",
    lat["p50"], lat["p95"], r["totals"]["publishers_with_errors"], rl or "0", rs or "0"]))
PY
}

for n in "${points[@]}"; do
  # ---------------- OnAir ----------------
  data=$work/onair-data-$n
  # No API rate limit: the script creates hundreds of live streams in a row.
  printf '[api]\npost_requests_per_second = 0\nother_requests_per_second = 0\n' > "$work/onair.toml"
  ONAIR_ACCESS_TOKEN=$token "$onair" --config "$work/onair.toml" --data-dir "$data" serve --rtmp-addr 127.0.0.1:25222 \
    --rtmps-addr off --http-addr 127.0.0.1:28080 > "$work/onair-$n.out" 2> "$work/onair-$n.log" &
  server=$!
  wait_http http://127.0.0.1:28080/
  : > "$work/onair-keys-$n"; : > "$work/onair-ids-$n"
  for _ in $(seq "$n"); do
    ONAIR_API_URL=http://127.0.0.1:28080 ONAIR_ACCESS_TOKEN=$token "$onair" live-streams create \
      --latency-mode reduced > "$work/created.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["stream_key"]); print(d["playback_ids"][0]["id"], file=sys.stderr)' \
      "$work/created.json" >> "$work/onair-keys-$n" 2>> "$work/onair-ids-$n"
  done
  measure "$server" onair "$n" rtmp://127.0.0.1:25222/app "$work/onair-keys-$n" "$work/onair-ids-$n" \
    'http://127.0.0.1:28080/{key}/stream.m3u8' x http://127.0.0.1:28080
  kill -TERM "$server"; wait "$server" || true

  # ---------------- nginx-rtmp ----------------
  ng=$work/nginx-$n
  mkdir -p "$ng/hls" "$ng/logs"
  chmod 777 "$ng/hls"
  cat > "$ng/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes auto;
pid $ng/nginx.pid;
error_log $ng/logs/error.log warn;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:35222;
    chunk_size 4096;
    application app {
      live on;
      hls on;
      hls_path $ng/hls;
      hls_fragment 2s;
      hls_playlist_length 12s;
    }
  }
}
http {
  access_log off;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:38080;
    location / { root $ng/hls; add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }
  }
}
CONF
  nginx -p "$ng" -c "$ng/nginx.conf" &
  server=$!
  sleep 0.5
  for i in $(seq "$n"); do echo "stream$i"; done > "$ng/keys"
  measure "$server" nginx-rtmp "$n" rtmp://127.0.0.1:35222/app "$ng/keys" "$ng/keys" \
    'http://127.0.0.1:38080/{key}.m3u8' x http://127.0.0.1:38080
  kill -QUIT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
done

python3 - "$results" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ["server", "streams", "CPU s per stream-s", "peak RSS MiB", "RSS MiB per stream",
       "delay p50 ms", "delay p95 ms", "publisher errors", "playlist req/s", "segment req/s"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
by = {}
for r in rows:
    print("| " + " | ".join(r) + " |")
    by[(r[0], r[1])] = r
print()
print("| streams | CPU ratio onair/nginx | peak RSS ratio | playlist req/s ratio | segment req/s ratio |")
print("|---|---|---|---|---|")
for (name, n), r in sorted(by.items()):
    if name != "onair" or ("nginx-rtmp", n) not in by:
        continue
    g = by[("nginx-rtmp", n)]
    ratio = lambda i: f"{float(r[i]) / float(g[i]):.2f}" if float(g[i]) else "n/a"
    print(f"| {n} | {ratio(2)} | {ratio(3)} | {ratio(8)} | {ratio(9)} |")
PY
