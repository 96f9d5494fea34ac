# An RTMP receiver for docker/compose.cluster.yml: Debian's nginx with the RTMP module
# (the same packages the tests use), configured by nginx-rtmp.conf.
FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nginx-light libnginx-mod-rtmp \
    && rm -rf /var/lib/apt/lists/*
COPY nginx-rtmp.conf /etc/nginx/rtmp.conf
ENTRYPOINT ["nginx", "-c", "/etc/nginx/rtmp.conf"]
