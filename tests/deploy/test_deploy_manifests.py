"""The kustomize layouts under deploy/: they render, validate, and say what the issue asks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_helpers import (
    CUSTOM_GROUP,
    DEPLOY,
    INSTALL_HINT,
    OVERLAYS,
    REPO,
    Rendered,
    all_containers,
    container,
    crd_validator,
    kustomize,
    pod_spec,
    run,
    tool,
)

from monitor.config import load

MONITOR_ENV = {
    "GATEWAY_URL": "http://127.0.0.1:8080",
    "GATEWAY_API_KEY_FILE": "/var/run/secrets/gateway/api-key",
    "MONITOR_LISTEN": "0.0.0.0:9478",
    "LOG_FORMAT": "json",
    "SUBSCRIPTIONS": None,  # from the gateway's ConfigMap: test_monitor_expects_the_gateways_subscriptions
}
JOBS = {"http": "gateway", "monitor-metrics": "gateway-monitor"}


# --- rendering and schema validation --------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_kustomization_renders(rendered: dict[str, Rendered], name: str) -> None:
    kinds = {o["kind"] for o in rendered[name].objects}
    assert {"Deployment", "Service", "ServiceAccount", "NetworkPolicy", "ConfigMap"} <= kinds


def test_prometheus_operator_overlay_adds_monitoring_objects(
    rendered: dict[str, Rendered],
) -> None:
    kinds = [o["kind"] for o in rendered["prometheus-operator"].objects]
    assert kinds.count("PodMonitor") == 1
    assert kinds.count("PrometheusRule") == 1
    assert not {"PodMonitor", "PrometheusRule"} & {o["kind"] for o in rendered["base"].objects}


def _newest_known_version() -> str:
    # The interpreter of the venv kubernetes-validate was installed into.
    python = Path(tool("kubernetes-validate")).parent / "python"
    code = (
        "import kubernetes_validate, pathlib, re;"
        "d = pathlib.Path(kubernetes_validate.__file__).parent / 'kubernetes-json-schema';"
        "print(max((tuple(map(int, m.groups())) for p in d.iterdir()"
        " if (m := re.fullmatch(r'v(\\d+)\\.(\\d+)\\.(\\d+)-local-strict', p.name))), default=''))"
    )
    result = run([str(python), "-c", code])
    assert result.returncode == 0, result.stderr
    return ".".join(re.findall(r"\d+", result.stdout))


def _validate_core(objects: list[dict[str, Any]], version: str, tmp_path: Path) -> str:
    core = [o for o in objects if not o["apiVersion"].startswith(CUSTOM_GROUP + "/")]
    file = tmp_path / f"core-{version}.yaml"
    file.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    result = run([tool("kubernetes-validate"), "--strict", "-k", version, str(file)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every object must have really been checked (a kind without schema is only a warning).
    assert output.count(" passed for resource ") == len(core), output
    return output


@pytest.mark.parametrize(
    ("name", "version"),
    [(name, version) for name, (_, versions) in OVERLAYS.items() for version in versions],
)
def test_core_objects_validate_strictly(
    rendered: dict[str, Rendered], name: str, version: str, tmp_path: Path
) -> None:
    if version == "newest":
        version = _newest_known_version()
    _validate_core(rendered[name].objects, version, tmp_path)


def test_native_sidecar_needs_the_legacy_overlay_on_1_27(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """The strict check is real: 1.27 has no restartPolicy on init containers."""
    core = [o for o in rendered["base"].objects if o["kind"] == "Deployment"]
    file = tmp_path / "base-deployment.yaml"
    file.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    result = run([tool("kubernetes-validate"), "--strict", "-k", "1.27.0", str(file)])
    assert result.returncode != 0
    assert "restartPolicy" in result.stdout + result.stderr


def test_custom_resources_validate_against_crd_schemas(rendered: dict[str, Rendered]) -> None:
    checked = 0
    for r in rendered.values():
        for obj in r.objects:
            if obj["apiVersion"].startswith(CUSTOM_GROUP + "/"):
                assert obj["apiVersion"] == f"{CUSTOM_GROUP}/v1"
                crd_validator(obj["kind"]).validate(obj)
                checked += 1
    assert checked >= 2


def test_crd_validation_refuses_unknown_fields() -> None:
    bad = {"apiVersion": f"{CUSTOM_GROUP}/v1", "kind": "PodMonitor", "metadata": {"name": "x"},
           "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http", "pth": "/m"}]}}
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("PodMonitor").validate(bad)


def test_overlays_compose_legacy_sidecar_with_prometheus_operator(tmp_path: Path) -> None:
    """A user's own overlay may combine the legacy layout with the operator component."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes only relative paths
        "resources": [os.path.relpath(DEPLOY / "overlays" / "legacy-sidecar", tmp_path)],
        "components": [os.path.relpath(DEPLOY / "components" / "prometheus-operator", tmp_path)],
    }), encoding="utf-8")
    objects = [o for o in yaml.safe_load_all(kustomize(tmp_path)) if o]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert "initContainers" not in pod_spec(deployment)
    assert {o["kind"] for o in objects} >= {"PodMonitor", "PrometheusRule"}


# --- the pod -------------------------------------------------------------------------------


def test_monitor_is_a_native_sidecar(rendered: dict[str, Rendered]) -> None:
    spec = pod_spec(rendered["base"].get("Deployment"))
    assert [c["name"] for c in spec["initContainers"]] == ["gateway-monitor"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["gateway"]


def test_legacy_overlay_runs_the_same_monitor_as_a_second_container(
    rendered: dict[str, Rendered],
) -> None:
    native = dict(container(rendered["base"].get("Deployment"), "gateway-monitor"))
    del native["restartPolicy"]
    spec = pod_spec(rendered["legacy-sidecar"].get("Deployment"))
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["gateway", "gateway-monitor"]
    assert spec["containers"][1] == native


@pytest.mark.parametrize("name", OVERLAYS)
def test_monitor_environment(rendered: dict[str, Rendered], name: str) -> None:
    monitor = container(rendered[name].get("Deployment"), "gateway-monitor")
    assert {e["name"]: e.get("value") for e in monitor["env"]} == MONITOR_ENV
    assert "envFrom" not in monitor


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_key_is_an_env_var_for_the_gateway_and_a_file_for_the_monitor(
    rendered: dict[str, Rendered], name: str
) -> None:
    deployment = rendered[name].get("Deployment")
    gateway = container(deployment, "gateway")
    key_ref = next(e for e in gateway["env"] if e["name"] == "GATEWAY_API_KEY")
    secret = key_ref["valueFrom"]["secretKeyRef"]
    assert not secret.get("optional", False)

    monitor = container(deployment, "gateway-monitor")
    mount = next(m for m in monitor["volumeMounts"] if m["mountPath"] == "/var/run/secrets/gateway")
    assert mount.get("readOnly") is True
    assert "subPath" not in mount, "subPath mounts are never updated: rotation would need a restart"
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["name"]
    assert volume["secret"]["items"] == [{"key": secret["key"], "path": "api-key"}]
    assert not any(m["name"] == mount["name"] for m in gateway.get("volumeMounts", []))


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_ask_each_container_about_itself(rendered: dict[str, Rendered], name: str) -> None:
    deployment = rendered[name].get("Deployment")
    monitor = container(deployment, "gateway-monitor")
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "monitor-metrics"}
    assert monitor["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "monitor-metrics"}
    # A startup probe on the sidecar would hold back the gateway while the monitor is broken.
    assert "startupProbe" not in monitor
    gateway = container(deployment, "gateway")
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_monitor_resources(rendered: dict[str, Rendered]) -> None:
    monitor = container(rendered["base"].get("Deployment"), "gateway-monitor")
    assert monitor["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "128Mi"}}


def test_ports(rendered: dict[str, Rendered]) -> None:
    deployment = rendered["base"].get("Deployment")
    assert container(deployment, "gateway")["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container(deployment, "gateway-monitor")["ports"] == [
        {"name": "monitor-metrics", "containerPort": 9478, "protocol": "TCP"}]


def test_gateway_listens_on_all_interfaces_with_valid_subscriptions(
    rendered: dict[str, Rendered],
) -> None:
    r = rendered["base"]
    deployment = r.get("Deployment")
    ref = container(deployment, "gateway")["envFrom"][0]["configMapRef"]["name"]
    data = r.get("ConfigMap", ref)["data"]
    # The gateway's default bind address is 127.0.0.1: unreachable for Service and Prometheus.
    assert data["GATEWAY_HOST"] == "0.0.0.0"
    assert data["GATEWAY_PORT"] == "8080"
    subscriptions = json.loads(data["SUBSCRIPTIONS"])
    assert subscriptions
    for entry in subscriptions:
        assert set(entry) == {"platform", "instrument", "events"}
        assert entry["events"]
    assert data["EXIT_STATE_FILE"].startswith("/var/lib/gateway/")
    mounts = {m["mountPath"] for m in container(deployment, "gateway")["volumeMounts"]}
    assert "/var/lib/gateway" in mounts


@pytest.mark.parametrize("name", OVERLAYS)
def test_monitor_expects_the_gateways_subscriptions(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    deployment = r.get("Deployment")
    ref = container(deployment, "gateway")["envFrom"][0]["configMapRef"]["name"]
    monitor_env = {e["name"]: e for e in container(deployment, "gateway-monitor")["env"]}
    assert monitor_env["SUBSCRIPTIONS"]["valueFrom"] == {
        "configMapKeyRef": {"name": ref, "key": "SUBSCRIPTIONS"}}  # the same, hash-suffixed, ConfigMap
    subscriptions = r.get("ConfigMap", ref)["data"]["SUBSCRIPTIONS"]
    config = load({}, environ={"SUBSCRIPTIONS": subscriptions})
    expected = {(s["platform"], s["instrument"]) for s in json.loads(subscriptions)}
    assert {(s.platform, s.instrument) for s in config.subscriptions} == expected


def test_images_are_pinned(rendered: dict[str, Rendered]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["version"]
    for r in rendered.values():
        deployment = r.get("Deployment")
        gateway = container(deployment, "gateway")["image"]
        assert re.fullmatch(r"ghcr\.io/tektii/gateway:\d+\.\d+\.\d+(-slim)?(@sha256:[0-9a-f]{64})?",
                            gateway)
        monitor = container(deployment, "gateway-monitor")["image"]
        assert monitor.split("@")[0].endswith(f":{version}"), (
            f"monitor image {monitor} should carry the package version {version} "
            "(deploy/base/kustomization.yaml, images:)")


# --- pod security ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_pod_security(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    spec = pod_spec(r.get("Deployment"))
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    account = r.get("ServiceAccount", spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_container_is_restricted(rendered: dict[str, Rendered], name: str) -> None:
    deployment = rendered[name].get("Deployment")
    containers = list(all_containers(deployment))
    assert {c["name"] for c in containers} == {"gateway", "gateway-monitor"}
    for c in containers:
        sc = c["securityContext"]
        where = f"{name}/{c['name']}"
        assert sc["runAsNonRoot"] is True, where
        assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] >= 10000, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc.get("privileged", False) is False, where
        assert sc["capabilities"] == {"drop": ["ALL"]}, where
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert c["resources"]["limits"]["memory"], where
        assert c["resources"]["requests"]["memory"], where
        # With a read-only root, /tmp must be a volume of its own.
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, where


def test_writable_volumes_are_bounded(rendered: dict[str, Rendered]) -> None:
    for volume in pod_spec(rendered["base"].get("Deployment"))["volumes"]:
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), volume["name"]


# --- Service, NetworkPolicy, PodMonitor --------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_exposes_both_ports(rendered: dict[str, Rendered]) -> None:
    r = rendered["base"]
    service = r.get("Service")
    assert service["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    # 9478 by number: named targetPorts of native sidecars resolve only from Kubernetes 1.32.
    assert ports == {"http": (8080, "http"), "monitor-metrics": (9478, 9478)}
    labels = r.get("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _matches(service["spec"]["selector"], labels)


def test_network_policy_admits_prometheus_to_both_ports_and_strategies_to_the_api(
    rendered: dict[str, Rendered],
) -> None:
    r = rendered["base"]
    policy = r.get("NetworkPolicy")["spec"]
    labels = r.get("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _matches(policy["podSelector"]["matchLabels"], labels)
    assert policy["policyTypes"] == ["Ingress"]
    rules = {}
    for rule in policy["ingress"]:
        assert len(rule["from"]) == 1
        peer = rule["from"][0]
        key = "prometheus" if "namespaceSelector" in peer else "strategy"
        rules[key] = (peer, sorted(p["port"] for p in rule["ports"]))
    prometheus, prometheus_ports = rules["prometheus"]
    assert prometheus_ports == [8080, 9478]
    assert prometheus["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    strategy, strategy_ports = rules["strategy"]
    assert strategy_ports == [8080]
    assert strategy == {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "strategy"}}}


def test_pod_monitor_scrapes_both_ports_with_the_rules_job_names(
    rendered: dict[str, Rendered],
) -> None:
    r = rendered["prometheus-operator"]
    monitor = r.get("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert r.get("PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    deployment = r.get("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(monitor["spec"]["selector"]["matchLabels"], labels)
    pod_ports = {p["name"] for c in all_containers(deployment) for p in c.get("ports", [])}
    jobs = {}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in pod_ports
        assert endpoint["path"] == "/metrics"
        (relabel,) = [x for x in endpoint["relabelings"] if x.get("targetLabel") == "job"]
        jobs[endpoint["port"]] = relabel["replacement"]
        # Sharded, both targets of a pod must land on one shard (rules join a pod's two targets).
        (shard_key,) = [x for x in endpoint["relabelings"] if x.get("targetLabel") == "__tmp_hash"]
        assert shard_key["sourceLabels"] == ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name"]
    assert jobs == JOBS


@pytest.mark.parametrize(("name", "file"), [("gateway-monitor-dashboard", "gateway-monitor.json"),
                                            ("gateway-fleet-dashboard", "gateway-fleet.json")])
def test_dashboard_config_map(rendered: dict[str, Rendered], name: str, file: str) -> None:
    cm = rendered["prometheus-operator"].get("ConfigMap", name)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (DEPLOY / "grafana" / file).read_text(encoding="utf-8")
    assert cm["data"] == {file: committed}
    # Client-side `kubectl apply` keeps a copy in an annotation limited to 256 KiB.
    assert len(committed.encode()) < 200 * 1024


def test_install_hint_names_the_script() -> None:
    assert "deploy/install-tools.sh" in INSTALL_HINT
    assert (DEPLOY / "install-tools.sh").is_file()


def test_tools_install_script_is_valid_shell() -> None:
    result = subprocess.run(["sh", "-n", str(DEPLOY / "install-tools.sh")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
