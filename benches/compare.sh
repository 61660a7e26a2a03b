#!/usr/bin/env bash
# OnAir against nginx-rtmp on this machine, in one run, with the same load generator and clip.
#
#   benches/compare.sh [DURATION_SECS [STREAMS...]]      default: 60 s at 50 and 200 streams
#   SERVERS=onair benches/compare.sh 30 50               only some servers (default: "onair nginx-rtmp")
#   PROBE_SECS=30 benches/compare.sh ...                 length of the latency window (default 20)
#   KEEP_MEDIA=1 benches/compare.sh ...                  keep the segments (deleted once counted:
#                                                        ~7 GB per server at 200 streams)
#
# For each load point and each server: N real-time RTMP publishers of the 720p30 3 Mbit/s
# H.264/AAC fixture (onair-loadgen), 2 s HLS segments on both sides (OnAir `reduced` latency,
# nginx-rtmp `hls_fragment 2s`). Three windows, one after the other, so that no measurement
# loads another:
#   1. latency (the first PROBE_SECS, default 20, after 5 s of ramp-up): the generator's probe
#      polls 4 live playlists every 5 ms from the start of their streams (it matches segments
#      to keyframes by media time, so it must see every segment) and reports the segment
#      availability delay after the keyframe that closes each segment (p50/p95);
#   2. ingest (DURATION_SECS, starting 1 s after the probe stopped): no HLS request at all;
#      CPU-seconds per stream-second of the server's whole process tree, from /proc;
#   3. HLS serving: wrk against a live playlist, then a segment (same concurrency for both).
# Peak RSS (sampled every 200 ms over all three) and RSS growth per stream.
# Lost frames: once the generator has ended (its publishers close cleanly), the script waits
# until the server has written everything (OnAir: every stream's recording playlist ends with
# EXT-X-ENDLIST; nginx-rtmp: no RTMP connection left and its fragments unchanged for 1 s; at
# most 30 s), counts the frames in each stream's TS files with onair-tscount (all of them:
# OnAir's recording, nginx-rtmp with `hls_cleanup off`) and subtracts them from what the
# generator sent on that stream. Prints one table; results.tsv, results.json and per-run
# frames.json (per publisher: sent, counted, TS errors) stay in the work directory.
# Needs: nginx + libnginx-mod-rtmp, wrk (apt-get install -y nginx libnginx-mod-rtmp wrk).
# Everything listens on 127.0.0.1 only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-60}
shift || true
probe_secs=${PROBE_SECS:-20}
points=("$@")
[ ${#points[@]} -gt 0 ] || points=(50 200)
servers=${SERVERS:-onair nginx-rtmp}
for s in $servers; do
  case $s in onair | nginx-rtmp) ;; *) echo "compare.sh: unknown server '$s' in SERVERS (onair, nginx-rtmp)" >&2; exit 1 ;; esac
done
[ -n "${servers// /}" ] || { echo "compare.sh: SERVERS is empty" >&2; exit 1; }
want() { [[ " $servers " == *" $1 "* ]]; }
tools=(wrk curl python3)
want nginx-rtmp && tools+=(nginx)
for tool in "${tools[@]}"; do command -v $tool >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }; done
if want nginx-rtmp && [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  echo "compare.sh: libnginx-mod-rtmp is required" >&2; exit 1
fi

cargo build --release -q -p onair -p onair-benches
clip=$root/target/fixtures/avc_aac_720p30.flv
[ -f "$clip" ] || tests/fixtures/generate.sh target/fixtures
onair=$root/target/release/onair
loadgen=$root/target/release/onair-loadgen
tscount=$root/target/release/onair-tscount
work=$(mktemp -d /tmp/onair-compare.XXXXXX)
chmod 755 "$work"   # nginx workers run as nobody
hz=$(getconf CLK_TCK)
token=bench:bench-secret-0123456789
results=$work/results.jsonl
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

# OnAir: waits (at most 30 s) until the recording playlist of every stream in $1 (live stream
# ids) under $2 (recordings dir) ends with EXT-X-ENDLIST; prints how many do not.
settle_onair() {
  python3 - "$1" "$2" <<'PY'
import glob, os, sys, time
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
def open_streams():
    left = 0
    for i in ids:
        lists = glob.glob(os.path.join(sys.argv[2], i, "*", "stream.m3u8"))
        ended = [open(p).read().rstrip().endswith("#EXT-X-ENDLIST") for p in lists]
        left += not (ended and all(ended))
    return left
deadline = time.time() + 30
while (left := open_streams()) and time.time() < deadline:
    time.sleep(0.2)
print(left)
PY
}
# nginx-rtmp: waits (at most 30 s) until no RTMP connection to port $1 is open (nginx has run
# its end-of-stream handling: audio flushed, fragment closed) and the fragments in $2 have not
# changed for 1 s; prints the number of connections still open.
settle_nginx() {
  python3 - "$1" "$2" <<'PY'
import glob, os, sys, time
port = f"{int(sys.argv[1]):04X}"
def open_connections():
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            # local address "ADDR:PORT", state 01 ESTABLISHED or 08 CLOSE_WAIT
            n += f[1].endswith(":" + port) and f[3] in ("01", "08")
    return n
def files():
    return sorted((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in glob.glob(os.path.join(sys.argv[2], "*.ts")))
deadline = time.time() + 30
last, stable_since = None, time.time()
while time.time() < deadline:
    now = files()
    if now != last:
        last, stable_since = now, time.time()
    left = open_connections()
    if not left and time.time() - stable_since >= 1:
        break
    time.sleep(0.2)
print(left)
PY
}

# The live window's media bytes of one stream (the memory target is this plus 1 MiB): the mean
# over the broadcast of the sizes of 6 consecutive segments (the last, partial one left out).
window_bytes() {
  python3 - "$@" <<'PY'
import glob, json, os, re, sys
files = []
for p in sys.argv[1:]:
    files += glob.glob(os.path.join(p, "*.ts")) if os.path.isdir(p) else [p] if os.path.exists(p) else []
num = lambda p: int((re.findall(r"\d+", os.path.basename(p)) or ["0"])[-1])
sizes = [os.path.getsize(f) for f in sorted(files, key=num)][:-1]
sums = [sum(sizes[i:i + 6]) for i in range(len(sizes) - 5)]
print(json.dumps({"window_bytes": sum(sums) / len(sums) if sums else None}))
PY
}

# Runs the load and the measurements against a server whose process is $1.
# $2 name, $3 N, $4 rtmp url, $5 keys file, $6 probe ids file, $7 probe url template,
# $8 command that waits for the server to have written everything (prints unfinished streams),
# $9 function that prints the TS files or directories of publisher I (1-based) for tscount.
measure() {
  local pid=$1 name=$2 n=$3 url=$4 keys=$5 ids=$6 template=$7 settle=$8 files=$9
  local out=$work/$name-$n
  mkdir -p "$out"
  local idle; idle=$(rss_kb "$pid")
  echo "$idle" > "$out/peak"
  sample_peak "$pid" "$out/peak" & local sampler=$!
  # The generator runs the probe's window, the ingest window and wrk's while the streams are
  # still live. The probe stops before the ingest window.
  "$loadgen" --url "$url" --keys-file "$keys" --file "$clip" \
    --duration-secs $((5 + probe_secs + 1 + duration + 25)) \
    --probe 4 --probe-ids-file "$ids" --probe-url-template "$template" \
    --probe-secs $((5 + probe_secs)) --report "$out/loadgen.json" \
    > "$out/loadgen.log" 2>&1 & local gen=$!
  sleep $((5 + probe_secs + 1))   # ramp-up (publishers connect, first segments), the latency window
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
  # Lost frames: what each publisher sent against what the server wrote for its stream.
  # shellcheck disable=SC2086 # $settle is a function name and its arguments (no spaces in them)
  local unsettled; unsettled=$($settle)
  : > "$out/counts.jsonl"; : > "$out/window.jsonl"
  for i in $(seq "$n"); do
    # shellcheck disable=SC2046 # the paths have no spaces; an unmatched glob is counted as missing
    "$tscount" $("$files" "$i") >> "$out/counts.jsonl"
    # shellcheck disable=SC2046
    window_bytes $("$files" "$i") >> "$out/window.jsonl"
  done
  python3 - "$name" "$n" "$duration" "$hz" "$c0" "$c1" "$idle" "$peak" "$rps_list" "$rps_seg" \
    "$out/loadgen.json" "$out/counts.jsonl" "$unsettled" "$out/frames.json" "$out/window.jsonl" >> "$results" <<'PY'
import json, sys
name, n, dur, hz, c0, c1, idle, peak, rl, rs, report, counts, unsettled, frames, windows = sys.argv[1:]
window = [json.loads(l)["window_bytes"] for l in open(windows) if l.strip()]
window = [w for w in window if w]
window_mib = sum(window) / len(window) / 2**20 if window else None
n, dur, hz = int(n), float(dur), float(hz)
cpu = (int(c1) - int(c0)) / hz
r = json.load(open(report))
lat = r["probe"]["delay_ms"]
counted = [json.loads(l) for l in open(counts) if l.strip()]
streams = []
for i, (p, c) in enumerate(zip(r["publishers"], counted)):
    streams.append({
        "publisher": i, "key": p["key"], "error": p["error"],
        "sent_video": p["video_frames"], "sent_audio": p["audio_frames"],
        "counted_video": c["video_frames"], "counted_audio": c["audio_frames"],
        "lost_video": p["video_frames"] - c["video_frames"],
        "lost_audio": p["audio_frames"] - c["audio_frames"],
        "files": c["files"], "audio_pes": c["audio_pes"],
        "ts_errors": c["errors_total"], "first_errors": c["errors"][:5],
    })
lossy = [s for s in streams if s["lost_video"] > 0 or s["lost_audio"] > 0]
worst = max(streams, key=lambda s: (s["lost_video"] + s["lost_audio"], s["lost_video"]), default=None)
row = {
    "server": name, "streams": n,
    "cpu_s_per_stream_s": round(cpu / (n * dur), 6),
    "peak_rss_mib": round(int(peak) / 1024, 1),
    "rss_mib_per_stream": round((int(peak) - int(idle)) / 1024 / n, 2),
    "window_mib": window_mib and round(window_mib, 2),
    "delay_p50_ms": lat["p50"] and round(lat["p50"], 1), "delay_p95_ms": lat["p95"] and round(lat["p95"], 1),
    "publisher_errors": r["totals"]["publishers_with_errors"],
    "playlist_rps": float(rl or 0), "segment_rps": float(rs or 0),
    "sent_video": sum(s["sent_video"] for s in streams),
    "sent_audio": sum(s["sent_audio"] for s in streams),
    "lost_video": sum(s["lost_video"] for s in streams),
    "lost_audio": sum(s["lost_audio"] for s in streams),
    "streams_losing_frames": len(lossy),
    "streams_with_extra_frames": sum(s["lost_video"] < 0 or s["lost_audio"] < 0 for s in streams),
    "streams_counted": len(counted),
    "ts_errors": sum(s["ts_errors"] for s in streams),
    "unfinished_after_30s": int(unsettled),
    "worst": worst if worst and worst in lossy else None,
    "clip_audio_before_first_keyframe": r["clip"]["audio_before_first_keyframe"],
}
json.dump({"summary": row, "streams": streams}, open(frames, "w"), indent=1)
print(json.dumps(row))
PY
}

for n in "${points[@]}"; do
  # ---------------- OnAir ----------------
  if want onair; then
    data=$work/onair-data-$n
    # No API rate limit: the script creates hundreds of live streams in a row.
    # All publishers come from 127.0.0.1: the per-address limit on connections still in
    # handshake (16 by default) is lifted so that a slow ramp-up is not cut short.
    printf '[api]\npost_requests_per_second = 0\nother_requests_per_second = 0\n[rtmp]\nmax_unadmitted_per_address = 10000\n' > "$work/onair.toml"
    ONAIR_ACCESS_TOKEN=$token "$onair" --config "$work/onair.toml" --data-dir "$data" serve --rtmp-addr 127.0.0.1:25222 \
      --rtmps-addr off --srt-addr 127.0.0.1:25001 --http-addr 127.0.0.1:28080 --metrics-addr off > "$work/onair-$n.out" 2> "$work/onair-$n.log" &
    server=$!
    wait_http http://127.0.0.1:28080/
    # Publisher i (line i of the keys file) is live stream i (line i of the stream ids file).
    : > "$work/onair-keys-$n"; : > "$work/onair-ids-$n"; : > "$work/onair-streamids-$n"
    for _ in $(seq "$n"); do
      ONAIR_API_URL=http://127.0.0.1:28080 ONAIR_ACCESS_TOKEN=$token "$onair" live-streams create \
        --latency-mode reduced > "$work/created.json"
      python3 - "$work/created.json" "$work/onair-keys-$n" "$work/onair-ids-$n" "$work/onair-streamids-$n" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for path, value in zip(sys.argv[2:], (d["stream_key"], d["playback_ids"][0]["id"], d["id"])):
    print(value, file=open(path, "a"))
PY
    done
    # Each broadcast is recorded in recordings/{live stream id}/{broadcast id}/ (N.ts, stream.m3u8).
    onair_files() { local id; id=$(sed -n "${1}p" "$work/onair-streamids-$n"); echo "$data/recordings/${id:-none}"/*/; }
    measure "$server" onair "$n" rtmp://127.0.0.1:25222/app "$work/onair-keys-$n" "$work/onair-ids-$n" \
      'http://127.0.0.1:28080/{key}/stream.m3u8' \
      "settle_onair $work/onair-streamids-$n $data/recordings" onair_files
    kill -TERM "$server"; wait "$server" || true
    # Media is counted; 200 streams x 90 s is about 7 GB per server (KEEP_MEDIA=1 keeps it).
    [ -n "${KEEP_MEDIA:-}" ] || rm -rf "$data/recordings"
  fi

  # ---------------- nginx-rtmp ----------------
  if want nginx-rtmp; then
    ng=$work/nginx-$n
    mkdir -p "$ng/hls" "$ng/logs"
    chmod 777 "$ng/hls"
    cat > "$ng/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;   # nginx-rtmp live needs rtmp_auto_push for more; ingest_cpu.sh uses 1 too
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
      hls_cleanup off;   # keep every fragment: the lost-frame count reads them all
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
    # Publisher i publishes stream{i}; nginx-rtmp writes its fragments as stream{i}-K.ts.
    nginx_files() { echo "$ng/hls/stream$1-"*.ts; }
    measure "$server" nginx-rtmp "$n" rtmp://127.0.0.1:35222/app "$ng/keys" "$ng/keys" \
      'http://127.0.0.1:38080/{key}.m3u8' "settle_nginx 35222 $ng/hls" nginx_files
    kill -QUIT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
    [ -n "${KEEP_MEDIA:-}" ] || rm -rf "$ng/hls"
  fi
done

python3 - "$results" "$work" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = [("server", "server"), ("streams", "streams"), ("CPU s per stream-s", "cpu_s_per_stream_s"),
        ("peak RSS MiB", "peak_rss_mib"), ("RSS MiB per stream", "rss_mib_per_stream"),
        ("window media MiB", "window_mib"),
        ("delay p50 ms", "delay_p50_ms"), ("delay p95 ms", "delay_p95_ms"),
        ("publisher errors", "publisher_errors"), ("lost video", "lost_video"),
        ("lost audio", "lost_audio"), ("streams losing frames", "streams_losing_frames"),
        ("playlist req/s", "playlist_rps"), ("segment req/s", "segment_rps")]
fmt = lambda v: "-" if v is None else f"{v:.6f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)
with open(f"{sys.argv[2]}/results.tsv", "w") as tsv:
    print("\t".join(k for _, k in cols), file=tsv)
    for r in rows:
        print("\t".join(fmt(r[k]) for _, k in cols), file=tsv)
json.dump(rows, open(f"{sys.argv[2]}/results.json", "w"), indent=1)
print("| " + " | ".join(h for h, _ in cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(fmt(r[k]) for _, k in cols) + " |")
print()
for r in rows:
    w = r["worst"]
    line = (f"{r['server']} {r['streams']}: sent {r['sent_video']} video + {r['sent_audio']} audio frames; "
            f"{r['streams_losing_frames']} of {r['streams']} streams lost frames")
    if w:
        line += (f"; worst: publisher #{w['publisher']} (keys-file line {w['publisher'] + 1}, {w['key']}…) "
                 f"sent {w['sent_video']}/{w['sent_audio']}, "
                 f"counted {w['counted_video']}/{w['counted_audio']} video/audio in {w['files']} files")
    if r["streams_with_extra_frames"]:
        line += f"; {r['streams_with_extra_frames']} streams with MORE frames than sent"
    if r["ts_errors"]:
        line += f"; {r['ts_errors']} TS errors (frames.json)"
    if r["unfinished_after_30s"]:
        line += f"; {r['unfinished_after_30s']} streams not finished writing after 30 s"
    if r["streams_counted"] != r["streams"]:
        line += f"; only {r['streams_counted']} streams counted"
    print(line)
if rows:
    k = rows[0]["clip_audio_before_first_keyframe"]
    print(f"Note: the clip has {k} audio frame(s) before its first video keyframe; a server that starts "
          f"its output at that keyframe and drops what came before loses them once per publish: up to {k} x streams of "
          "'lost audio' come from that. The numbers above are not corrected for it.")
by = {(r["server"], r["streams"]): r for r in rows}
pairs = [(n, r, by[("nginx-rtmp", n)]) for (name, n), r in sorted(by.items())
         if name == "onair" and ("nginx-rtmp", n) in by]
if pairs:
    print()
    print("| streams | CPU ratio onair/nginx | peak RSS ratio | playlist req/s ratio | segment req/s ratio |")
    print("|---|---|---|---|---|")
    for n, r, g in pairs:
        ratio = lambda k: f"{r[k] / g[k]:.2f}" if g[k] else "n/a"
        print(f"| {n} | {ratio('cpu_s_per_stream_s')} | {ratio('peak_rss_mib')} | "
              f"{ratio('playlist_rps')} | {ratio('segment_rps')} |")
PY
