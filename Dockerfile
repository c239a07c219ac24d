# wagate: multi-stage build, small non-root runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wagate \
 && cp target/release/wagate /wagate

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --create-home wagate \
 && mkdir -p /app/data && chown wagate:wagate /app/data
COPY --from=build /wagate /usr/local/bin/wagate
USER wagate
WORKDIR /app
ENV PORT=4000 LOG_FORMAT=json DATA_DIR=/app/data
# whatsapp.db, the keys of every linked device: keep it on a volume.
VOLUME /app/data
EXPOSE 4000
# The binary probes itself: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["wagate", "healthcheck"]
ENTRYPOINT ["wagate"]
