"""/metrics and the MJPEG page behind TLS and basic auth (issue 16), scraped by a REAL Prometheus.

Certificates are made at test time with the openssl CLI (a throw-away CA and a server certificate for
127.0.0.1). The monitor side is the real ops server the inference process runs (`OpsServer` with the
`metrics.security` the config loader builds); Prometheus scrapes it twice, as deploy/prometheus/
prometheus.yml does (https, the CA, basic auth from a password file) and without the credentials: the
first scrape succeeds and returns the exported value, the second fails with 401.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_monitor.config import HttpSecurityConfig
from stream_monitor.observability import Metrics, OpsServer
from stream_monitor.observability.http_handler import HttpSecurityError, load_http_security
from stream_monitor.overlay.mjpeg import MjpegServer

from .conftest import DEPLOY, tool
from .live import Prometheus, wait_for

PASSWORD = "s3cret-scrape-password"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 / localhost signed by it, and a password file (0600)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed (Debian package `openssl`)")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "1", "-subj", "/CN=stream-monitor test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", *ec, "-subj", "/CN=monitor", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:monitor\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", "san.cnf", "-out", "server.crt")
    os.chmod(folder / "server.key", 0o600)
    (folder / "password").write_text(PASSWORD + "\n")
    os.chmod(folder / "password", 0o600)
    return {name: folder / file for name, file in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"),
                                                   ("password", "password"))}


def _security(files: dict[str, Path]):
    config = HttpSecurityConfig(cert_file=files["cert"], key_file=files["key"], username="prometheus",
                                password_file=files["password"])
    return load_http_security(config, "metrics.security", open_paths=("/healthz", "/readyz"))


def _get(url: str, ca: Path | None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode())
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prometheus_scrapes_over_tls_with_credentials_and_fails_without(tls_files, tmp_path):
    prometheus_binary = tool("prometheus")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.init_stream("endo")
    metrics.threshold.labels("endo").set(0.767)
    server = OpsServer(registry, lambda: (True, {}), lambda: (True, {}), "127.0.0.1", 0, _security(tls_files)).start()
    # The shipped scrape job, pointed at this server and these files (the same keys, nothing else changed).
    [shipped] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    job = {**shipped, "scrape_interval": "1s", "scrape_timeout": "1s",
           "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
           "tls_config": {**shipped["tls_config"], "ca_file": str(tls_files["ca"]), "server_name": "localhost"},
           "basic_auth": {**shipped["basic_auth"], "password_file": str(tls_files["password"])}}
    without = {**job, "job_name": "without-credentials"}
    del without["basic_auth"]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job, without]}))
    prometheus = Prometheus(prometheus_binary, config, tmp_path, _free_port())
    try:
        def up() -> dict[str, float] | None:
            try:
                found = {r["metric"]["job"]: float(r["value"][1]) for r in prometheus.query("up")}
            except AssertionError:  # Prometheus not answering yet
                return None
            return found if len(found) == 2 else None

        assert wait_for(up, 90, "both scrape jobs") == {"stream-monitor": 1.0, "without-credentials": 0.0}
        [threshold] = prometheus.query('stream_monitor_alert_threshold{job="stream-monitor"}')
        assert float(threshold["value"][1]) == pytest.approx(0.767)
        errors = {t["labels"]["job"]: t["lastError"] for t in prometheus.api("targets")["activeTargets"]}
        assert "401" in errors["without-credentials"] and errors["stream-monitor"] == ""
    finally:
        prometheus.stop()
        server.stop()
    assert shipped["scheme"] == "https"


def test_the_ops_server_refuses_plain_http_and_wrong_passwords_and_leaves_probes_open(tls_files):
    registry = CollectorRegistry()
    Metrics(registry)
    server = OpsServer(registry, lambda: (True, {}), lambda: (True, {}), "127.0.0.1", 0, _security(tls_files)).start()
    try:
        assert server.url.startswith("https://")
        base = f"https://localhost:{server.port}"
        assert _get(f"{base}/metrics", tls_files["ca"], PASSWORD) == 200
        assert _get(f"{base}/metrics", tls_files["ca"]) == 401
        assert _get(f"{base}/metrics", tls_files["ca"], "wrong") == 401
        assert _get(f"{base}/healthz", tls_files["ca"]) == 200  # Kubernetes probes carry no credentials
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{server.port}/metrics", None, PASSWORD)  # plain HTTP: no answer
        assert _get(f"{base}/metrics", tls_files["ca"], PASSWORD) == 200  # still serving after that
    finally:
        server.stop()


def test_the_mjpeg_page_needs_the_credentials_too(tls_files):
    server = MjpegServer("127.0.0.1", 0, title="t", security=_security(tls_files)).start()
    try:
        server.publish(np.zeros((48, 64, 3), np.uint8))
        base = f"https://localhost:{server.port}"
        assert _get(f"{base}/snapshot.jpg", tls_files["ca"]) == 401
        assert _get(f"{base}/", tls_files["ca"]) == 401
        assert _get(f"{base}/snapshot.jpg", tls_files["ca"], PASSWORD) == 200
    finally:
        server.stop()


def test_secret_files_others_can_read_are_refused(tls_files, tmp_path):
    loose = tmp_path / "password"
    loose.write_text(PASSWORD)
    os.chmod(loose, 0o644)
    config = HttpSecurityConfig(username="prometheus", password_file=loose)
    with pytest.raises(HttpSecurityError, match="chmod 600"):
        load_http_security(config, "metrics.security")
