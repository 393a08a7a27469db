# The agent image, for people who build with Docker. Without Docker,
# scripts/image writes the same image as an OCI archive.
#   docker build -t ghcr.io/kubectl-ns/kubectl-ns-agent:0.1.0 .
# (amd64; for another architecture build on it, with TARGET its Rust triple.)
FROM rust:1-bookworm AS build
ARG TARGET=x86_64-unknown-linux-gnu
WORKDIR /src
COPY . .
# libseccomp, linked statically: the agent compiles containers' seccomp
# profiles for -m tools with it.
RUN apt-get update && apt-get install -y --no-install-recommends libseccomp-dev
RUN LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="/usr/lib/${TARGET%%-unknown-*}-linux-gnu" \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p kns-agent --target "$TARGET" \
 && strip -o /kubectl-ns-agent "target/$TARGET/release/kubectl-ns-agent"

FROM scratch
COPY --from=build /kubectl-ns-agent /kubectl-ns-agent
ENTRYPOINT ["/kubectl-ns-agent"]
