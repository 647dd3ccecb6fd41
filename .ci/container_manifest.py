#!/usr/bin/env python3
"""Checks deploy/kubernetes.yaml for what the image needs (no cluster runs here).

kubernetes-validate has already held it to Kubernetes' schemas; this says that the pod
runs the image as its user on a read-only root, probes the liveness and readiness routes
on the container's port, and mounts a persistent volume claim at /data. Prints one line;
exits non-zero with the first thing wrong.
"""

import sys

import yaml


def main(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {d["kind"]: d for d in docs}
    for kind in ("PersistentVolumeClaim", "Deployment", "Service"):
        if kind not in kinds:
            raise SystemExit(f"no {kind} in {path}")
    deployment, claim = kinds["Deployment"], kinds["PersistentVolumeClaim"]
    spec = deployment["spec"]
    if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
        raise SystemExit("one replica, replaced with Recreate: the store has one writer")
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    want = {
        "pod runAsNonRoot": (pod_sc.get("runAsNonRoot"), True),
        "pod runAsUser": (pod_sc.get("runAsUser"), 65532),
        "pod runAsGroup": (pod_sc.get("runAsGroup"), 65532),
        "pod fsGroup": (pod_sc.get("fsGroup"), 65532),
        "readOnlyRootFilesystem": (sc.get("readOnlyRootFilesystem"), True),
        "allowPrivilegeEscalation": (sc.get("allowPrivilegeEscalation"), False),
        "capabilities.drop": (sc.get("capabilities", {}).get("drop"), ["ALL"]),
        "containerPort": ([p["containerPort"] for p in container["ports"]], [8083]),
        "liveness path": (container["livenessProbe"]["httpGet"]["path"], "/actuator/health/liveness"),
        "readiness path": (container["readinessProbe"]["httpGet"]["path"], "/actuator/health/readiness"),
    }
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        named = {p.get("name"): p["containerPort"] for p in container["ports"]}
        want[f"{probe} port"] = (named.get(port, port), 8083)
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    source = volumes.get(mounts.get("/data"), {}).get("persistentVolumeClaim", {})
    want["/data from the claim"] = (source.get("claimName"), claim["metadata"]["name"])
    wrong = [f"{k}: {got!r}, want {exp!r}" for k, (got, exp) in want.items() if got != exp]
    if wrong:
        raise SystemExit("; ".join(wrong))
    print(f"{path}: {len(want)} settings as the image needs them")


if __name__ == "__main__":
    main(sys.argv[1])
