"""deploy/docker/ checked without Docker (not available on the CI machine): the compose file's structure,
every file the Dockerfiles COPY and compose mounts exists and is inside the build context the
.dockerignore lets through, /dev/shm is large enough for the rings the container's config asks for, the
container's config loads with the monitor's own loader, and Prometheus's config passes `promtool check
config` (which also checks the rule files it loads)."""

from __future__ import annotations

import re
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from stream_monitor.capture.ring import FrameRing
from stream_monitor.config_yaml import load_config
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.preprocess import INPUT_SIZE

from .conftest import DEPLOY, REPO, tool

DOCKER = DEPLOY / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*[!e]"))  # Dockerfile.cpu, Dockerfile.gpu (not *.dockerignore)
MONITORS = ("monitor", "monitor-gpu")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _expand(value: str) -> str:
    """Compose's ${VAR:-default} with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _mount(volume: str) -> tuple[str, str]:
    """(source, target) of a compose short-syntax volume."""
    source, target = _expand(volume).split(":")[:2]
    return source, target


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", size.lower()).groups()
    return int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit]


def _container_config(tmp_path):
    return load_config(DOCKER / "monitor.yaml")


def test_compose_brings_up_monitor_prometheus_and_grafana():
    services = _compose()["services"]
    assert {"monitor", "prometheus", "grafana"} <= services.keys()
    for name in MONITORS:
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() in [p.resolve() for p in DOCKERFILES]
    assert services["monitor-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Nothing is published beyond the host's loopback: results and metrics carry clinical context.
    for service in services.values():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), mapping


def test_every_bind_mount_source_exists():
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source, _ = _mount(volume)
            if not source.startswith("."):
                continue  # a named volume
            path = (DOCKER / source).resolve()
            if path == SHARED_DATA.resolve() and not path.exists():
                continue  # the development data; CI checkouts have it beside the repo
            assert path.exists(), f"{name}: {volume} -> {path}"


def test_monitor_container_has_shared_memory_for_its_rings(tmp_path):
    config = _container_config(tmp_path)
    needed = len(config.streams) * FrameRing.size_for(config.pipeline.ring_slots, *config.pipeline.max_frame_size,
                                                      INPUT_SIZE)
    for name in MONITORS:
        service = _compose()["services"][name]
        assert _bytes(service["shm_size"]) >= needed, name


def test_container_config_is_valid_and_listens_beyond_loopback(tmp_path):
    config = _container_config(tmp_path)
    assert config.metrics.host == "0.0.0.0" and config.transport.results.startswith("tcp://0.0.0.0:")
    service = _compose()["services"]["monitor"]
    mounts = {target: source for source, target in map(_mount, service["volumes"])}
    assert mounts["/etc/stream-monitor/monitor.yaml"] == "./monitor.yaml"
    # The replayed clip is inside the data mount.
    [stream] = config.streams
    data = mounts["/data"]
    clip = (DOCKER / data / Path(stream.source.path).relative_to("/data")).resolve()
    if SHARED_DATA.exists():
        assert clip.is_file(), clip
    # The audit log is on a named volume: it survives the container and `read_only: true`.
    assert str(config.audit.path.parent) in mounts and not mounts[str(config.audit.path.parent)].startswith(".")
    published = {int(p.split(":")[-1]) for p in service["ports"]}
    assert config.metrics.port in published


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_exists_and_is_not_ignored(dockerfile):
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    copies = [args for op, args in _instructions(dockerfile) if op == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _ = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), source
            assert any(fnmatch(source.rstrip("/"), pattern) for pattern in allowed), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_the_monitor_unprivileged_with_a_healthcheck(dockerfile, tmp_path):
    steps = _instructions(dockerfile)
    ops = [op for op, _ in steps]
    assert ops.count("FROM") == 2  # build stage and slim runtime stage
    users = [args for op, args in steps if op == "USER"]
    assert users == ["stream-monitor"]
    entry = " ".join(args for op, args in steps if op in ("ENTRYPOINT", "CMD"))
    assert '"stream-monitor"' in entry and '"/etc/stream-monitor/monitor.yaml"' in entry
    port = _container_config(tmp_path).metrics.port
    [healthcheck] = [args for op, args in steps if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}/healthz" in healthcheck
    assert str(port) in " ".join(args for op, args in steps if op == "EXPOSE")


def test_gpu_image_is_cuda_runtime_with_torch_tensorrt():
    steps = _instructions(DOCKER / "Dockerfile.gpu")
    base = next(args for op, args in steps if op == "ARG" and args.startswith("CUDA_IMAGE="))
    assert re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+", base)
    installs = " ".join(args for op, args in steps if op == "RUN")
    assert "torch-tensorrt==" in installs and '".[gpu]"' in installs
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^gpu = \[.*"torch-tensorrt"', pyproject, re.M)


def test_prometheus_config_passes_promtool_and_scrapes_the_compose_monitor(tmp_path):
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run([tool("promtool"), "check", "config", str(config_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool loads the rules through the config's glob: all of them, not none.
    assert f"SUCCESS: {len(list((DEPLOY / 'prometheus' / 'rules').glob('*.rules.yml')))} rule files found" in result.stdout
    config = yaml.safe_load(config_path.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "stream-monitor"
    [target] = job["static_configs"][0]["targets"]
    assert target == f"monitor:{_container_config(tmp_path).metrics.port}"
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "../prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in mounts  # where rules/*.rules.yml resolves
