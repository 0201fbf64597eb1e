# RiskFlow image: the `riskflow` CLI (worker, simulate, replay, alerts ...).
# Used by docker-compose.yml; `docker build -t riskflow .` builds it alone.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RISKFLOW_DATA_DIR=/data \
    RISKFLOW_METRICS_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY riskflow ./riskflow
COPY detectors ./detectors
COPY streams ./streams
# /models: peer-group model artefacts (a named volume in docker-compose.yml; the image's
# directory gives the new volume its owner, so the unprivileged user can write it).
RUN pip install ".[postgres]" && useradd --system --uid 10001 --home-dir /data --create-home riskflow \
    && mkdir /models && chown riskflow:riskflow /models

USER riskflow
VOLUME ["/data"]
EXPOSE 9464
ENTRYPOINT ["riskflow"]
CMD ["worker"]
