# s3s-fs: the small S3-compatible server Gremium's tests use (scripts/s3s.sh), as an
# image for docker/compose.cluster.yml. Pinned to 0.14.1 like the tests (newer
# releases need a newer rustc). For production use a real object store (S3, Ceph,
# Garage, MinIO): s3s-fs keeps objects as plain files on one disk.
FROM rust:1.95-bookworm AS build
RUN cargo install s3s-fs@0.14.1 --locked --features binary --root /out

FROM debian:bookworm-slim
COPY --from=build /out/bin/s3s-fs /usr/local/bin/s3s-fs
RUN useradd --system --home /data --create-home s3
USER s3
VOLUME /data
ENTRYPOINT ["s3s-fs"]
