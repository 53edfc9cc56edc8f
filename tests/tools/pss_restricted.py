"""Checks Kubernetes manifests against the Pod Security Standard "restricted" profile.

Usage: pss_restricted.py FILE...  (exit 1 and one line per violation when any pod breaks it)

The controls checked are those of the profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
the baseline ones a generated manifest could break (host namespaces and ports, privileged
containers, added capabilities, hostPath volumes) and every "restricted" one (volume types,
allowPrivilegeEscalation false, runAsNonRoot, no runAsUser 0, a RuntimeDefault or Localhost seccomp
profile, every capability dropped with at most NET_BIND_SERVICE added back). It also asks what
the generated pods promise beyond it: a read-only root filesystem and resource requests and limits.
"""

import sys

import yaml

POD_TEMPLATES = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def pod_specs(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        yield doc.get("spec", {})
    elif kind in POD_TEMPLATES:
        yield doc.get("spec", {}).get("template", {}).get("spec", {})
    elif kind == "CronJob":
        yield doc.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})


def check(spec):
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key} is set")
    for volume in spec.get("volumes") or []:
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume.get('name')} is of a type the profile forbids: {sorted(types)}")
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    if not containers:
        problems.append("no containers")
    for c in containers:
        name = c.get("name", "?")
        sc = c.get("securityContext") or {}
        merged = {**pod_sc, **sc}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if merged.get("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if merged.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (merged.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile.type is {seccomp!r}, not RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities.drop does not hold ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        resources = c.get("resources") or {}
        if not resources.get("requests") or not resources.get("limits"):
            problems.append(f"{name}: resources need requests and limits")
    return problems


def main(paths):
    failed = False
    pods = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not isinstance(doc, dict):
                    continue
                for spec in pod_specs(doc):
                    pods += 1
                    for problem in check(spec):
                        failed = True
                        print(f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {problem}")
    print(f"{pods} pod template(s) checked")
    return 1 if failed or pods == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
