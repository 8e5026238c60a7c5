"""docker-compose.yml and the Dockerfile, validated as far as possible without a Docker engine.

No engine runs on this machine, so these check what would otherwise fail only at `docker compose up`:
every referenced file exists, images are pinned, the SEKAT_* settings are ones the code reads and are
valid together, the Kafka settings are the ones the native broker runs with, and the ports bind to loopback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from sekat.localstack.kafka_servers import KafkaBroker
from sekat.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS = {f"SEKAT_{f.name.upper()}" for f in fields(Settings)}


def test_the_stack_has_every_part() -> None:
    assert {"kafka", "redis", "topics", "worker", "api", "prometheus", "grafana", "loadgen"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["loadgen"]["profiles"] == ["load"]
    assert "ports" not in SERVICES["worker"], "a published port would stop --scale worker=N"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name].get("image", "")
    assert image, f"{name} has no image"
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest", f"{name}: {image} is not pinned to a version"


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if "environment" in s and n not in ("kafka", "grafana")])
def test_sekat_settings_are_real_and_valid(name: str) -> None:
    env = SERVICES[name]["environment"]
    unknown = set(env) - SETTINGS
    assert not unknown, f"{name} sets variables the code never reads: {unknown}"
    Settings.from_environ({k: str(v) for k, v in env.items()})


def test_published_ports_bind_to_loopback_and_match_the_settings() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    env = SERVICES["api"]["environment"]
    assert f"127.0.0.1:{env['SEKAT_API_PORT']}:{env['SEKAT_API_PORT']}" in SERVICES["api"]["ports"]
    assert SERVICES["worker"]["expose"] == [env["SEKAT_WEB_PORT"]]


def test_the_api_is_healthy_only_when_its_healthz_says_so() -> None:
    """/healthz answers 503 when Redis or Kafka is unreachable; /openapi.json would answer 200 regardless."""
    check = " ".join(SERVICES["api"]["healthcheck"]["test"])
    port = SERVICES["api"]["environment"]["SEKAT_API_PORT"]
    assert f"127.0.0.1:{port}/healthz" in check, check
    assert "openapi" not in check


def test_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    config = SERVICES["prometheus"]["command"][0].split("=", 1)[1]
    assert (ROOT / "metrics/prometheus" / Path(config).name).is_file()


def test_kafka_runs_with_the_native_brokers_settings() -> None:
    """The compose broker and `sekat up`'s broker share their single-node settings."""
    native = dict(line.split("=", 1) for line in KafkaBroker(Path("/tmp/x")).properties().splitlines())
    env = SERVICES["kafka"]["environment"]
    for key in ("process.roles", "controller.listener.names", "inter.broker.listener.name",
                "listener.security.protocol.map", "group.initial.rebalance.delay.ms",
                "offsets.topic.replication.factor", "offsets.topic.num.partitions",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.replication.factor", "num.partitions"):
        assert env["KAFKA_" + key.upper().replace(".", "_")] == native[key], key


def test_dockerfile_is_pinned_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)  # type: ignore[union-attr]
    assert re.match(r"python:3\.11\.\d+", base), base
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    for package in ("sekat", "streams", "rules", "blocklist", "metrics", "load_tests"):
        assert f"COPY {package} " in text, f"image lacks the {package} package"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_the_compose_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(["promtool", "check", "config", str(ROOT / "metrics/prometheus/prometheus-compose.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
