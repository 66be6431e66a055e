"""The examples of deploy/README.md work as written."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import DEPLOY, REPO, kustomize, pod_spec

README = DEPLOY / "README.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _render(kustomization: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return [o for o in yaml.safe_load_all(kustomize(directory)) if o]


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_example_overlay_renders_as_described(tmp_path: Path) -> None:
    (block,) = [b for b in _yaml_blocks() if b.startswith("# my-gateway/kustomization.yaml")]
    # The README's overlay sits next to a checkout named gateway-monitor.
    overlay = tmp_path / "my-gateway"
    block = block.replace("../gateway-monitor/", os.path.relpath(REPO, overlay) + "/")
    objects = _render(yaml.safe_load(block), overlay)
    assert {o["metadata"].get("namespace") for o in objects} == {"trading"}
    deployment = _one(objects, "Deployment")
    images = {c["name"]: c["image"] for c in pod_spec(deployment)["initContainers"]
              + pod_spec(deployment)["containers"]}
    assert images == {"gateway-monitor": "registry.example.com/trading/gateway-monitor:0.1.0",
                      "gateway": "ghcr.io/tektii/gateway:0.2.0"}
    config = next(o for o in objects if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"].startswith("gateway-config-"))
    assert config["data"]["GATEWAY_PROVIDER"] == "alpaca"
    assert config["data"]["GATEWAY_HOST"] == "0.0.0.0"  # merged, not replaced


def _patch_blocks() -> list[dict[str, Any]]:
    return [yaml.safe_load(b) for b in _yaml_blocks() if b.startswith("patches:")]


def test_release_label_patch(tmp_path: Path) -> None:
    (patches,) = [p for p in _patch_blocks() if "PodMonitor" in str(p)]
    objects = _render({
        "resources": [os.path.relpath(DEPLOY / "overlays" / "prometheus-operator", tmp_path)],
        **patches}, tmp_path)
    for kind in ("PodMonitor", "PrometheusRule"):
        assert _one(objects, kind)["metadata"]["labels"]["release"] == "my-release"


def test_network_policy_patch(tmp_path: Path) -> None:
    (patches,) = [p for p in _patch_blocks() if "NetworkPolicy" in str(p)]
    objects = _render({"resources": [os.path.relpath(DEPLOY / "base", tmp_path)], **patches},
                      tmp_path)
    peer = _one(objects, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "observability"}
