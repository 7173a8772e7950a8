# syntax=docker/dockerfile:1
# ai-gateway image: built with the release profile (fat LTO), run on distroless (glibc, CA roots,
# no shell) as a non-root user. The binary uses rustls: no OpenSSL in the image.
#   docker build -t ai-gateway .
#   docker run -p 8080:8080 -v $PWD/gateway.yaml:/etc/ai-gateway/gateway.yaml ai-gateway
# The configuration must listen on 0.0.0.0 (the built-in default listens on 127.0.0.1 only).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ai-gateway \
 && cp target/release/ai-gateway /ai-gateway \
 && mkdir -p /rootfs/data /rootfs/etc/ai-gateway \
 && cp examples/gateway.yaml /rootfs/etc/ai-gateway/gateway.example.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /ai-gateway /usr/local/bin/ai-gateway
COPY --from=build --chown=65532:65532 /rootfs/ /
ENV AI_GATEWAY_CONFIG=/etc/ai-gateway/gateway.yaml
WORKDIR /data
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ai-gateway"]
CMD ["serve"]
