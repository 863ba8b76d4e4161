# greeter in a container: FROM scratch, the host's release binaries (stripped) and the
# shared libraries ldd names for them, nothing else (no shell, no base image to pull).
#
#   scripts/image.sh            # cargo build --release; strip and stage in target/image/rootfs
#   docker build -t greeter .   # .dockerignore sends only target/image/rootfs
#
# Configure it by GREETER_* variables (-e) or a config file in a mounted directory
# (-v DIR:/etc/greeter:ro: the directory, never the file alone: a file mount pins the
# inode it was started with, so a greeter.toml replaced by rename never arrives). The
# health check reads the same variables and file, not flags given after the image name.
FROM scratch
COPY target/image/rootfs/ /
# The image's own /etc/greeter/greeter.toml has no keys: the server starts without a
# mount, and a directory mounted over /etc/greeter brings the one SIGHUP re-reads.
ENV GREETER_CONFIG=/etc/greeter/greeter.toml \
    GREETER_HOST=0.0.0.0 \
    GREETER_PORT=8080 \
    GREETER_METRICS=0.0.0.0:9464
EXPOSE 8080 9464
# A numeric user: no /etc/passwd in the image, and runAsNonRoot can check a number.
USER 65532:65532
STOPSIGNAL SIGTERM
# A real connection to the first listener (with a PROXY header if it needs one), and
# the greeting's bytes compared: exit 0 only if they are exact.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/bin/greeter-server", "--health-check"]
ENTRYPOINT ["/usr/bin/greeter-server"]
