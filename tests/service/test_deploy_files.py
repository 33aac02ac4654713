"""docker-compose.yml and Dockerfile sanity. This machine has the docker client but no `compose`
plugin and no engine, so `docker compose config` cannot run here: we parse and check the files."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    pass


# Compose's `!reset` tag (used by the CPU override) is not plain YAML.
ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # a SafeLoader subclass


def test_compose_services_healthchecks_and_order():
    services = load("docker-compose.yml")["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "minio", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["restart"] == "no" and services["minio-init"]["restart"] == "no"
    assert services["migrate"]["command"] == ["xtc", "migrate"]
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["build"]["target"] == "api" and services["worker"]["build"]["target"] == "worker"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    env = services["api"]["environment"]
    assert env["XTC_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["XTC_BROKER_URL"].startswith("redis://") and env["XTC_STORAGE_URL"].startswith("s3://")
    volumes = load("docker-compose.yml")["volumes"]
    assert {"pgdata", "miniodata", "xtcwork"} <= set(volumes)


def test_cpu_override_drops_the_gpu():
    worker = load("docker-compose.cpu.yml")["services"]["worker"]
    assert worker["deploy"] is None and worker["build"]["args"]["TORCH_VARIANT"] == "cpu"


def test_dockerfile_targets():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, flags=re.M)
    assert {"api", "worker"} <= set(stages)
    api_stage = text.split(" AS api")[1].split("FROM ")[0]
    installs = [line for line in api_stage.splitlines() if "pip install" in line]
    assert installs == ['RUN pip install ".[api]"']  # never torch in the API image
    assert "torch==2.13.0" in text and "TORCH_VARIANT" in text
    assert (ROOT / ".dockerignore").read_text().count(".venv")
