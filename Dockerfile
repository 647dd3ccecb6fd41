# job-launcher-mock: a small, non-root image of the mock of Fusion's job-launcher API.
#
#   docker build -t job-launcher-mock .
#   docker run -p 8083:8083 -v jlm-data:/data job-launcher-mock
#
# Build stage: the toolchain the project is tested with, on Debian 12 so that the
# binary's glibc matches the runtime's (distroless cc-debian12). The slim image has gcc
# and libc6-dev, which mimalloc's C (built with cc) needs.
FROM rust:1.95-slim-bookworm AS build

WORKDIR /build
# Strip symbols from the release binary without touching Cargo.toml's profile. An env
# var rather than --config on the command line, so both builds below share the profile
# (and so the dependency layer is reused).
ENV CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_TERM_COLOR=never

# Dependencies first, against a dummy lib and main: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, and is what the CI's layer cache (type=gha) keeps.
# The image needs only the library and the binary, so the manifest's [[bench]],
# [[example]] and [[test]] tables are dropped here (awk: from such a header to the next
# table): a target whose file is not copied in cannot fail the manifest's parse, and
# copying benches/ or tests/ in would rebuild this layer on every change to them.
# /out/data becomes the image's /data, owned by the runtime user (distroless has no
# shell to mkdir/chown in).
COPY Cargo.toml Cargo.lock ./
RUN awk '/^[[:space:]]*\[/ { skip = /^[[:space:]]*\[\[[[:space:]]*(bench|example|test)[[:space:]]*\]\]/ } !skip' \
        Cargo.toml > Cargo.toml.image \
    && mv Cargo.toml.image Cargo.toml \
    && mkdir -p src /out/data \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin job-launcher-mock \
    && rm -rf src

# The real sources. COPY keeps the context's mtimes, which may be older than the dummy
# build's outputs: touch the crate roots so cargo rebuilds this package.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin job-launcher-mock \
    && cp target/release/job-launcher-mock /out/job-launcher-mock \
    && /out/job-launcher-mock --help > /dev/null

# Runtime: glibc, libgcc and CA certificates, no shell, no package manager; the
# :nonroot tag runs as uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="job-launcher-mock" \
      org.opencontainers.image.description="A stand-in for Lucidworks Fusion's job-launcher API, for tests" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build /out/job-launcher-mock /usr/local/bin/job-launcher-mock

# Listen on every interface of the container; persist to the volume; log JSON lines.
# Change the port with JLM_PORT (not --port): the healthcheck reads JLM_PORT too.
ENV JLM_BIND=0.0.0.0 \
    JLM_PORT=8083 \
    JLM_DATA_DIR=/data \
    JLM_LOG_FORMAT=json

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8083
VOLUME ["/data"]

# The binary checks itself (GET http://127.0.0.1:$JLM_PORT/actuator/health): no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/job-launcher-mock", "healthcheck"]

# SIGTERM (docker stop) drains in-flight requests and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/job-launcher-mock"]
