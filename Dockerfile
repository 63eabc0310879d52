# tether for CI systems other than GitHub Actions: an image with Nix,
# tether and the cross-compiled tether agents.
#
#   docker build -t tether .
#   docker run --rm -v "$PWD:/work" tether plan
#   docker run --rm -v "$PWD:/work" -e INPUT_COMMAND=deploy \
#       -e INPUT_SSH_PRIVATE_KEY -e INPUT_KNOWN_HOSTS tether action
#
# `tether action` reads the same inputs as the GitHub Action, as INPUT_<NAME>
# variables (underscores for hyphens), and reports to the log and exit code.
#
# On GitHub Actions use action.yml instead: it runs on the runner, beside the
# runner's own /nix/store.

# Pin the Nix image by digest for reproducible builds.
ARG NIX_IMAGE=nixos/nix:latest

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY pkg ./pkg
COPY scripts ./scripts
RUN go build -trimpath -ldflags '-s -w' -o /out/bin/tether ./cmd/tether \
 && bash scripts/build-agents.sh /out/share/tether/agents

FROM ${NIX_IMAGE}
# tether finds its agents in ../share/tether/agents beside its binary; the
# variable says so for anyone reading the environment.
COPY --from=build /out/bin/tether /usr/local/bin/tether
COPY --from=build /out/share/tether/agents /usr/local/share/tether/agents
ENV PATH=/usr/local/bin:$PATH \
    TETHER_AGENTS_DIR=/usr/local/share/tether/agents \
    NIX_CONFIG="experimental-features = nix-command flakes"
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["--help"]
