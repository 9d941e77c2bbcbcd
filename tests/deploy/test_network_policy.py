"""deploy/k8s/networkpolicy.yaml (issue 16): ingress to the monitor pods only from the site's Prometheus
(the metrics port) and the overlays (results and frames) — checked offline against the other manifests;
the strict schema check of every built-in kind (test_k8s_manifests.py) covers its syntax."""

from __future__ import annotations

import yaml

from .conftest import DEPLOY

K8S = DEPLOY / "k8s"


def _docs(kind: str) -> list[dict]:
    return [d for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == kind]


def test_only_prometheus_reaches_metrics_and_only_overlays_reach_results_and_frames():
    [policy] = _docs("NetworkPolicy")
    [daemonset] = _docs("DaemonSet")
    pod = daemonset["spec"]["template"]
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == daemonset["metadata"]["namespace"]
    assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress"]
    declared = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    allowed: dict[str, list[dict]] = {}
    for rule in spec["ingress"]:
        # A rule without `from` or `ports` would open the pod to every peer or every port.
        assert rule.get("from") and rule.get("ports"), rule
        for port in rule["ports"]:
            assert port["port"] in declared and port.get("protocol", "TCP") == "TCP"
            allowed.setdefault(port["port"], []).extend(rule["from"])
    assert set(allowed) == declared == {"metrics", "results", "frames"}
    for peer in allowed["metrics"]:
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        assert "namespaceSelector" in peer  # Prometheus lives in its own namespace
    for name in ("results", "frames"):
        for peer in allowed[name]:
            assert peer == {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "overlay"}}}
            assert "ipBlock" not in peer
    # The monitor pods themselves are not overlays: the policy must not let them in through that rule.
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] != "overlay"
