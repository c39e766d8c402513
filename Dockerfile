# kubemq-kinesis container image.
# Build:  docker build -t kubemq-kinesis .
# Run:    docker run -v $PWD/config.yaml:/etc/kubemq-kinesis/config.yaml -p 8080:8080 kubemq-kinesis
#         (or -e CONFIG="$(base64 -w0 config.yaml)"; arguments replace the default
#         `--log-format json`, e.g. `kubemq-kinesis --check`)
#
# The builder stage uses the same `make deps` / `make install` that CI runs
# (KK_DEPS=build skips the npm test peers, which a build does not need).
FROM debian:12 AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        make gcc cmake pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN KK_DEPS=build make deps \
 && KK_DEPS=build make install PREFIX=/opt/kubemq-kinesis

FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libnghttp2-14 libc-ares2 libprotobuf-c1 libcurl4 libssl3 libjansson4 libyaml-0-2 libmicrohttpd12 \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kubemq-kinesis
COPY --from=build /opt/kubemq-kinesis/bin/kubemq-kinesis /usr/local/bin/kubemq-kinesis
# The default config: examples/container.yaml. Without --config the daemon
# reads CONFIG, else config.yaml in the working directory.
WORKDIR /etc/kubemq-kinesis
COPY examples/container.yaml /etc/kubemq-kinesis/config.yaml
USER 10001
EXPOSE 8080
# Kubernetes probes: GET /health (liveness) and GET /ready (readiness).
ENTRYPOINT ["/usr/local/bin/kubemq-kinesis"]
CMD ["--log-format", "json"]
