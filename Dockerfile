# ai-diary API image. One image, three roles (see docker-compose.yml):
#   app           gunicorn -c gunicorn.conf.py "app:create_app()"   (default CMD)
#   wandb-bridge  wandb-bridge                                       (OTLP/HTTP -> W&B)
#   local-llm     python -m app.local_llm                            (OpenAI-compatible stand-in)
# No secret is passed at build time: keys arrive only as runtime environment (compose .env, ECS secrets).

# Pinned base (patch release + Debian suite); bump deliberately, together with requirements.lock.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a self-contained virtualenv from the pinned lock ------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# No UV_COMPILE_BYTECODE: precompiled .pyc files were 55 MB of a 366 MB image; the site-packages stay read-only and
# PYTHONDONTWRITEBYTECODE keeps them so (each process compiles what it imports once, in memory: about 1 s at start).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8 \
    && python -m venv --without-pip /opt/venv
WORKDIR /src
# The two distributions of this repository, non-editable: the W&B exporter (exporters/, otel-wandb) and the service.
# Every dependency version is fixed by requirements.lock (which also pins the dev extras: not installed here);
# --no-sources: otel-wandb comes from ./exporters on this command line, never from an index.
COPY pyproject.toml requirements.lock README.md ./
COPY exporters ./exporters
COPY app ./app
RUN uv pip install --python /opt/venv/bin/python --no-sources --constraint requirements.lock ./exporters .

# ---- runtime: the venv, the gunicorn config and a non-root user --------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG APP_VERSION=dev
LABEL org.opencontainers.image.title="ai-diary" \
      org.opencontainers.image.description="AI diary API with an OpenTelemetry -> W&B pipeline" \
      org.opencontainers.image.version="${APP_VERSION}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_VERSION=${APP_VERSION} \
    PORT=8000 \
    WANDB_DIR=/var/lib/ai-diary \
    HOME=/home/app
# uid/gid 10001, like the collector image, so a shared volume needs one owner (a regular account: 10001 is above
# SYS_UID_MAX, --system would warn; --no-log-init: no sparse lastlog/faillog entries for a high uid).
RUN groupadd --gid 10001 app \
    && useradd --no-log-init --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/ai-diary /var/log/ai-diary \
    && chown app:app /var/lib/ai-diary /var/log/ai-diary
COPY --from=build /opt/venv /opt/venv
# Flask's instance folder of the installed app (<venv>/var/<import name of app/factory.py>-instance) is the data
# directory: without PSEUDONYM_SECRET (development only; production refuses to start) the generated pseudonym key is
# kept there, on the app-data volume in compose, so pseudonyms stay stable across container restarts.
RUN mkdir -p /opt/venv/var && ln -s /var/lib/ai-diary /opt/venv/var/app.factory-instance
WORKDIR /srv/ai-diary
COPY gunicorn.conf.py alerts.yaml ./
ENV ALERTS_FILE=/srv/ai-diary/alerts.yaml
USER 10001:10001
EXPOSE 8000
# Python-based probe (the slim image has no curl); PORT and HEALTH_PATH follow the container's own settings.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ.get('PORT', '8000'), os.environ.get('HEALTH_PATH', '/healthz')), timeout=4)"]
CMD ["gunicorn", "--config", "/srv/ai-diary/gunicorn.conf.py", "app:create_app()"]
