"""``deploy/kubernetes``: the production overlay rendered (in Python, ``tests/kustomize_lite``),
every object validated against the Kubernetes schemas (``kubernetes-validate``, strict: an
unknown field fails), and the promises checked: 3 replicas never fewer than 2, probes on the
service's own endpoints, a locked-down pod, settings the service accepts.

The ServiceMonitor is a custom resource: ``kubernetes-validate`` has no schema for it, so it is
checked by hand against the Service it scrapes (a documented exception).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from service.config import Settings
from tests.kustomize_lite import load, render
from tests.procs import ROOT
from tests.test_dockerfile import exec_form, stages

KUBE = ROOT / "deploy" / "kubernetes"
PRODUCTION = KUBE / "overlays" / "production"
BASE = KUBE / "base"
SECRET_TEMPLATE = BASE / "secret.template.yaml"
#: The oldest Kubernetes the manifests promise to work on, and the newest the package knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor")}

Resource = dict[str, Any]


def objects(directory: Path = PRODUCTION) -> dict[str, Resource]:
    return {r["kind"]: r for r in render(directory)}


def deployment() -> Resource:
    return objects()["Deployment"]


def pod() -> Resource:
    spec: Resource = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> Resource:
    (only,) = pod()["containers"]
    found: Resource = only
    return found


def validate(resource: Resource, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_every_object_is_valid_by_the_kubernetes_schemas(directory: Path, version: str) -> None:
    rendered = render(directory)
    assert {r["kind"] for r in rendered} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceMonitor",
    }
    for resource in rendered:
        if (resource["apiVersion"], resource["kind"]) in CUSTOM:
            continue  # no schema in the package: test_the_service_monitor_scrapes_the_service
        validate(resource, version)
    for secret in load(SECRET_TEMPLATE):
        validate(secret, version)


def test_the_validation_refuses_a_mistake() -> None:
    broken = copy.deepcopy(deployment())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, VERSIONS[-1])
    broken = copy.deepcopy(deployment())
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, VERSIONS[-1])


def test_three_replicas_never_fewer_than_two() -> None:
    spec = deployment()["spec"]
    rolling = spec["strategy"]["rollingUpdate"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == (1, 1)
    assert spec["replicas"] - rolling["maxUnavailable"] >= 2
    budget = objects()["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_probes_ask_the_services_own_endpoints() -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    runtime = stages()[-1]
    assert c["args"] == exec_form(runtime.last("CMD")), "the image's own command"
    assert str(ports["http"]) == c["args"][c["args"].index("--port") + 1]
    from service.runtime import create_app

    served = {getattr(r, "path", "") for r in create_app(Settings.from_env({})).routes}
    assert {"/readyz", "/healthz", "/metrics"} <= served


def test_the_pod_is_locked_down() -> None:
    p, c = pod(), container()
    assert p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert str(p["securityContext"]["runAsUser"]) == stages()[-1].last("USER").split(":")[0]
    assert p["automountServiceAccountToken"] is False
    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in p["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp on a read-only root"
    resources = c["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_the_grace_period_covers_the_drain() -> None:
    c = container()
    config = objects()["ConfigMap"]["data"]
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(config["SHUTDOWN_TIMEOUT_SECONDS"])
    assert pod()["terminationGracePeriodSeconds"] >= pre_stop + drain + 5


def test_settings_are_the_services_own_and_secrets_are_only_a_template() -> None:
    known = {name.upper() for name in Settings.model_fields}
    config = objects()["ConfigMap"]
    (secret,) = load(SECRET_TEMPLATE)
    assert set(config["data"]) <= known, set(config["data"]) - known
    assert set(secret["stringData"]) <= known, set(secret["stringData"]) - known
    assert not set(config["data"]) & set(secret["stringData"])
    Settings.from_env(config["data"])  # the values are valid
    refs = {next(iter(ref.values()))["name"] for ref in container()["envFrom"]}
    assert refs == {config["metadata"]["name"], secret["metadata"]["name"]}
    # No real value: empty, a JSON placeholder, or a URL of capitals.
    for key, value in secret["stringData"].items():
        assert value in ("", "{}") or "USER:PASSWORD@HOST" in value, key
    assert "Secret" not in {r["kind"] for r in render(PRODUCTION)}, "kustomize never applies one"
    secrets = {s.lower() for s in ("secret", "token", "password", "key")}
    for key, value in config["data"].items():
        assert not any(word in key.lower() for word in secrets), f"{key} belongs in the Secret"
        assert value is not None


def test_the_service_and_the_network_policy_reach_the_pods() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    service = objects()["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert {p["name"] for p in container()["ports"]} >= {p["targetPort"] for p in service["ports"]}
    policy = objects()["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress == {8080}
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (5432, "TCP"), (443, "TCP")} <= egress


def test_the_service_monitor_scrapes_the_service() -> None:
    """The documented exception: ServiceMonitor's fields checked by hand (Prometheus Operator's
    ``monitoring.coreos.com/v1``: ``selector``, ``endpoints[].port|path|interval``)."""
    monitor, service = objects()["ServiceMonitor"], objects()["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    seconds = {k: int(endpoint[k].removesuffix("s")) for k in ("interval", "scrapeTimeout")}
    assert seconds["scrapeTimeout"] <= seconds["interval"]


def test_everything_lands_in_the_production_namespace() -> None:
    rendered = render(PRODUCTION)
    namespace = objects()["Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for resource in rendered:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"], json.dumps(
                resource["metadata"]
            )
