"""Helpers of the deployment tests: paths, tools, rendered overlays (fixture in conftest.py).

The tools come from deploy/install-tools.sh (PyPI) and tests/install-go-tools.sh (Go module
proxy: promtool, kustomize, the prometheus-operator CRDs). A missing tool fails the test that
needs it, naming those scripts; nothing is skipped.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from toolpaths import SCHEMAS, TOOLS_BIN

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The CRDs of the prometheus-operator release the manifests target, from its Go module
# (tests/install-go-tools.sh).
CRD_DIR = SCHEMAS / "prometheus-operator-v0.93.0"
INSTALL_HINT = "install it with: sh deploy/install-tools.sh && sh tests/install-go-tools.sh"

# Every kustomization a user may build, and the Kubernetes versions it must be valid for
# ("newest" = the newest version kubernetes-validate knows).
OVERLAYS = {
    "base": (DEPLOY / "base", ("1.29.0", "newest")),
    "legacy-sidecar": (DEPLOY / "overlays" / "legacy-sidecar", ("1.27.0", "1.28.0")),
    "prometheus-operator": (DEPLOY / "overlays" / "prometheus-operator", ("1.29.0", "newest")),
}
CUSTOM_GROUP = "monitoring.coreos.com"


def tool(name: str) -> str:
    """Path of an installed tool, from deploy/install-tools.sh's venv or PATH; else fail."""
    candidate = TOOLS_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found in {TOOLS_BIN} or on PATH; {INSTALL_HINT}")


def kustomize_command() -> list[str]:
    """`kubectl kustomize`, or a standalone `kustomize build` from install-tools.sh."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return [tool("kustomize"), "build"]


def run(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output, never inheriting stdin."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, **kwargs)


def kustomize(path: Path) -> str:
    """Rendered YAML of one kustomization; fails the test with kustomize's message."""
    result = run([*kustomize_command(), str(path)])
    if result.returncode != 0:
        pytest.fail(f"kustomize failed for {path}:\n{result.stderr}")
    return result.stdout


@dataclass
class Rendered:
    """One rendered kustomization."""

    name: str
    text: str
    objects: list[dict[str, Any]]
    file: Path

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The one object of this kind (and name)."""
        found = [o for o in self.objects
                 if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Every overlay rendered once per session, each also written to <tmp>/<name>.yaml."""
    out_dir = tmp_path_factory.mktemp("rendered")
    result = {}
    for name, (path, _versions) in OVERLAYS.items():
        text = kustomize(path)
        file = out_dir / f"{name}.yaml"
        file.write_text(text, encoding="utf-8")
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
        result[name] = Rendered(name, text, objects, file)
    return result


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def all_containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init containers (native sidecars included) and containers of a Deployment."""
    spec = pod_spec(deployment)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in all_containers(deployment) if c["name"] == name]
    assert len(found) == 1, f"expected one container {name}, got {len(found)}"
    return found[0]


def _crd_schema(kind: str) -> dict[str, Any]:
    files = [p for p in CRD_DIR.glob("*.yaml")
             if yaml.safe_load(p.read_text(encoding="utf-8"))["spec"]["names"]["kind"] == kind]
    if not files:
        pytest.fail(f"no CRD for {kind} in {CRD_DIR}; {INSTALL_HINT}")
    crd = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused, as the API server's strict field validation does."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and "(?i)" in pattern:
                # Go's RE2 takes inline flags anywhere, Python's re only at the start.
                node["pattern"] = "(?i)" + pattern.replace("(?i)", "")
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A validator for one custom resource kind: its CRD's schema, unknown fields refused."""
    schema = _strict(_crd_schema(kind))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)
