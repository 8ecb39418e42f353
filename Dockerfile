# portstripe with what `portstripe apply` drives (Debian 12's, as on a node):
# haproxy, iptables (iptables-nft), and iproute2 for the throwaway network
# namespace apply loads the rules into before it touches the node's.
# e2e/container_test.go runs this image's ENTRYPOINT with docker-compose.yml's
# command, capabilities and volumes, on these packages' binaries only.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /portstripe ./cmd/portstripe

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends haproxy iptables iproute2 \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /portstripe /usr/local/bin/portstripe
ENTRYPOINT ["/usr/local/bin/portstripe"]
