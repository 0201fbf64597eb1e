# RiskFlow image: the `riskflow` CLI (worker, simulate, replay, alerts ...).
# Used by docker-compose.yml; `docker build -t riskflow .` builds it alone.
#
# The image runs the compiled build of the detectors' hot path (RISKFLOW_COMPILE=1, mypyc;
# docs/performance.md): a builder stage with a C compiler builds the riskflow
# wheel, and the runtime stage installs it without one. `riskflow --version` says which build runs.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1
# gcc and the C library headers; the Python headers come with the python image
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY build_support ./build_support
COPY riskflow ./riskflow
COPY detectors ./detectors
COPY streams ./streams
RUN RISKFLOW_COMPILE=1 pip wheel --no-deps --wheel-dir /wheels ".[postgres]"

FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RISKFLOW_DATA_DIR=/data \
    RISKFLOW_METRICS_HOST=0.0.0.0

WORKDIR /app
COPY --from=build /wheels /wheels
# /models: peer-group model artefacts (a named volume in docker-compose.yml; the image's
# directory gives the new volume its owner, so the unprivileged user can write it).
RUN pip install "$(ls /wheels/riskflow-*.whl)[postgres]" && rm -r /wheels \
    && python -c "import detectors, sys; sys.exit(not detectors.compiled())" \
    && useradd --system --uid 10001 --home-dir /data --create-home riskflow \
    && mkdir /models && chown riskflow:riskflow /models

USER riskflow
VOLUME ["/data"]
EXPOSE 9464
ENTRYPOINT ["riskflow"]
CMD ["worker"]
