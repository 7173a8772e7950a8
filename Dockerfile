# syntax=docker/dockerfile:1
# ai-gateway image: built with the `dist` profile (fat LTO, one codegen unit), profile-guided
# (scripts/build-dist.sh: an instrumented build, a training run on loopback, the final build;
# docs/benchmarks.md, "Profile-guided build"; PGO=0 for a plain one), run on distroless
# (glibc, CA roots, no shell) as a non-root user. The binary uses rustls: no OpenSSL in the image.
#   docker build -t ai-gateway .
#   docker run -p 8080:8080 ai-gateway          # no file: the built-in default, model `mock`
#   docker run -p 8080:8080 -v $PWD/gateway.yaml:/etc/ai-gateway/gateway.yaml \
#     -e AI_GATEWAY_CONFIG=/etc/ai-gateway/gateway.yaml ai-gateway
# With no configuration file the gateway listens on $AI_GATEWAY_LISTEN (0.0.0.0:8080 here); a
# file of your own must listen on 0.0.0.0 too. Behind a slow or blocked crates.io, build through
# a mirror (any registry that speaks the sparse protocol), e.g.
#   docker build --build-arg CARGO_REGISTRY=sparse+https://rsproxy.cn/index/ -t ai-gateway .
#   docker build --build-arg CARGO_REGISTRY=sparse+https://mirrors.tuna.tsinghua.edu.cn/crates.io-index/ -t ai-gateway .
# and the base images through a Docker registry mirror (the daemon's `registry-mirrors`), or name
# them: --build-arg RUST_IMAGE=… --build-arg RUNTIME_IMAGE=….

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# Empty: crates.io itself. Otherwise the index URL of a crates.io mirror, e.g. sparse+https://….
ARG CARGO_REGISTRY=
# 1: the profile-guided build (needs wrk and curl for its training run, and rustup's llvm-tools).
ARG PGO=1
RUN if [ "$PGO" != 0 ]; then \
      apt-get update && apt-get install -y --no-install-recommends wrk curl \
      && rm -rf /var/lib/apt/lists/* && rustup component add llvm-tools; \
    fi
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ -n "$CARGO_REGISTRY" ]; then \
      printf '[source.crates-io]\nreplace-with = "mirror"\n[source.mirror]\nregistry = "%s"\n' \
        "$CARGO_REGISTRY" >> /usr/local/cargo/config.toml; \
    fi \
 && PGO="$PGO" scripts/build-dist.sh --locked \
 && cp target/dist/ai-gateway /ai-gateway \
 && mkdir -p /rootfs/data /rootfs/etc/ai-gateway \
 && cp examples/gateway.yaml /rootfs/etc/ai-gateway/gateway.example.yaml

FROM ${RUNTIME_IMAGE}
COPY --from=build /ai-gateway /usr/local/bin/ai-gateway
COPY --from=build --chown=65532:65532 /rootfs/ /
# No AI_GATEWAY_CONFIG: without a file the built-in default serves (set it to a mounted file).
ENV AI_GATEWAY_LISTEN=0.0.0.0:8080
WORKDIR /data
EXPOSE 8080
USER 65532:65532
# The image has no shell and no curl: the binary GETs its own /health (exit 0 on 200). With a
# configuration file it reads the listen address from the same file.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/ai-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ai-gateway"]
CMD ["serve"]
