"""The TLS + basic auth layout (components/web-config): renders, validates, and wires what it says.

Core objects go through kubernetes-validate --strict and checkov like the other overlays, the
PodMonitor through its CRD schema. No cert-manager CRD schema is available offline, so the
Certificate is checked structurally here (apiVersion, kind, the fields used and their values).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from deploy_helpers import DEPLOY, Rendered, container, crd_validator, kustomize, pod_spec, run, tool
from harness.net import free_port
from test_deploy_checkov import _skips
from test_deploy_manifests import _newest_known_version, _validate_core
from tls_support import TestCA

from monitor.config import ConfigError, load

COMPONENT = DEPLOY / "components" / "web-config"
OVERLAY = DEPLOY / "overlays" / "prometheus-operator-tls"
WEB_DIR, TLS_DIR = "/etc/gateway-monitor/web", "/etc/gateway-monitor/tls"
SERVER_NAME = "gateway-monitor.trading-gateway.svc"
CERTIFICATE_FIELDS = {"secretName", "duration", "renewBefore", "privateKey", "usages", "dnsNames",
                      "issuerRef"}


def _render(path: Path) -> Rendered:
    text = kustomize(path)
    return Rendered(path.name, text, [o for o in yaml.safe_load_all(text) if o], path)


@pytest.fixture(scope="module")
def tls() -> Rendered:
    return _render(OVERLAY)


@pytest.mark.parametrize("version", ["1.29.0", "newest"])
def test_core_objects_validate_strictly(tls: Rendered, version: str, tmp_path: Path) -> None:
    core = [o for o in tls.objects if o["apiVersion"] != "cert-manager.io/v1"]
    _validate_core(core, _newest_known_version() if version == "newest" else version, tmp_path)


def test_pod_monitor_scrapes_the_monitor_over_https_with_basic_auth(tls: Rendered) -> None:
    monitor = tls.get("PodMonitor")
    crd_validator("PodMonitor").validate(monitor)
    gateway, own = monitor["spec"]["podMetricsEndpoints"]
    assert gateway["port"] == "http" and "scheme" not in gateway and "basicAuth" not in gateway
    assert own["port"] == "monitor-metrics" and own["scheme"] == "https"
    assert own["tlsConfig"] == {"serverName": SERVER_NAME,
                                "ca": {"secret": {"name": "gateway-monitor-tls", "key": "ca.crt"}}}
    assert own["basicAuth"] == {"username": {"name": "gateway-monitor-scrape-auth", "key": "username"},
                                "password": {"name": "gateway-monitor-scrape-auth", "key": "password"}}


def test_certificate_names_what_prometheus_checks_and_feeds_the_mounted_secret(tls: Rendered) -> None:
    cert = tls.get("Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert set(cert["spec"]) == CERTIFICATE_FIELDS
    assert cert["metadata"]["namespace"] == tls.get("Deployment")["metadata"]["namespace"]
    assert cert["spec"]["dnsNames"] == [SERVER_NAME]
    assert cert["spec"]["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    assert "server auth" in cert["spec"]["usages"]
    assert set(cert["spec"]["issuerRef"]) == {"group", "kind", "name"}
    assert cert["spec"]["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}
    volumes = {v["name"]: v for v in pod_spec(tls.get("Deployment"))["volumes"]}
    assert volumes["monitor-tls"]["secret"]["secretName"] == cert["spec"]["secretName"]


def test_monitor_mounts_the_web_config_and_certificate_and_probes_over_https(tls: Rendered) -> None:
    deployment = tls.get("Deployment")
    monitor = container(deployment, "gateway-monitor")
    env = {e["name"]: e.get("value") for e in monitor["env"]}
    assert env["MONITOR_WEB_CONFIG_FILE"] == f"{WEB_DIR}/web-config.yml"
    mounts = {m["mountPath"]: m for m in monitor["volumeMounts"]}
    for path in (WEB_DIR, TLS_DIR):
        assert mounts[path]["readOnly"] is True and "subPath" not in mounts[path]
    volumes = {v["name"]: v["secret"] for v in pod_spec(deployment)["volumes"] if "secret" in v}
    assert volumes[mounts[WEB_DIR]["name"]]["items"] == [{"key": "web-config.yml", "path": "web-config.yml"}]
    assert {i["path"] for i in volumes[mounts[TLS_DIR]["name"]]["items"]} == {"tls.crt", "tls.key"}
    # A missing Secret makes the monitor restart, never keeps the pod (and the gateway) from starting.
    assert all(volumes[mounts[p]["name"]]["optional"] is True for p in (WEB_DIR, TLS_DIR))
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "monitor-metrics",
                                                   "scheme": "HTTPS"}
    assert monitor["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "monitor-metrics",
                                                    "scheme": "HTTPS"}
    gateway_mounts = {m["name"] for m in container(deployment, "gateway").get("volumeMounts", [])}
    assert not {"monitor-web-config", "monitor-tls"} & gateway_mounts


def test_example_web_config_loads_once_its_hash_is_set(tmp_path: Path) -> None:
    """The example points at the mounted certificate files; with a real hash and those files it loads."""
    example = yaml.safe_load((COMPONENT / "web-config.yml").read_text(encoding="utf-8"))
    tls_settings = example["tls_server_config"]
    assert (tls_settings["cert_file"], tls_settings["key_file"]) == (f"{TLS_DIR}/tls.crt",
                                                                     f"{TLS_DIR}/tls.key")
    chain, key, _cert = TestCA(tmp_path).issue("tls")
    example["tls_server_config"] |= {"cert_file": str(chain), "key_file": str(key)}
    placeholder = tmp_path / "placeholder.yml"
    placeholder.write_text(yaml.safe_dump(example), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"basic_auth_users\.prometheus"):
        load({"web_config_file": str(placeholder)}, environ={})
    example["basic_auth_users"]["prometheus"] = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    placeholder.write_text(yaml.safe_dump(example), encoding="utf-8")
    web = load({"web_config_file": str(placeholder)}, environ={}).web_config
    assert web is not None and web.tls is not None and list(web.users) == [b"prometheus"]


def test_component_on_the_base_alone_adds_no_pod_monitor(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(DEPLOY / "base", tmp_path)],
        "components": [os.path.relpath(COMPONENT, tmp_path)]}), encoding="utf-8")
    kinds = [o["kind"] for o in yaml.safe_load_all(kustomize(tmp_path)) if o]
    assert "PodMonitor" not in kinds and kinds.count("Certificate") == 1


def test_checkov_passes_with_the_listed_skips(tls: Rendered, tmp_path: Path) -> None:
    file = tmp_path / "prometheus-operator-tls.yaml"
    file.write_text(tls.text, encoding="utf-8")
    result = run([tool("checkov"), "--framework", "kubernetes", "--skip-download", "--quiet", "--compact",
                  "--skip-check", ",".join(_skips()), "--file", str(file)], timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the image's HEALTHCHECK behind TLS --------------------------------------------------------


def _healthcheck() -> list[str]:
    text = (DEPLOY.parent / "Dockerfile").read_text(encoding="utf-8")
    command: list[str] = json.loads(text.split("\nHEALTHCHECK ", 1)[1].split(" CMD ", 1)[1].split("\n")[0])
    return [sys.executable, *command[1:]]


async def test_image_healthcheck_passes_behind_tls_and_basic_auth(monitor, tmp_path: Path) -> None:
    chain, key, _cert = TestCA(tmp_path).issue("tls")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(chain), "key_file": str(key)},
        "basic_auth_users": {"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()}}))
    mon = await monitor("http://127.0.0.1:9", web_config_file=str(web_config))
    for port, healthy in ((mon.port, True), (free_port(), False)):
        check = await asyncio.create_subprocess_exec(
            *_healthcheck(), env={**os.environ, "MONITOR_LISTEN": f"127.0.0.1:{port}"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert (await asyncio.wait_for(check.wait(), timeout=20) == 0) is healthy


# --- plain Prometheus ----------------------------------------------------------------------

TLS_SCRAPE = DEPLOY / "prometheus" / "scrape-config-tls.yml"


def _job(path: Path, name: str) -> dict[str, Any]:
    jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["scrape_configs"]
    (job,) = [j for j in jobs if j["job_name"] == name]
    return job


def test_tls_scrape_config_passes_promtool() -> None:
    result = run([tool("promtool"), "check", "config", "--syntax-only", str(TLS_SCRAPE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_tls_scrape_job_is_the_plain_job_plus_https_and_basic_auth() -> None:
    tls_job = _job(TLS_SCRAPE, "gateway-monitor")
    plain = _job(DEPLOY / "prometheus" / "scrape-config.yml", "gateway-monitor")
    extra = {k: tls_job.pop(k) for k in ("scheme", "tls_config", "basic_auth")}
    assert tls_job == plain  # same discovery and labels: the rules and dashboard keep working
    assert extra["scheme"] == "https"
    assert extra["tls_config"]["server_name"] == SERVER_NAME
    assert extra["tls_config"]["ca_file"].endswith("/ca.crt")
    assert extra["basic_auth"]["password_file"] and "password" not in extra["basic_auth"]
