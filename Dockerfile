# syntax=docker/dockerfile:1
#
# OnAir container image: `docker build -t onair .` (or `podman build`), then
#   docker run -p 5222:5222 -p 6001:6001/udp -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v onair-data:/data -e ONAIR_ACCESS_TOKEN=my-id:a-secret-of-16-or-more-chars onair
# (README.md "Docker", docs/OPERATIONS.md "Container").
#
# Two stages: `build` compiles the release binary with the official Rust image; the runtime
# stage is Debian slim with the binary, CA certificates and busybox (for the HEALTHCHECK), run
# as a non-root user. Everything comes from crates.io and Debian's archive only.
#
# The base images are build arguments so that a machine without access to an image registry
# can build from images it made itself (deploy/verify-image.sh builds both with debootstrap):
#   podman build --build-arg RUST_IMAGE=localhost/onair-rust:bookworm \
#                --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim -t onair .
ARG RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# The Rust image has gcc and libc6-dev (aws-lc-sys and the bundled SQLite are C, built by the
# cc crate: no cmake, no nasm on Linux; verified on x86_64); OpenH264 (the slate's encoder, built
# from its bundled source) is C++ and needs g++.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io downloads and the target directory between builds; the
# binary is copied out of the cached target directory within the same step. The release
# profile keeps line tables for backtraces (116 MB, most of it the C and C++ libraries' debug
# information); the image's copy drops the debug sections and keeps the symbols (24 MB): a
# panic's backtrace still names every function, without file and line.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p onair \
 && install -m 0755 target/release/onair /usr/local/bin/onair \
 && strip --strip-debug /usr/local/bin/onair

FROM ${RUNTIME_IMAGE}
# Runtime libraries of the binary (`ldd onair`): libc6, libgcc-s1 and libstdc++6 (OpenH264),
# already part of Debian slim; SQLite and the TLS stack are linked in statically.
# ca-certificates: webhook endpoints over https are verified against the system's roots.
# busybox (one ~1 MB file, needing only libc; no applet links are made): its `wget` is the
# HEALTHCHECK's HTTP client, since slim images have neither curl nor wget, and curl would
# bring libcurl with a dozen libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox libgcc-s1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 onair \
 && useradd --system --uid 10001 --gid onair --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin onair \
 && mkdir -p /data \
 && chown onair:onair /data \
 && chmod 0700 /data
COPY --from=build /usr/local/bin/onair /usr/local/bin/onair

# The database and the recordings (`--data-dir`): keep them on a volume.
VOLUME ["/data"]
# The metrics and health listener must be reachable from outside the container's network
# namespace (the default, 127.0.0.1:9090, is not): publish it to the host's loopback only
# (`-p 127.0.0.1:9090:9090`), since the metrics name live streams.
ENV ONAIR_DATA_DIR=/data \
    ONAIR_METRICS_ADDR=0.0.0.0:9090
# RTMP, RTMPS (off until it has a certificate), SRT, HTTP (API and HLS), metrics and health.
EXPOSE 5222/tcp 443/tcp 6001/udp 8080/tcp 9090/tcp

USER onair:onair
WORKDIR /data

# Ready, not merely up: `docker ps` shows `healthy` (and compose's `service_healthy` waits) only
# once every listener is bound and the data directory takes writes with room to spare. The port
# follows ONAIR_METRICS_ADDR when it is changed; with the metrics listener off the check fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD busybox wget -q -O /dev/null "http://127.0.0.1:${ONAIR_METRICS_ADDR##*:}/readyz" || exit 1

# SIGTERM (docker stop) closes open segments and exits 0 within a 10 s grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/onair"]
CMD ["serve"]
