#!/usr/bin/env python3
"""Render a kustomization without kustomize, for the small subset of kustomize that deploy/ uses.

Supported: `resources` (YAML files, possibly multi-document, and directories holding a kustomization.yaml)
and `namespace` (set on every namespaced object, as kustomize's namespace transformer does). Any other
kustomization field is an error, so this renderer never silently differs from `kubectl kustomize`;
deploy/check.sh compares the two wherever kubectl is installed.

    python3 deploy/tools/render.py deploy/k8s/overlays/mqtt            # YAML on stdout
    python3 deploy/tools/render.py deploy/k8s/overlays/mqtt | kubectl apply -f -
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "resources"}

# Kinds kustomize treats as cluster-scoped (it leaves their namespace alone). Unknown kinds, such as
# SpinApp and SpinAppExecutor, are namespaced, as they are for kustomize and for the SpinKube CRDs.
CLUSTER_SCOPED = {
    "APIService",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
}


class RenderError(Exception):
    pass


def object_id(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def _load_file(path: Path) -> list[dict]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as err:
        raise RenderError(f"{path}: not valid YAML: {err}") from err
    objects = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"{path}: a document without apiVersion/kind")
        if not (doc.get("metadata") or {}).get("name"):
            raise RenderError(f"{path}: a {doc['kind']} without metadata.name")
        objects.append(doc)
    return objects


def render(directory: Path, _stack: tuple[Path, ...] = ()) -> list[dict]:
    """Objects of the kustomization in `directory`, in resource order."""
    directory = directory.resolve()
    if directory in _stack:
        raise RenderError(f"{directory}: kustomization cycle")
    kfile = next((directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                  if (directory / n).is_file()), None)
    if kfile is None:
        raise RenderError(f"{directory}: no kustomization.yaml")
    kust = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(kust) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{kfile}: fields this renderer does not implement: {', '.join(sorted(unknown))}")
    if kust.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{kfile}: kind must be Kustomization")
    objects: list[dict] = []
    for entry in kust.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path, _stack + (directory,)))
        elif path.is_file():
            objects.extend(_load_file(path))
        else:
            raise RenderError(f"{kfile}: resource {entry!r} does not exist")
    namespace = kust.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        oid = object_id(obj)
        if oid in seen:
            raise RenderError(f"{kfile}: {oid[1]} {oid[3]!r} is defined twice")
        seen.add(oid)
    return objects


def to_yaml(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(to_yaml(render(Path(argv[1]))))
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
