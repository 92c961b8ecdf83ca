#!/usr/bin/env python3
"""Checks deploy/kubernetes/ and helm/sluice/ against a sluice binary.

    /usr/bin/python3 deploy/check_manifests.py [--sluice build/sluice]

Needs PyYAML (Debian: python3-yaml). For each of the Kubernetes manifests and
the Helm chart's values.yaml it rebuilds the files a pod sees
(config/sluice.yaml and the drop-in directory conf.d/), runs `sluice check`
on them, then adds deploy/runbooks/emergency-firmware.yaml as a drop-in and
checks that `sluice explain` refuses a blocked firmware with 403. It also
checks the Deployment's wiring: probes on /healthz and /readyz, a 500m CPU
limit on sluice, mounts where the config's include: points. Exit 0 when all
is well. helm itself is not needed: the templates are not rendered here.
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
failures = []


def check(cond, what):
    print("  %s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def sluice(binary, *args):
    p = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def check_config(binary, label, main_text, dropins):
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
        check(rc == 0, "%s: sluice check%s" % (label, "" if rc == 0 else ":\n" + err))
        with open(EMERGENCY) as src, open(os.path.join(d, "conf.d", "emergency-firmware.yaml"),
                                          "w") as dst:
            dst.write(src.read())
        rc, out, err = sluice(binary, "explain", "-c", main, "--ip", "192.0.2.10",
                              "--header", "X-Device-Class: airtame-hub",
                              "--header", "X-Firmware-Version: 3.8.0-b10", "/v1/connect")
        verdict = json.loads(out)["verdict"] if rc == 0 else {}
        check(rc == 0 and verdict.get("status") == 403,
              "%s + emergency-firmware.yaml: explain refuses airtame-hub 3.8.0-b10 (%s)"
              % (label, verdict or err.strip()))


def container(spec, name):
    return next((c for c in spec["containers"] if c["name"] == name), None)


def check_kubernetes(binary):
    print("deploy/kubernetes/")
    docs = {}
    for fn in sorted(os.listdir(K8S)):
        if not fn.endswith(".yaml"):
            continue
        with open(os.path.join(K8S, fn)) as f:
            for doc in yaml.safe_load_all(f):
                if doc.get("kind") == "Kustomization":
                    missing = [r for r in doc["resources"] if not os.path.exists(os.path.join(K8S, r))]
                    check(not missing, "%s: resources exist %s" % (fn, missing or ""))
                    continue
                ok = all(k in doc for k in ("apiVersion", "kind", "metadata"))
                check(ok, "%s: %s/%s parses" % (fn, doc.get("kind"), doc["metadata"]["name"]))
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    cfg = docs[("ConfigMap", "sluice-config")]["data"]["sluice.yaml"]
    dropins = docs[("ConfigMap", "sluice-dropins")].get("data") or {}
    check_config(binary, "ConfigMap sluice-config + sluice-dropins", cfg, dropins)
    dep = docs[("Deployment", "identity-api")]
    spec = dep["spec"]["template"]["spec"]
    sc = container(spec, "sluice")
    check(sc is not None and container(spec, "identity-api") is not None,
          "Deployment: sluice and identity-api containers")
    check(sc["readinessProbe"]["httpGet"]["path"] == "/readyz"
          and sc["livenessProbe"]["httpGet"]["path"] == "/healthz", "Deployment: probes")
    check(sc["resources"]["limits"]["cpu"] == "500m", "Deployment: sluice CPU limit 500m")
    mounts = {m["name"]: m["mountPath"] for m in sc["volumeMounts"]}
    check(mounts.get("sluice-config") == "/etc/sluice/config"
          and mounts.get("sluice-dropins") == "/etc/sluice/conf.d"
          and "/etc/sluice/config/sluice.yaml" in sc["args"]
          and yaml.safe_load(cfg).get("include") == "../conf.d", "Deployment: mounts match include")
    svc = docs[("Service", "identity-api")]
    check(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
          and [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"],
          "Service: selects the pods, targets sluice's port")


def check_helm(binary):
    print("helm/sluice/")
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    check(chart.get("apiVersion") == "v2" and chart.get("name") == "sluice", "Chart.yaml")
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    s = values["sluice"]
    main = yaml.safe_dump(s["config"], sort_keys=False)
    dropins = {k: (v if isinstance(v, str) else yaml.safe_dump(v, sort_keys=False))
               for k, v in (s.get("dropins") or {}).items()}
    check_config(binary, "values.yaml sluice.config + sluice.dropins", main, dropins)
    check(s["resources"]["limits"]["cpu"] == "500m", "values.yaml: sluice CPU limit 500m")
    check(s["config"].get("include") == "../conf.d", "values.yaml: include ../conf.d")
    for fn in sorted(os.listdir(os.path.join(CHART, "templates"))):
        with open(os.path.join(CHART, "templates", fn)) as f:
            text = f.read()
        check(text.count("{{") == text.count("}}"), "templates/%s: balanced {{ }}" % fn)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    args = ap.parse_args()
    if not os.access(args.sluice, os.X_OK):
        sys.exit("check_manifests: %s not found (make build/sluice)" % args.sluice)
    check_kubernetes(args.sluice)
    if os.path.isdir(CHART):
        check_helm(args.sluice)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
