# syntax=docker/dockerfile:1
#
# vkv in a minimal image: a fully static binary on distroless, run as the
# non-root user 65532, with its database on the /data volume.
#
#   docker build -t vkv .
#   docker run -d -p 8080:8080 -v vkv-data:/data --name vkv vkv
#   docker run ... -e VKV_CACHE_SIZE=10000 -e VKV_LOG_LEVEL=warn vkv
#
# Configure with VKV_* environment variables rather than flags: the
# HEALTHCHECK (`vkv health`) reads VKV_BIND to know where to probe.

ARG RUST_VERSION=1.95

# ------------------------------------------------------------------ build ---
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Fully static with glibc: the image's libc6-dev ships libc.a, and rusqlite
# builds its bundled SQLite with the image's cc, so nothing else is needed.
# --target is required: without it RUSTFLAGS would also apply to build
# scripts and proc-macros, which cannot be linked statically.
# Static glibc is fine here because vkv does no NSS lookups except resolving
# the --bind host: numeric addresses (the default) need no lookup at all, and
# hostnames still resolve through /etc/hosts and DNS (glibc >= 2.34 links
# those backends into libc.a); other NSS modules (mdns, ldap...) would need
# dlopen and do not work.
# The cache mounts keep the registry and target dir between builds
# (BuildKit); the binary is copied out of the mount to /out. The build fails
# if the binary still has an ELF interpreter or needs a shared library.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target "$target" --bin vkv; \
    mkdir -p /out/data; \
    cp "target/$target/release/vkv" /out/vkv; \
    if readelf -l /out/vkv | grep -q INTERP || readelf -d /out/vkv | grep -q NEEDED; then \
      readelf -d /out/vkv; echo "vkv is not statically linked" >&2; exit 1; \
    fi; \
    /out/vkv --version

# ---------------------------------------------------------------- runtime ---
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vkv /vkv
# The database directory, writable by the non-root user (uid/gid 65532,
# "nonroot" in distroless); a fresh named volume inherits this ownership.
COPY --from=build --chown=65532:65532 /out/data /data
ENV VKV_BIND=0.0.0.0:8080 \
    VKV_DB=/data/kv_store.db
VOLUME /data
EXPOSE 8080
USER 65532:65532
# `vkv health` probes GET /health at VKV_BIND (0.0.0.0 is probed on
# 127.0.0.1) and exits 0 only on a 200; no curl in this image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/vkv", "health"]
# SIGTERM (docker stop) stops vkv gracefully.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/vkv"]
