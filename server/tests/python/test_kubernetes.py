"""The Kubernetes manifests in deploy/kubernetes against the real binary
and each other (CI also runs `kubernetes-validate --strict` on them; no
cluster runs here): every flag and environment variable they pass exists,
every node shares the encounter store from a Secret and verifies it by the
CA that Secret holds, the router lists every
replica of every shard by the name its StatefulSet gives it, each shard
serves the shard its file holds, and the probes and scrape annotations
point at the ports the processes listen on."""

import pathlib
import re
import subprocess

import yaml

from conftest import BIN, REPO

DEPLOY = REPO / "deploy" / "kubernetes"


def resources():
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def help_of(subcommand):
    return subprocess.run([str(BIN / "facegate"), subcommand, "--help"], check=True,
                          capture_output=True, text=True).stdout


def flags_of(subcommand):
    """The long flags `facegate SUBCOMMAND --help` lists."""
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_of(subcommand)))


def env_of(subcommand):
    """The environment variables `facegate SUBCOMMAND --help` says it reads."""
    return set(re.findall(r"env: (FACEGATE_[A-Z0-9_]+)", help_of(subcommand)))


def args_map(container):
    """`--flag=value` arguments as {flag: [values]}."""
    out = {}
    for a in container["args"][1:]:
        flag, _, value = a.partition("=")
        out.setdefault(flag, []).append(value)
    return out


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def check_database_ca(pod, args):
    """Travel histories cross the network to the shared store: every node
    verifies the database by the CA the store's own Secret holds (so every
    connection is TLS), mounted where its flag says."""
    (ca,) = args["--encounter-store-ca"]
    container = pod["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    holding = [name for name, path in mounts.items() if ca.startswith(path.rstrip("/") + "/")]
    assert len(holding) == 1, f"{ca} is in no mounted volume"
    secret = volumes[holding[0]]["secret"]
    assert secret["secretName"] == "facegate-encounter-store"
    relative = ca[len(mounts[holding[0]].rstrip("/")) + 1:]
    items = {item["key"]: item["path"] for item in secret["items"]}
    assert relative in items.values()
    # Only the CA is mounted: the URL (it may hold a password) stays in
    # the environment, never in a file on the pod.
    assert "url" not in items, "the store's URL must not be mounted"


def check_container(kind_of_process, pod):
    container = pod["spec"]["containers"][0]
    assert container["args"][0] == kind_of_process
    args = args_map(container)
    known = flags_of(kind_of_process) | {"--log-json"}
    unknown = set(args) - known
    assert not unknown, f"{kind_of_process}: flags the binary does not take: {unknown}"
    env = {e["name"] for e in container.get("env", [])}
    unread = env - env_of(kind_of_process)
    assert not unread, f"{kind_of_process}: environment the binary does not read: {unread}"
    # Every node of a scaled-out deployment shares one encounter store,
    # from a Secret (its URL may hold a password), never from the arguments.
    assert "FACEGATE_ENCOUNTER_STORE" in env
    assert "--encounter-store" not in args
    check_database_ca(pod, args)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == port_of(args["--listen"][0])
    assert ports["admin"] == port_of(args["--admin-listen"][0])
    assert ports["metrics"] == port_of(args["--metrics-listen"][0])
    assert ports["health"] == port_of(args["--health-listen"][0])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            assert container[probe]["grpc"]["port"] == ports["health"], probe
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    return args


def test_the_manifests_agree_with_the_binary_and_each_other():
    docs = resources()
    shards = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    routers = [d for d in docs if d["kind"] == "Deployment"]
    assert len(shards) == 3 and len(routers) == 1
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}

    expected_replicas = set()
    for name, sts in shards.items():
        k = int(name.rsplit("-", 1)[1])
        args = check_container("serve", sts["spec"]["template"])
        assert args["--shard"] == [f"{k}/3"]
        assert args["--gallery"][0].endswith(f"g-{k}-of-3.fgal")
        assert sts["spec"]["serviceName"] in services
        assert services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
        assert name in budgets
        requests = sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests["nvidia.com/gpu"] == "1"
        for i in range(sts["spec"]["replicas"]):
            expected_replicas.add(f"{k}=https://{name}-{i}.{sts['spec']['serviceName']}:50051")

    args = check_container("route", routers[0]["spec"]["template"])
    assert args["--shards"] == ["3"]
    listed = {r for value in args["--replica"] for r in value.split(",")}
    assert listed == expected_replicas
    assert "facegate-router" in budgets and "facegate-router" in services
