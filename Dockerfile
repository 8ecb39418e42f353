# portstripe with the HAProxy and iptables it drives (Debian 12's, as on a node).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /portstripe ./cmd/portstripe

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends haproxy iptables \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /portstripe /usr/local/bin/portstripe
ENTRYPOINT ["/usr/local/bin/portstripe"]
