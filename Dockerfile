# The hiclaw-bot image: the bot with the Kubernetes backend and leader election (the
# `kubernetes` extra), run as an unprivileged user. Build from the repository root:
#   docker build -t hiclaw/hiclaw-bot:0.1.0 .
# Run it with a configuration mounted at /etc/hiclaw/config.yaml and a volume on /data (the
# SQLite database); secrets come from the environment (HICLAW_MATRIX__BOT__PASSWORD=...).
# deploy/kubernetes/ runs it on a cluster.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/hiclaw
# The dependency pins live in pyproject.toml; `.[kubernetes]` adds kubernetes==37.0.1.
COPY pyproject.toml README.md ./
COPY hiclaw_bot ./hiclaw_bot
COPY backends ./backends
COPY storage ./storage
RUN pip install ".[kubernetes]" \
    && groupadd --system --gid 10001 hiclaw \
    && useradd --system --no-create-home --home-dir /data --uid 10001 --gid 10001 hiclaw \
    && mkdir -p /data /etc/hiclaw \
    && chown hiclaw:hiclaw /data

# data_dir in the configuration is overridden here, so a relative one cannot land beside the
# (read-only) mounted configuration file.
ENV HICLAW_CONFIG=/etc/hiclaw/config.yaml \
    HICLAW_DATA_DIR=/data
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
# The HTTP API (api.listen, 127.0.0.1:8090 by default); a standby replica answers /healthz too.
EXPOSE 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://' + os.environ.get('HICLAW_HEALTH_ADDRESS', '127.0.0.1:8090') + '/healthz', timeout=4)"]
# SIGTERM cancels the bot: operations stop at a step boundary and resume on the next start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hiclaw-bot"]
CMD ["run", "--config", "/etc/hiclaw/config.yaml"]
