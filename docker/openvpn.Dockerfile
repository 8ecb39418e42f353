# An example OpenVPN 2.6 instance; its config and keys come from a volume.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends openvpn \
	&& rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["openvpn", "--config", "/etc/openvpn/server.conf"]
