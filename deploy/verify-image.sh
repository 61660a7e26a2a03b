#!/usr/bin/env bash
# Build and check the OnAir container image on a machine with no image registry and no Docker
# engine, only Debian's archive and crates.io (docs/OPERATIONS.md, "Container").
#
#   deploy/verify-image.sh            # from the repository root, as root
#
# What it does:
#   1. installs podman, buildah and debootstrap from Debian if missing;
#   2. makes the two base images the Dockerfile names, locally:
#      localhost/debian:bookworm-slim  from `debootstrap --variant=minbase bookworm` (apt lists,
#                                      caches and docs removed, as Debian's slim image does);
#      localhost/onair-rust:bookworm   that image + gcc and libc6-dev from Debian + this
#                                      machine's Rust toolchain copied in (rustup cannot
#                                      download here), laid out like the official rust image
#                                      (CARGO_HOME=/usr/local/cargo, PATH);
#   3. builds the Dockerfile with those images as --build-args (crates come from crates.io,
#      packages from Debian, inside the build);
#   4. runs the image and checks: the process runs as the non-root user, `ldd` of the binary,
#      /healthz, /readyz and /metrics on the published metrics port, the HEALTHCHECK command
#      (healthy, then failing on purpose with /data made read-only), an ffmpeg RTMP publish
#      and an SRT one that go live and play over HLS, RTMPS on 443 as the non-root user, a
#      bind-mounted data directory, and a clean stop (exit 0 on SIGTERM).
#
# Everything large lives under $SCRATCH (podman's storage too, through CONTAINERS_STORAGE_CONF);
# the debootstrap root file systems are deleted at the end, the images stay.
# Heavy steps run under `nice -n 19`. KEEP_ROOTFS=1 keeps the root file systems.
set -euo pipefail

SCRATCH=${SCRATCH:-/work/docker-scratch}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TOOLCHAIN=${TOOLCHAIN:-$(rustc --print sysroot)}
IMAGE=${IMAGE:-localhost/onair:dev}
SLIM=localhost/debian:bookworm-slim
RUST=localhost/onair-rust:bookworm
NAME=onair-verify
TOKEN=verify-id:verify-secret-0123456789
# Host ports the container's listeners are published on (any free ones).
RTMP_PORT=${RTMP_PORT:-15222}
HTTP_PORT=${HTTP_PORT:-18080}
METRICS_PORT=${METRICS_PORT:-19090}
SRT_PORT=${SRT_PORT:-16001}

REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$SCRATCH"
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Keep podman's and buildah's storage under $SCRATCH, not /var/lib/containers.
cat > "$SCRATCH/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$SCRATCH/storage"
runroot = "$SCRATCH/run"
EOF
export CONTAINERS_STORAGE_CONF=$SCRATCH/storage.conf

# This machine's quirks (a VM, root without CAP_SYS_RESOURCE, cgroup v1 with a cgroup2 mount):
# - crun refuses the hybrid cgroup layout ("cgroups in hybrid mode not supported"): use runc;
# - podman's default ulimits (nofile 1048576, nproc max) are above the hard limits here and
#   cannot be raised (setrlimit: operation not permitted): use the shell's hard nofile limit and
#   nproc 4096 (the hard nproc limit itself was refused by the runtime too).
# Both go into a containers.conf of our own, for `podman build` and `podman run` alike.
cat > "$SCRATCH/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$SCRATCH/containers.conf
# buildah keeps RUN --mount=type=cache directories (the cargo registry and target directory,
# ~2 GB) under $TMPDIR/buildah-cache (default /var/tmp): keep them under $SCRATCH too.
export TMPDIR=$SCRATCH/tmp
mkdir -p "$TMPDIR"

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
  || ! command -v runc >/dev/null; then
  step "install podman, buildah, runc, debootstrap (Debian)"
  apt-get install -y podman buildah runc debootstrap
fi
podman --version

# --- 2. base images ------------------------------------------------------------------------
if ! podman image exists "$SLIM"; then
  root=$SCRATCH/rootfs-slim
  if [ ! -e "$SCRATCH/rootfs-slim.done" ]; then
    step "debootstrap bookworm (minbase) from $MIRROR"
    rm -rf "$root"
    nice -n 19 debootstrap --variant=minbase bookworm "$root" "$MIRROR"
    touch "$SCRATCH/rootfs-slim.done"
  fi
  # What Debian's own slim images do (debuerreotype): apt keeps no package caches and fetches
  # no translations, dpkg installs no documentation, manuals or locales; then the same files
  # removed from what debootstrap installed. Without the apt settings a Dockerfile's
  # `apt-get install` layer carries ~80 MB of /var/cache/apt/*.bin.
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/*
  step "import $SLIM"
  tar -C "$root" -c . \
    | podman import --change 'CMD ["bash"]' - "$SLIM"
fi

if ! podman image exists "$RUST"; then
  step "build $RUST from $SLIM and the toolchain at $TOOLCHAIN"
  ctx=$SCRATCH/rust-ctx
  rm -rf "$ctx" && mkdir -p "$ctx/rust"
  # bin, lib, libexec, etc: the toolchain without its documentation (share/, ~800 MB).
  for d in bin lib libexec etc; do cp -al "$TOOLCHAIN/$d" "$ctx/rust/" 2>/dev/null \
    || cp -a "$TOOLCHAIN/$d" "$ctx/rust/"; done
  # This machine reaches crates.io through an egress proxy whose CA the host trusts (local
  # certificates in /usr/local/share/ca-certificates); the build image must trust it too, or
  # cargo fails with "SSL certificate problem: self-signed certificate in certificate chain".
  # Only this local build image gets them, never the OnAir image.
  mkdir -p "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  cat > "$ctx/Containerfile" <<'EOF'
ARG BASE
FROM ${BASE}
# As the official rust:1-slim-bookworm image: ca-certificates, gcc, libc6-dev.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
EOF
  nice -n 19 podman build --build-arg BASE="$SLIM" -t "$RUST" "$ctx"
  rm -rf "$ctx"
fi

# --- 3. the image ----------------------------------------------------------------------------
step "build $IMAGE from $REPO/Dockerfile"
# --format docker: the OCI format has no HEALTHCHECK (podman would drop it with a warning).
nice -n 19 podman build --format docker \
  --build-arg RUST_IMAGE="$RUST" --build-arg RUNTIME_IMAGE="$SLIM" \
  -t "$IMAGE" "$REPO"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'onair|debian'
podman image inspect "$IMAGE" --format \
  'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} volumes={{.Config.Volumes}} ports={{.Config.ExposedPorts}} env={{.Config.Env}}'
# The HEALTHCHECK as stored in the image (docker format).
podman image inspect "$IMAGE" --format 'healthcheck={{.HealthCheck}}' 2>/dev/null || true

step "ldd of the binary inside the image"
libs=$(podman run --rm --entrypoint ldd "$IMAGE" /usr/local/bin/onair)
echo "$libs"
if grep -q 'not found' <<<"$libs"; then fail "a library is missing"; fi

# --- 4. run it ---------------------------------------------------------------------------------
step "run $IMAGE"
podman rm -f "$NAME" >/dev/null 2>&1 || true
podman volume rm -f onair-verify-data >/dev/null 2>&1 || true
podman run -d --name "$NAME" \
  -p "$RTMP_PORT:5222" -p "$SRT_PORT:6001/udp" -p "$HTTP_PORT:8080" \
  -p "127.0.0.1:$METRICS_PORT:9090" \
  -v onair-verify-data:/data -e ONAIR_ACCESS_TOKEN="$TOKEN" "$IMAGE"
for _ in $(seq 60); do
  grep -qx ready <<<"$(podman logs "$NAME" 2>/dev/null)" && break
  sleep 0.5
done
podman logs "$NAME"
grep -qx ready <<<"$(podman logs "$NAME" 2>/dev/null)" || fail "no 'ready' line"

step "user of the gateway process"
podman top "$NAME" user group pid args
podman exec "$NAME" id
[ "$(podman exec "$NAME" id -u)" = 10001 ] || fail "not running as uid 10001"
podman exec "$NAME" ls -ld /data

step "health endpoints on 127.0.0.1:$METRICS_PORT"
curl -fsS "http://127.0.0.1:$METRICS_PORT/healthz"; echo
curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz"; echo
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^onair_build_info'

step "HEALTHCHECK command (podman healthcheck run)"
podman healthcheck run "$NAME" && echo "healthcheck: healthy (exit 0)"
podman inspect "$NAME" --format 'health={{.State.Health.Status}}' 2>/dev/null \
  || podman inspect "$NAME" --format 'health={{.State.Healthcheck.Status}}'

step "HEALTHCHECK fails when /data does not take writes"
podman exec --user root "$NAME" chmod 0500 /data
curl -sS "http://127.0.0.1:$METRICS_PORT/readyz"; echo
if podman healthcheck run "$NAME"; then fail "healthcheck passed with /data read-only"; fi
echo "healthcheck: failed as it should (exit non-zero)"
podman exec --user root "$NAME" chmod 0700 /data
podman healthcheck run "$NAME" && echo "healthcheck: healthy again"

# A new live stream through the CLI inside the container; sets id, key, passphrase, playback.
create_stream() {
  local created
  created=$(podman exec "$NAME" onair live-streams create)
  echo "$created" | jq '{id, status, playback_ids}'   # not the stream key nor the passphrase
  id=$(echo "$created" | jq -r .id)
  key=$(echo "$created" | jq -r .stream_key)
  passphrase=$(echo "$created" | jq -r .srt_passphrase)
  playback=$(echo "$created" | jq -r '.playback_ids[0].id')
}

# 15 s of test pattern to URL in FORMAT, then the stream must be active and its playlist served.
# `-t` ends ffmpeg by itself (killed, it prints its URL in the error); whatever it prints has
# the stream key and passphrase masked.
publish_and_check() {
  local format=$1 url=$2 status
  timeout 60 ffmpeg -hide_banner -loglevel error -re -t 15 \
    -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine \
    -c:v libx264 -preset veryfast -g 30 -c:a aac -f "$format" "$url" 2>&1 \
    | sed "s/$key/STREAM_KEY/g; s/$passphrase/SRT_PASSPHRASE/g" || true
  status=$(podman exec "$NAME" onair live-streams get "$id" | jq -r .status)
  echo "live stream status after publishing: $status"
  [ "$status" = active ] || fail "the stream did not go active"
  curl -fsS "http://127.0.0.1:$HTTP_PORT/$playback.m3u8" | head -5
}

step "RTMP publish into the container with ffmpeg"
create_stream
publish_and_check flv "rtmp://127.0.0.1:$RTMP_PORT/app/$key"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^onair_live_stream_segments_written_total' || true
podman exec "$NAME" sh -c 'ls -R /data | head -20'

step "SRT publish into the container with ffmpeg (6001/udp)"
# ffmpeg 5.1 ends this publish with "av_interleaved_write_frame(): Input/output error" (20
# times) and errors on the trailer and close: the same seen with this image's binary run on
# the host without a container, so not the container's doing; the stream goes active.
create_stream
publish_and_check mpegts "srt://127.0.0.1:$SRT_PORT?streamid=$key&passphrase=$passphrase"

step "RTMPS on 443 as uid 10001 (--dev-tls)"
# Docker lets unprivileged processes in a container bind low ports by default
# (net.ipv4.ip_unprivileged_port_start=0); podman 4.3 does not: without the sysctl the start
# fails with "rtmps: cannot listen on 0.0.0.0:443 ... Permission denied".
podman rm -f onair-verify-443 >/dev/null 2>&1 || true
podman run -d --name onair-verify-443 --sysctl net.ipv4.ip_unprivileged_port_start=0 \
  -e ONAIR_DEV_TLS=true "$IMAGE" >/dev/null
for _ in $(seq 30); do
  grep -qx ready <<<"$(podman logs onair-verify-443 2>/dev/null)" && break
  sleep 0.5
done
podman logs onair-verify-443 2>/dev/null | grep '^rtmps' || true
grep -q '^rtmps listening on 0.0.0.0:443' <<<"$(podman logs onair-verify-443 2>/dev/null)" \
  || fail "rtmps did not listen on 443"
podman rm -f -v onair-verify-443 >/dev/null

step "a bind-mounted data directory must belong to uid 10001"
bind=$SCRATCH/bind-data
rm -rf "$bind" && mkdir -p "$bind"
podman rm -f onair-verify-bind >/dev/null 2>&1 || true
if podman run --rm -v "$bind:/data" "$IMAGE" 2>&1 | grep -E "^Error|^ +[A-Z].*os error"; then :; fi
chown 10001:10001 "$bind"
podman run -d --name onair-verify-bind -v "$bind:/data" "$IMAGE" >/dev/null
for _ in $(seq 30); do
  grep -qx ready <<<"$(podman logs onair-verify-bind 2>/dev/null)" && break
  sleep 0.5
done
grep -qx ready <<<"$(podman logs onair-verify-bind 2>/dev/null)" || fail "not ready on a chowned bind mount"
echo "owned by 10001: ready"
podman stop -t 15 onair-verify-bind >/dev/null && podman rm -v onair-verify-bind >/dev/null
rm -rf "$bind"

step "stop (SIGTERM) and exit code"
podman stop -t 15 "$NAME"
podman inspect "$NAME" --format 'exit code {{.State.ExitCode}}'
[ "$(podman inspect "$NAME" --format '{{.State.ExitCode}}')" = 0 ] || fail "exit code not 0"
podman logs "$NAME" 2>&1 | tail -3
podman rm -v "$NAME" >/dev/null
podman volume rm onair-verify-data >/dev/null

if [ "${KEEP_ROOTFS:-0}" != 1 ]; then
  rm -rf "$SCRATCH/rootfs-slim" "$SCRATCH/rootfs-slim.done" "$SCRATCH/rust-ctx"
fi
step "all checks passed"
