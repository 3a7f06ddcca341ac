# syntax=docker/dockerfile:1
# Ringside container image: the sidecar daemon (ringside) and the CLIs (ringside-pub, ringside-run).
#   docker build -t registry.example.com/ringside:0.1.0 .
# Two stages: a Debian bookworm build stage with the -dev packages, and a bookworm-slim runtime stage
# with only the shared libraries, running as the non-root uid 65532. Checked statically by ctest
# (tests/k8s/check-dockerfile.mjs, label k8s): keep the runtime list in step with the -dev list.
# For reproducible builds pin the base images by digest (debian:bookworm@sha256:...).

ARG DEBIAN_TAG=bookworm

FROM debian:${DEBIAN_TAG} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libev-dev libwslay-dev libhiredis-dev libsodium-dev libjwt-dev libjansson-dev \
      libmsgpack-dev zlib1g-dev libssl-dev \
      npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# npm fetches the pinned xterm.js bundle (sidecar/web/package-lock.json) at configure time; the
# check below fails the image build rather than shipping a dashboard without it.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGSIDE_TESTS=OFF \
 && grep -q '^/vendor/xterm.js|' build/sidecar/web/assets.manifest \
 && cmake --build build -j"$(nproc)" \
 && mkdir -p /out/bin /out/lib \
 && cp build/bin/ringside build/bin/ringside-pub build/bin/ringside-run /out/bin/ \
 && strip --strip-debug /out/bin/* \
 && find build/lib -maxdepth 1 -name 'libringside.so*' -exec cp -a {} /out/lib/ \;

FROM debian:${DEBIAN_TAG}-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libev4 libwslay1 libhiredis0.14 libsodium23 libjwt0 libjansson4 libmsgpackc2 zlib1g libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 ringside \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ringside
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/lib/ /usr/local/lib/
RUN ldconfig
# In Kubernetes the rings live in an emptyDir (medium: Memory) mounted at RINGSIDE_SHM_DIR; the root
# filesystem can be read-only (nothing is written outside the ring directory).
USER 65532:65532
EXPOSE 8765
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (k8s/base/deployment.yaml).
ENTRYPOINT ["ringside"]
CMD ["serve"]
