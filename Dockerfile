# inferq: one image for both services (command inferq-api or inferq-worker).
#   docker build -t inferq .            docker compose up --build --scale worker=3
# The ONNX Runtime library and the Silero VAD model come from pinned PyPI wheels, downloaded and
# checked against the sha256 pins in scripts/fetch_assets.py (the same script scripts/setup.sh runs).
# x86_64 only (that is the pinned onnxruntime wheel): on another host use --platform linux/amd64.

# ---- assets: libonnxruntime.so + Silero VAD model ------------------------------------------------
FROM python:3.11-slim-bookworm AS assets
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /assets
COPY scripts/fetch_assets.py ./fetch_assets.py
RUN python3 fetch_assets.py --cache /tmp/wheels \
        --ort-dest /out/onnxruntime/libonnxruntime.so.1.31.1 \
        --silero-dest /out/models/silero_vad/model.onnx \
    && rm -rf /tmp/wheels
COPY models/silero_vad/model.toml /out/models/silero_vad/model.toml

# ---- build: release binaries -----------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY .cargo ./.cargo
COPY shared ./shared
COPY api ./api
COPY worker ./worker
COPY tests ./tests
COPY bench ./bench
COPY cli ./cli
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins -p inferq-api -p inferq-worker \
    && install -m 0755 target/release/inferq-api target/release/inferq-worker /usr/local/bin/

# ---- runtime ------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# Debian stable's security updates replace exact versions, so apt packages are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 inferq \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin inferq
COPY --from=assets /out/onnxruntime/libonnxruntime.so.1.31.1 /opt/onnxruntime/libonnxruntime.so.1.31.1
COPY --from=assets /out/models /models
COPY --from=build /usr/local/bin/inferq-api /usr/local/bin/inferq-worker /usr/local/bin/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    INFERQ_MODELS_DIR=/models \
    INFERQ_BIND=0.0.0.0:8080 \
    RUST_LOG=info
USER 10001:10001
EXPOSE 8080
CMD ["inferq-api"]
