# revmon's production image (docs/deployment.md).
#
# Two stages: the first installs the locked dependencies (requirements.lock, every one
# pinned with its hashes; the build tools from requirements-build.lock, hashed too) and revmon itself into a virtual environment; the second copies
# only that environment onto the same pinned base. revmon runs as a non-root user, on a
# read-only root filesystem (`read_only: true` in compose, `readOnlyRootFilesystem` in
# Kubernetes), with its state (RocksDB tables) on the /var/lib/revmon volume.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/revmon \
    && /opt/revmon/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY revmon ./revmon
# revmon's own wheel is built with the locked, hash-checked build tools (no isolated build
# fetching setuptools unchecked); the build venv stays in this stage.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/revmon/bin/pip install --no-cache-dir --no-deps /tmp/dist/revmon-*.whl

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 revmon \
    && useradd --system --uid 10001 --gid revmon --no-create-home \
       --home-dir /var/lib/revmon --shell /usr/sbin/nologin revmon \
    && mkdir -p /var/lib/revmon \
    && chown revmon:revmon /var/lib/revmon
COPY --from=build /opt/revmon /opt/revmon
ENV PATH=/opt/revmon/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REVMON_WEB_HOST=0.0.0.0 \
    REVMON_WORKER__DATA_DIR=/var/lib/revmon
USER 10001:10001
WORKDIR /var/lib/revmon
VOLUME ["/var/lib/revmon"]
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"]
ENTRYPOINT ["revmon"]
CMD ["run"]
