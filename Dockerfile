# syntax=docker/dockerfile:1
# recording-reconciler: `docker build -t recording-reconciler .` then
# `docker run -p 8080:8080 --env-file deploy/env.example recording-reconciler`.
# The base is pinned to an exact Python release (the minor the test suite runs on); pin its
# digest too in your own build (`docker buildx imagetools inspect python:3.11.7-slim-bookworm`).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# -- build: the project and its pinned dependencies into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
ENV VIRTUAL_ENV=/opt/recording-reconciler \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY service/ service/
COPY reconcilers/ reconcilers/
# The same command as tests/test_dockerfile.py replays in a fresh venv: exact versions only.
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install -c constraints.txt . \
    && "$VIRTUAL_ENV/bin/recctl" serve --help > /dev/null

# -- runtime: the venv alone, run by an unprivileged user -------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 recorder \
    && useradd --system --uid 10001 --gid recorder --no-create-home \
        --home-dir /var/lib/recording-reconciler --shell /usr/sbin/nologin recorder \
    && install -d -o recorder -g recorder -m 0750 /var/lib/recording-reconciler
COPY --from=build /opt/recording-reconciler /opt/recording-reconciler
ENV PATH=/opt/recording-reconciler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATABASE_URL=sqlite:////var/lib/recording-reconciler/recorder.db
WORKDIR /var/lib/recording-reconciler
VOLUME ["/var/lib/recording-reconciler"]
USER 10001:10001
EXPOSE 8080
# Liveness only (the process answers): /readyz is for load balancers and can be 503 while draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# SIGTERM drains (readyz 503, passes in flight finished, leases released) and exits 0 within
# SHUTDOWN_TIMEOUT_SECONDS; give `docker stop -t` a few seconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["recctl"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
