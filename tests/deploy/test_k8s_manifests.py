"""deploy/k8s/ against the Kubernetes API schemas (kubernetes-validate, offline: the schemas ship in the
package) and against the monitor itself: the ConfigMap's config loads with the monitor's own loader, the
probes and PodMonitor point at the port that config opens, /dev/shm holds the rings that config needs,
and the PrometheusRule is exactly the promtool-tested rule files."""

from __future__ import annotations

import copy
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import schema_contents

from stream_monitor.capture.ring import FrameRing
from stream_monitor.config_yaml import load_config
from stream_monitor.preprocess import INPUT_SIZE

from .conftest import DEPLOY, RULES, tool

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"  # the oldest release still in upstream support when these were written
CRD_KINDS = {"PodMonitor", "PrometheusRule"}  # Prometheus Operator CRDs: no schema in kubernetes-validate


def _documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(kind: str) -> dict:
    [doc] = [d for d in _documents() if d["kind"] == kind]
    return doc


def _meta_schema(definition: str) -> dict:
    """A schema that checks against one of the Kubernetes API definitions kubernetes-validate ships."""
    defs = schema_contents(f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict/_definitions.json",
                           KUBERNETES_VERSION)
    return {**defs, "$ref": f"#/$defs/{definition}"}


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("doc", [d for d in _documents() if d["kind"] not in CRD_KINDS],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_builtin_kinds_validate_strictly_against_the_kubernetes_schema(doc):
    # strict: unknown fields are errors, as `kubectl apply --validate=strict` makes them.
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_the_validator_rejects_a_broken_daemonset():
    """The schema check can fail: a misspelt probe field and a port given as text are both refused."""
    broken = copy.deepcopy(_one("DaemonSet"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(_one("DaemonSet"))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9108/tcp"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_crd_objects_have_valid_metadata_and_selectors(kind):
    """The operator's CRD schemas are not available offline; their metadata and label selector are
    standard Kubernetes types and are checked as such, the rest by the tests below."""
    doc = _one(kind)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    jsonschema.validate(doc["metadata"], _meta_schema("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"))
    if "selector" in doc["spec"]:
        jsonschema.validate(doc["spec"]["selector"], _meta_schema("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"))


def _monitor_config(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text(_one("ConfigMap")["data"]["monitor.yaml"])
    return load_config(path)


def _pod() -> dict:
    return _one("DaemonSet")["spec"]["template"]


def test_configmap_config_is_valid_for_the_monitor_and_reachable_from_outside_the_pod(tmp_path):
    config = _monitor_config(tmp_path)
    assert config.metrics.enabled and config.metrics.host == "0.0.0.0"
    assert config.transport.results.startswith("tcp://0.0.0.0:")
    container = _pod()["spec"]["containers"][0]
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"][container["args"].index("--config") + 1] == f"{config_mount['mountPath']}/monitor.yaml"
    # The audit log is written on a volume: the root file system is read-only.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(config.audit.path.parent) in mounts


def test_probes_and_scrapes_use_the_port_the_config_opens(tmp_path):
    config = _monitor_config(tmp_path)
    pod = _pod()
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config.metrics.port
    assert ports["results"] == int(config.transport.results.rsplit(":", 1)[1])
    # HTTPS: metrics.security serves the port over TLS (issue 16); the probe paths need no credentials.
    scheme = "HTTPS" if config.metrics.security and config.metrics.security.cert_file else "HTTP"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": scheme}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": scheme}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    labels = pod["metadata"]["labels"]
    podmonitor = _one("PodMonitor")["spec"]
    assert podmonitor["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in podmonitor["podMetricsEndpoints"]] == ["metrics"]
    # job="stream-monitor" is what the alert rules select on.
    assert labels[podmonitor["jobLabel"]] == "stream-monitor"
    service = _one("Service")["spec"]
    assert service["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["ports"]} <= ports.keys()


def test_daemonset_targets_capture_hosts_with_a_gpu_and_a_camera():
    spec = _pod()["spec"]
    assert spec["nodeSelector"] == {"stream-monitor.io/capture-host": "true"}
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and limits["squat.ai/video"] == "1"
    assert 44 in spec["securityContext"]["supplementalGroups"]  # the video group owns /dev/video*


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 2**-10, "Mi": 1, "Gi": 2**10}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_shared_memory_fits_the_rings_the_config_asks_for(tmp_path):
    """The supervisor refuses to start when /dev/shm is too small (a container's default is 64 MiB)."""
    config = _monitor_config(tmp_path)
    spec = _pod()["spec"]
    shm_mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm")
    volume = next(v for v in spec["volumes"] if v["name"] == shm_mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    needed = len(config.streams) * FrameRing.size_for(config.pipeline.ring_slots, *config.pipeline.max_frame_size,
                                                      INPUT_SIZE)
    assert _mebibytes(volume["emptyDir"]["sizeLimit"]) * 2**20 >= needed


def test_prometheusrule_is_generated_from_the_rule_files(tmp_path):
    result = subprocess.run([sys.executable, str(K8S / "render_prometheusrule.py"), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = _one("PrometheusRule")["spec"]["groups"]
    expected = [g for p in sorted(RULES.glob("*.rules.yml")) for g in yaml.safe_load(p.read_text())["groups"]]
    assert groups == expected
    # What the operator hands to Prometheus is a valid rules file.
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    check = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
