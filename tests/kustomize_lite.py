"""Render a kustomization in Python, for the features ``deploy/kubernetes`` uses: ``resources``
(files and directories), ``namespace``, and ``patches`` by ``path`` as strategic merge patches
(maps merged, lists of named items merged by ``name``, other lists replaced).

Tests run where neither ``kubectl`` nor ``kustomize`` can be had from a registry package; this
is enough to validate what the overlay produces. Anything else in a kustomization fails loudly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "patches"}
#: Kinds with no namespace (the ones used here).
CLUSTER_SCOPED = {"Namespace"}

Resource = dict[str, Any]


def render(directory: Path) -> list[Resource]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise NotImplementedError(f"{directory}: kustomize_lite does not do {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load(path)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise NotImplementedError(f"{directory}: only patches by path: {patch}")
        for document in load(directory / patch["path"]):
            target = find(resources, document)
            merged = merge(target, document)
            target.clear()
            target.update(merged)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    return resources


def load(path: Path) -> list[Resource]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(resources: list[Resource], patch: Resource) -> Resource:
    for resource in resources:
        if (resource["kind"], resource["metadata"]["name"]) == (
            patch["kind"],
            patch["metadata"]["name"],
        ):
            return resource
    raise LookupError(f"patch of {patch['kind']}/{patch['metadata']['name']}: no such resource")


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch, as far as these manifests need one."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            for i, existing in enumerate(merged_list):
                if existing["name"] == item["name"]:
                    merged_list[i] = merge(existing, item)
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)
