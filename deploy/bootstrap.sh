#!/usr/bin/env bash
# Idempotent set-up for `make run` and `make test` on a fresh machine:
#   1. Debian packages: redis-server (and prometheus, for the metric checks), openssl (test certificates),
#      chromium and chromium-driver (the browser tests);
#      Java and Maven are expected, and installed if missing;
#   2. the virtualenv .venv with Sekat and its test dependencies, re-installed when pyproject.toml changes;
#   3. the Kafka broker jars from Maven Central, cached in ~/.cache/sekat/kafka-<version>.
# Each step is skipped when already done, so a second run costs about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)  # test certificates for TLS Kafka and Redis
# The browser tests (tests/browser/) drive headless Chromium through its WebDriver.
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_pkgs[*]} from Debian's packages"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # The Debian packages start system services bound to default ports; Sekat runs its own.
  for svc in redis-server prometheus prometheus-node-exporter; do
    (command -v systemctl >/dev/null 2>&1 && $SUDO systemctl disable --now "$svc" >/dev/null 2>&1) || true
    ($SUDO service "$svc" stop >/dev/null 2>&1) || true
  done
fi

stamp="$VENV/.sekat-installed"
want=$( (cat pyproject.toml; echo test,bench) | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[test,bench]"
  echo "$want" > "$stamp"
fi

"$VENV/bin/python" -c 'from sekat.localstack.kafka_servers import kafka_lib; print("bootstrap: Kafka jars in", kafka_lib())'
