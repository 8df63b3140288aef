#!/usr/bin/env python3
"""Renders deploy/kubernetes (the base and every overlay) and validates every object, offline.

- Rendering: a small renderer of the kustomization fields this repository uses (`resources`,
  `images`, `patches` with JSON 6902 operations; any other field is an error, so nothing is
  silently ignored). When `kubectl` is installed, `kubectl kustomize` renders too and both must
  give the same objects.
- Built-in kinds: `kubernetes-validate --strict` (PyPI; the Kubernetes OpenAPI schemas it ships),
  for the Kubernetes version below.
- KEDA's kinds: jsonschema against the CustomResourceDefinitions in
  deploy/kubernetes/schemas/ (which themselves validate as CustomResourceDefinitions), with every
  object closed as the API server's strict field validation does.
- Cross-references a schema cannot see: selectors match their pods, probes name ports that exist,
  Secrets and the ScaledObject's target exist, the worker's grace period covers its drain.

Usage: scripts/check_kubernetes.py     (exit 0 iff every check passed; runs under .venv-test,
       where scripts/setup.sh installs kubernetes-validate)
"""
import copy
import json
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "kubernetes")
KUBERNETES_VERSION = "1.30.0"
SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches"}

passed, failed = 0, 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok    " + what)
    else:
        failed += 1
        print("FAIL  " + what)
    return ok


# ------------------------------------------------------------------------------ rendering
def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def json_pointer_parts(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json6902(obj, ops):
    for op in ops:
        parts = json_pointer_parts(op["path"])
        parent = obj
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, op["value"])
            elif kind == "remove":
                del parent[idx]
            elif kind == "replace":
                parent[idx] = op["value"]
            else:
                raise ValueError("unsupported JSON patch op %s" % kind)
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise ValueError("replace of a missing path %s" % op["path"])
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            else:
                raise ValueError("unsupported JSON patch op %s" % kind)


def matches(target, obj):
    group, _, version = obj["apiVersion"].rpartition("/")
    return all([
        target.get("kind") in (None, obj["kind"]),
        target.get("name") in (None, obj["metadata"]["name"]),
        target.get("namespace") in (None, obj["metadata"].get("namespace")),
        target.get("group") in (None, group),
        target.get("version") in (None, version),
    ])


def containers_of(obj):
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec") if "template" in spec else None
    if pod is None:
        return []
    return pod.get("containers", []) + pod.get("initContainers", [])


def render(directory):
    """The objects `kustomize build directory` gives, for the fields in SUPPORTED."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - SUPPORTED
    if unknown:
        raise ValueError("%s: kustomization fields this renderer does not apply: %s"
                         % (directory, sorted(unknown)))
    objs = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        objs += render(path) if os.path.isdir(path) else load_docs(path)
    for image in k.get("images", []):
        for obj in objs:
            for c in containers_of(obj):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = "%s:%s" % (image.get("newName", name), image.get("newTag", tag or "latest"))
    for patch in k.get("patches", []):
        ops = yaml.safe_load(patch["patch"])
        hits = [o for o in objs if matches(patch["target"], o)]
        if not hits:
            raise ValueError("%s: a patch matches no object: %s" % (directory, patch["target"]))
        for o in hits:
            apply_json6902(o, ops)
    return objs


def key(obj):
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def canonical(objs):
    return sorted(json.dumps(o, sort_keys=True) for o in objs)


# ----------------------------------------------------------------------------- validation
def closed(schema):
    """The schema with every object that lists its properties closed to others (what strict field
    validation does to a structural CRD schema), minus the Kubernetes extensions."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for k in [k for k in node if k.startswith("x-kubernetes-")]:
                del node[k]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(s)
    return s


def crd_validators():
    import jsonschema
    out = {}
    for name in sorted(os.listdir(os.path.join(DEPLOY, "schemas"))):
        if not name.endswith((".yaml", ".yml")):
            continue
        for crd in load_docs(os.path.join(DEPLOY, "schemas", name)):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = closed(v["schema"]["openAPIV3Schema"])
                jsonschema.Draft202012Validator.check_schema(schema)
                out[("%s/%s" % (group, v["name"]), kind)] = (
                    jsonschema.Draft202012Validator(schema), crd)
    return out


def validate(objs, where, crds):
    import kubernetes_validate
    for obj in objs:
        label = "%s: %s %s/%s" % (where, obj["kind"], obj["metadata"].get("namespace", "-"),
                                  obj["metadata"]["name"])
        entry = crds.get((obj["apiVersion"], obj["kind"]))
        if entry is not None:
            errors = sorted(entry[0].iter_errors(obj), key=lambda e: list(e.path))
            check(not errors, "%s valid against the vendored CRD schema%s" % (
                label, "".join("\n      %s: %s" % ("/".join(map(str, e.path)), e.message)
                               for e in errors[:5])))
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            check(True, "%s valid (kubernetes-validate --strict, Kubernetes %s)"
                  % (label, KUBERNETES_VERSION))
        except Exception as e:  # noqa: BLE001 (any failure to validate is a failed check)
            cause = getattr(e, "caught", None) or e
            where_ = "/".join(map(str, getattr(cause, "path", []) or []))
            message = getattr(cause, "message", None) or str(e).splitlines()[0]
            check(False, "%s valid (kubernetes-validate --strict): %s: %s" % (label, where_, message))


def cross_references(objs, where):
    by = {key(o): o for o in objs}

    def get(kind, ns, name):
        return by.get((kind, ns, name))

    for o in objs:
        ns = o["metadata"].get("namespace", "")
        spec = o.get("spec", {})
        if o["kind"] in ("Deployment", "StatefulSet"):
            sel = spec["selector"]["matchLabels"]
            labels = spec["template"]["metadata"]["labels"]
            check(all(labels.get(k) == v for k, v in sel.items()),
                  "%s: %s %s: its selector matches its pod template" % (where, o["kind"], o["metadata"]["name"]))
            for c in containers_of(o):
                ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    p = c.get(probe, {}).get("httpGet")
                    if p:
                        check(p["port"] in ports, "%s: %s/%s %s names a port it has (%s)"
                              % (where, o["metadata"]["name"], c["name"], probe, p["port"]))
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        s = get("Secret", ns, ref["name"])
                        check(s is not None and ref["key"] in {**s.get("stringData", {}), **s.get("data", {})},
                              "%s: %s reads Secret %s key %s, which exists"
                              % (where, o["metadata"]["name"], ref["name"], ref["key"]))
        if o["kind"] in ("Service", "PodDisruptionBudget"):
            sel = spec.get("selector", {})
            sel = sel.get("matchLabels", sel) if o["kind"] == "PodDisruptionBudget" else sel
            pods = [w for w in objs if w["kind"] in ("Deployment", "StatefulSet") and
                    w["metadata"].get("namespace", "") == ns and
                    all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            check(len(pods) == 1, "%s: %s %s selects the pods of one workload (%s)"
                  % (where, o["kind"], o["metadata"]["name"], [p["metadata"]["name"] for p in pods]))
        if o["kind"] == "ScaledObject":
            ref = spec["scaleTargetRef"]
            target = get(ref.get("kind", "Deployment"), ns, ref["name"])
            check(target is not None, "%s: the ScaledObject scales %s, which exists" % (where, ref["name"]))
            if target is not None:
                check("replicas" not in target["spec"], "%s: %s leaves replicas to the autoscaler"
                      % (where, ref["name"]))
            for t in spec["triggers"]:
                auth = t.get("authenticationRef")
                if auth:
                    check(get("TriggerAuthentication", ns, auth["name"]) is not None,
                          "%s: trigger %s authenticates with %s, which exists" % (where, t.get("name"), auth["name"]))
                if t["type"] == "metrics-api":
                    check(t["metadata"].get("activationTargetValue") == "0",
                          "%s: trigger %s activates at the first job waiting or running" % (where, t.get("name")))
            down = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown", {})
            check(down.get("stabilizationWindowSeconds", 0) > 0,
                  "%s: the ScaledObject has a scale-down stabilization window (%s s)"
                  % (where, down.get("stabilizationWindowSeconds")))
        if o["kind"] == "TriggerAuthentication":
            for ref in spec.get("secretTargetRef", []):
                s = get("Secret", ns, ref["name"])
                check(s is not None and ref["key"] in {**s.get("stringData", {}), **s.get("data", {})},
                      "%s: TriggerAuthentication %s reads Secret %s key %s, which exists"
                      % (where, o["metadata"]["name"], ref["name"], ref["key"]))
    worker = get("Deployment", "inferq", "inferq-worker")
    if worker is not None:
        pod = worker["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        grace = int(env.get("INFERQ_SHUTDOWN_GRACE_SECS") or 30)
        check(pod.get("terminationGracePeriodSeconds", 30) > grace,
              "%s: the worker's terminationGracePeriodSeconds (%s) covers its drain (%d s)"
              % (where, pod.get("terminationGracePeriodSeconds"), grace))
        check("INFERQ_METRICS_BIND" in env, "%s: the worker serves its probes (INFERQ_METRICS_BIND)" % where)


def main():
    try:
        import kubernetes_validate  # noqa: F401
        import jsonschema  # noqa: F401
    except ImportError as e:
        print("FAIL  %s: run under .venv-test (scripts/setup.sh installs kubernetes-validate)" % e)
        return 1
    crds = crd_validators()
    check(set(k for _, k in crds) >= {"ScaledObject", "TriggerAuthentication"},
          "vendored CRD schemas for ScaledObject and TriggerAuthentication")
    validate([c for _, c in crds.values()], "schemas", {})
    kubectl = shutil.which("kubectl")
    targets = ["base"] + ["overlays/" + d for d in sorted(os.listdir(os.path.join(DEPLOY, "overlays")))]
    for t in targets:
        directory = os.path.join(DEPLOY, t)
        try:
            objs = render(directory)
        except (ValueError, KeyError, IndexError, OSError) as e:
            check(False, "%s renders: %s" % (t, e))
            continue
        check(len({key(o) for o in objs}) == len(objs), "%s renders %d objects, no two alike" % (t, len(objs)))
        if kubectl:
            res = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
            if check(res.returncode == 0, "%s: kubectl kustomize renders it" % t):
                theirs = [d for d in yaml.safe_load_all(res.stdout) if d]
                check(canonical(theirs) == canonical(objs),
                      "%s: kubectl kustomize gives the same objects as this renderer" % t)
        validate(objs, t, crds)
        cross_references(objs, t)
    if not kubectl:
        print("note  kubectl not installed: rendered by this script only")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
