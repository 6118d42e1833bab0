# The image the Helm chart runs (helm/vigil): every Vigil service, chosen by the first argument
# (`agent`, `analytics`, `alerting`). Build from the repository root:
#   docker build -t <registry>/vigil:<version> .
# NVML comes from the node at run time (the NVIDIA container runtime injects libnvidia-ml and
# nvidia-smi), so the image holds no driver and no CUDA.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY vigil/ vigil/
COPY collectors/ collectors/
COPY analytics/ analytics/
COPY alerting/ alerting/
# A wheel, not the source tree: the runtime image gets the installed package only.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# smartctl and ipmitool for the agent's smart and ipmi collectors (they also need the host's devices).
# Unpinned: they follow the base image's Debian release, whose point releases would break a pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends smartmontools ipmitool \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
# The extras of the three services the chart runs: agent (collectors), server (analytics and
# alerting) and gpu (nvidia-ml-py for NVML); not embedded (the chart runs on your Kafka) nor deep
# (torch, GBs, for the autoencoder detector that is off by default). The wheel is the one built
# above; its dependencies resolve within pyproject.toml's ranges.
# hadolint ignore=DL3013
RUN WHEEL="$(ls /wheels/vigil_aiops-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[agent,server,gpu]" \
    && rm -rf /wheels
# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it (the chart runs as 10001 too).
RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/vigil --shell /usr/sbin/nologin vigil \
    && mkdir -p /var/lib/vigil /etc/vigil \
    && chown 10001:10001 /var/lib/vigil
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /var/lib/vigil
EXPOSE 9479 9480 8080
ENTRYPOINT ["vigil"]
CMD ["--help"]
