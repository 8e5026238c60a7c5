# Sekat image: the worker, the agency API, the CLI and the load generator.
#   docker build -t sekat .        (docker-compose.yml builds it as sekat:local)
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN groupadd --system sekat && useradd --system --gid sekat --home-dir /app --shell /usr/sbin/nologin sekat
WORKDIR /app

COPY pyproject.toml README.md ./
COPY sekat ./sekat
COPY rules ./rules
COPY decode ./decode
COPY blocklist ./blocklist
COPY metrics ./metrics
COPY brake ./brake
COPY release ./release
COPY streams ./streams
COPY api ./api
COPY load_tests ./load_tests
RUN pip install ".[bench]" && chown -R sekat:sekat /app

USER sekat
EXPOSE 6066 8080
# Healthy = the worker's replica is loaded and Redis answers (/healthz 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SEKAT_WEB_PORT', '6066'), timeout=2)"
ENTRYPOINT ["sekat"]
CMD ["worker"]
