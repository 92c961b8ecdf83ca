#!/usr/bin/env python3
"""Checks deploy/kubernetes/ and helm/sluice/ against a sluice binary.

    /usr/bin/python3 deploy/check_manifests.py [--sluice build/sluice] [--helm HELM]
                                               [--node-modules DIR]

Needs PyYAML (Debian: python3-yaml). For the Kubernetes manifests, and for
the chart rendered by HELM (`helm template`; without --helm, the chart's
values.yaml only), it rebuilds the files a pod sees from every ConfigMap
that holds a sluice.yaml (config/sluice.yaml and its drop-in directory
conf.d/), runs `sluice check` on them, then adds
deploy/runbooks/emergency-firmware.yaml (less its example `expires`) as a
drop-in and checks that
`sluice explain` refuses a blocked firmware with 403. It also checks the
pod's wiring: sluice a native sidecar (an init container with
restartPolicy: Always) or a classic one, probes on /healthz and /readyz, a
startup probe, a 500m CPU limit, mounts where the config's include: points,
the ConfigMaps the volumes name. With --node-modules (a folder where npm
installed kubernetes-models and @kubernetes-models/prometheus-operator),
every object is also checked against the Kubernetes schemas by
deploy/kubernetes/validate-objects.mjs. Exit 0 when all is well.

test/integration/test_chart.py imports this module and runs it in make test.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("check_manifests: PyYAML missing (apt-get install python3-yaml)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
K8S = os.path.join(HERE, "kubernetes")
CHART = os.path.join(REPO, "helm", "sluice")
EMERGENCY = os.path.join(HERE, "runbooks", "emergency-firmware.yaml")
VALIDATOR = os.path.join(K8S, "validate-objects.mjs")
# helm's own default (v1.20) is below the chart's kubeVersion.
KUBE_VERSION = "1.29.0"


class Checker:
    """Collects the results of named checks; |verbose| prints each one."""

    def __init__(self, verbose=True):
        self.failures = []
        self.verbose = verbose

    def check(self, cond, what):
        if self.verbose:
            print("  %s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            self.failures.append(what)
        return cond


def sluice(binary, *args):
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def check_config(ck, binary, label, main_text, dropins):
    """Lays out config/sluice.yaml + conf.d/ like the pod's mounts and checks
    them, with and without the runbook's emergency drop-in."""
    with tempfile.TemporaryDirectory(prefix="sluice-manifests-") as d:
        os.makedirs(os.path.join(d, "config"))
        os.makedirs(os.path.join(d, "conf.d"))
        main = os.path.join(d, "config", "sluice.yaml")
        with open(main, "w") as f:
            f.write(main_text)
        for name, text in (dropins or {}).items():
            with open(os.path.join(d, "conf.d", name), "w") as f:
                f.write(text)
        rc, _, err = sluice(binary, "check", "-c", main)
        ck.check(rc == 0, "%s: sluice check%s" % (label, "" if rc == 0 else ":\n" + err))
        with open(os.path.join(d, "conf.d", "emergency-firmware.yaml"), "w") as dst:
            dst.write(emergency_dropin())
        rc, out, err = sluice(binary, "explain", "-c", main, "--ip", "192.0.2.10",
                              "--header", "X-Device-Class: airtame-hub",
                              "--header", "X-Firmware-Version: 3.8.0-b10", "/v1/connect")
        verdict = json.loads(out)["verdict"] if rc == 0 else {}
        ck.check(rc == 0 and verdict.get("status") == 403,
                 "%s + emergency-firmware.yaml: explain refuses airtame-hub 3.8.0-b10 (%s)"
                 % (label, verdict or err.strip()))


def emergency_dropin():
    """The runbook's drop-in without its `expires`: it is a template whose
    example date may have passed, and this checks the mechanism."""
    with open(EMERGENCY) as f:
        doc = yaml.safe_load(f)
    for entry in doc["blocklist"]["firmware"]:
        entry.pop("expires", None)
    return yaml.safe_dump(doc, sort_keys=False)


def sluice_container(spec):
    """(container, "native"|"classic") of the pod spec's sluice, or (None, None)."""
    for c in spec.get("initContainers") or []:
        if c["name"] == "sluice" and c.get("restartPolicy") == "Always":
            return c, "native"
    for c in spec.get("containers") or []:
        if c["name"] == "sluice":
            return c, "classic"
    return None, None


def sluice_configmaps(docs):
    """{name: (main text, {drop-in file: text}), ...} for every ConfigMap
    with a sluice.yaml, its drop-ins from the ConfigMap the pods mount
    beside it (NAME-dropins for NAME-config, or sluice-dropins)."""
    cms = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    out = {}
    for name, data in cms.items():
        if "sluice.yaml" in data:
            base = name[:-len("-config")] if name.endswith("-config") else name
            drop = cms.get(base + "-dropins", cms.get("sluice-dropins", {}))
            out[name] = (data["sluice.yaml"], drop)
    return out


def check_objects(ck, binary, docs, label, cpu_limit="500m"):
    """sluice check on every ConfigMap of |docs|, and the wiring of every pod
    that runs sluice."""
    configs = sluice_configmaps(docs)
    ck.check(configs, "%s: a ConfigMap with sluice.yaml" % label)
    for name, (main, dropins) in sorted(configs.items()):
        check_config(ck, binary, "%s: ConfigMap %s" % (label, name), main, dropins)
    pods = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    for dep in pods:
        what = "%s: %s/%s" % (label, dep["kind"], dep["metadata"]["name"])
        spec = dep["spec"]["template"]["spec"]
        sc, mode = sluice_container(spec)
        if not ck.check(sc is not None, what + ": a sluice sidecar"):
            continue
        http_get = lambda probe: (sc.get(probe) or {}).get("httpGet", {}).get("path")
        ck.check(http_get("readinessProbe") == "/readyz" and http_get("livenessProbe") == "/healthz"
                 and http_get("startupProbe") == "/readyz", what + ": probes (%s sidecar)" % mode)
        if cpu_limit:
            ck.check(sc["resources"]["limits"]["cpu"] == cpu_limit,
                     what + ": sluice CPU limit %s" % cpu_limit)
        mounts = {m["name"]: m["mountPath"] for m in sc["volumeMounts"]}
        vols = {v["name"]: v.get("configMap", {}).get("name") for v in spec["volumes"]}
        cfg_name = vols.get("sluice-config")
        main = configs.get(cfg_name, ("", {}))[0]
        ck.check(mounts.get("sluice-config") == "/etc/sluice/config"
                 and mounts.get("sluice-dropins") == "/etc/sluice/conf.d"
                 and "/etc/sluice/config/sluice.yaml" in sc["args"]
                 and (yaml.safe_load(main) or {}).get("include") == "../conf.d",
                 what + ": mounts ConfigMap %s and match include" % cfg_name)
        ck.check(spec.get("automountServiceAccountToken") is False,
                 what + ": automountServiceAccountToken: false")


def validate_objects(ck, docs, node_modules, label):
    """Every object against the Kubernetes schemas (validate-objects.mjs)."""
    p = subprocess.run(["node", VALIDATOR, node_modules], input=json.dumps(docs),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    bad = [l for l in p.stdout.splitlines() if not l.endswith(": ok")]
    ck.check(p.returncode == 0 and not bad,
             "%s: %d objects match the Kubernetes schemas%s"
             % (label, len(docs), "" if p.returncode == 0 else ":\n" + "\n".join(bad) + p.stderr))
    return p


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(helm, chart=CHART, args=(), release="sluice"):
    """`helm template` of |chart|: (returncode, docs or [], stderr)."""
    p = subprocess.run([helm, "template", release, chart, "--kube-version", KUBE_VERSION]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    return p.returncode, (load_docs(p.stdout) if p.returncode == 0 else []), p.stderr


def check_kubernetes(ck, binary, node_modules=None):
    docs = []
    for fn in sorted(os.listdir(K8S)):
        if not fn.endswith(".yaml"):
            continue
        with open(os.path.join(K8S, fn)) as f:
            for doc in yaml.safe_load_all(f):
                if doc.get("kind") == "Kustomization":
                    missing = [r for r in doc["resources"] if not os.path.exists(os.path.join(K8S, r))]
                    listed = set(doc["resources"])
                    ck.check(not missing, "%s: resources exist %s" % (fn, missing or ""))
                    ck.check(all(f in listed for f in os.listdir(K8S)
                                 if f.endswith(".yaml") and f != fn),
                             "%s: lists every manifest" % fn)
                    continue
                ok = all(k in doc for k in ("apiVersion", "kind", "metadata"))
                ck.check(ok, "%s: %s/%s parses" % (fn, doc.get("kind"), doc["metadata"]["name"]))
                docs.append(doc)
    check_objects(ck, binary, docs, "deploy/kubernetes")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    svc = next(d for d in docs if d["kind"] == "Service")
    ck.check(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
             and [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"],
             "deploy/kubernetes: Service selects the pods, targets sluice's port")
    if node_modules:
        validate_objects(ck, docs, node_modules, "deploy/kubernetes")


def check_helm_values(ck, binary):
    """Without helm: the chart's values.yaml configuration."""
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    ck.check(chart.get("apiVersion") == "v2" and chart.get("name") == "sluice", "Chart.yaml")
    with open(os.path.join(CHART, "values.yaml")) as f:
        s = yaml.safe_load(f)["sluice"]
    main = yaml.safe_dump(s["config"], sort_keys=False)
    check_config(ck, binary, "values.yaml sluice.config + sluice.dropins", main, s.get("dropins"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--helm", help="a helm binary: render the chart and check what it renders")
    ap.add_argument("--node-modules", help="where npm installed kubernetes-models")
    args = ap.parse_args()
    if not os.access(args.sluice, os.X_OK):
        sys.exit("check_manifests: %s not found (make build/sluice)" % args.sluice)
    ck = Checker()
    print("deploy/kubernetes/")
    check_kubernetes(ck, args.sluice, args.node_modules)
    print("helm/sluice/")
    if args.helm:
        rc, docs, err = render(args.helm)
        if ck.check(rc == 0, "helm template%s" % ("" if rc == 0 else ":\n" + err)):
            check_objects(ck, args.sluice, docs, "helm/sluice")
            if args.node_modules:
                validate_objects(ck, docs, args.node_modules, "helm/sluice")
    else:
        print("  (no --helm: the chart's values only)")
        check_helm_values(ck, args.sluice)
    if ck.failures:
        print("%d check(s) failed" % len(ck.failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
