"""The shipped deploy configs that bind the ZeroMQ sockets off-host use CURVE (issue 16), with the keys on
volumes the pod / container really mounts; `validate-config` warns about an off-host bind without it.
Offline: the configs are loaded with the monitor's own loader, the manifests read as YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from stream_monitor.config_yaml import load_config
from stream_monitor.transport.security import reachable_off_host

from .conftest import DEPLOY

CLI = [sys.executable, "-m", "stream_monitor.cli"]


def _k8s(kind: str, name: str | None = None) -> dict:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
                return doc
    raise AssertionError(f"no {kind} {name or ''} in deploy/k8s")


def _under(path: Path, mounts: dict[str, object]) -> object:
    """The volume whose mount path holds `path`."""
    [hit] = [volume for mount, volume in mounts.items() if path.is_relative_to(mount)]
    return hit


def test_kubernetes_binds_off_host_only_with_curve_keys_from_a_secret(tmp_path):
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(_k8s("ConfigMap", "stream-monitor-config")["data"]["monitor.yaml"])
    config = load_config(config_file)
    assert reachable_off_host(config.transport.results) and reachable_off_host(config.transport.frames)
    curve = config.transport.curve
    assert curve is not None and curve.server_secret_key is not None
    pod = _k8s("DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {Path(m["mountPath"]): volumes[m["name"]] for m in pod["containers"][0]["volumeMounts"]}
    secret = _under(curve.server_secret_key, mounts)["secret"]
    assert secret["secretName"] == "stream-monitor-curve"
    assert secret["defaultMode"] & 0o037 == 0  # what security.load_secret_key accepts (0440 with fsGroup)
    assert "configMap" in _under(curve.authorized_keys, mounts)
    assert all(m.get("readOnly") for m in pod["containers"][0]["volumeMounts"]
               if m["name"] in ("curve", "viewers"))


def test_docker_binds_off_host_only_with_curve_keys_on_a_read_only_mount():
    config = load_config(DEPLOY / "docker" / "monitor.yaml")
    assert reachable_off_host(config.transport.results)
    curve = config.transport.curve
    assert curve is not None and curve.server_secret_key is not None
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    volumes = [v.split(":") for v in compose["x-monitor"]["volumes"]]
    [(source, target, mode)] = [v for v in volumes if curve.server_secret_key.is_relative_to(v[1])]
    assert mode == "ro" and curve.authorized_keys.is_relative_to(target)
    folder = DEPLOY / "docker" / source
    assert (folder / "authorized").is_dir()  # where the README says to put the viewers' keys
    ignored = (folder / ".gitignore").read_text().split()
    assert "*.key_secret" in ignored and "*.key" in ignored  # keys are never committed


def test_validate_config_warns_about_an_off_host_bind_without_curve(tmp_path):
    config = tmp_path / "open.yaml"
    config.write_text("version: 1\nstreams:\n  - name: a\n    source: {kind: camera, device: 0}\n"
                      "transport: {results: 'tcp://0.0.0.0:5560', frames: 'tcp://127.0.0.1:5561'}\n")
    done = subprocess.run([*CLI, "validate-config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning: transport.results: tcp://0.0.0.0:5560 is reachable from other hosts without transport.curve" \
        in done.stdout
    assert "transport.frames" not in done.stdout  # loopback: no warning
