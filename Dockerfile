# syntax=docker/dockerfile:1
# wagate: multi-stage build, small non-root runtime image.
#
# The cache mounts keep cargo's registry and target directory between
# builds, so a source change rebuilds wagate's own crates, not whatsapp-rust
# and the rest of the dependency tree (needs BuildKit, the default builder).
# The shipped binary is stripped; its debug info is the `debug` stage:
#   docker build --target debug --output type=local,dest=./debug .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p wagate \
 && objcopy --only-keep-debug target/release/wagate /wagate.debug \
 && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=/wagate.debug \
        target/release/wagate /wagate

FROM scratch AS debug
COPY --from=build /wagate.debug /

FROM debian:bookworm-slim
# CA certificates: HTTPS to Laravel and rediss:// trust the system store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home wagate \
 && mkdir -p /app/data && chown wagate:wagate /app/data && chmod 0700 /app/data
COPY --from=build /wagate /usr/local/bin/wagate
USER wagate
WORKDIR /app
ENV PORT=4000 LOG_FORMAT=json DATA_DIR=/app/data
# devices/{id}.db, the keys of each linked device: keep it on a volume.
VOLUME /app/data
EXPOSE 4000
# SIGTERM drains (sends in flight, sessions, batchers); give it the grace
# that deploy/docker-compose.yml gives (stop_grace_period).
STOPSIGNAL SIGTERM
# The binary probes itself: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["wagate", "healthcheck"]
ENTRYPOINT ["wagate"]
