"""deploy/k8s (kustomize), checked offline: both variants render with the real `kubectl
kustomize`, every object validates against the Kubernetes schemas (kubernetes-validate, strict),
every YAML file passes yamllint, and the objects say what docker-compose.yml and the code say:
the Triton image and flags of compose, the locked APIs of server/access.py, the engine script of
export/tensorrt.py, the `swaptron web` command line; plus what only Kubernetes has (headless gRPC
Service, probes, non-root pods, GPU only in the base, the HPA's metric served by the shipped
prometheus-adapter rule, PDB and NetworkPolicy on the Triton pods).
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from yamllint import linter
from yamllint.config import YamlLintConfig

from swaptron.assets import CHECKOUT
from swaptron.cli import build_parser
from swaptron.export.tensorrt import ENGINE_SCRIPT
from swaptron.server import access

K8S = CHECKOUT / "deploy" / "k8s"
VARIANTS = {"base": K8S / "base", "cpu": K8S / "overlays" / "cpu"}
COMPOSE_SERVERS = {"base": "triton", "cpu": "triton-cpu"}  # the compose service each mirrors
REPOSITORY_CLAIMS = {"base": "swaptron-tensorrt-repository",
                     "cpu": "swaptron-onnxruntime-repository"}
KUBERNETES_VERSIONS = ("1.28.0", latest_version())  # oldest supported release .. newest schema
TRITON_RELEASES = {"24.10": "2.51"}  # NGC container release -> Triton version
TRITON_IMAGE_NAME = "nvcr.io/nvidia/tritonserver"
WEB_IMAGE = "swaptron-client:local"
ADMIN_KEY_REFERENCE = "$(SWAPTRON_ADMIN_KEY)"
SECRET_REFERENCES = {"SWAPTRON_ADMIN_KEY": ("swaptron-admin-key", "admin-key"),
                     "SWAPTRON_WEB_TOKEN": ("swaptron-web-token", "token")}
CLIENT_LABEL = {"swaptron.io/client": "true"}
QUEUE_COUNTER = "nv_inference_queue_duration_us"
SUCCESS_COUNTER = "nv_inference_request_success"
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
EXPECTED_OBJECTS = {
    ("ConfigMap", "swaptron-prometheus-adapter-rules"), ("Deployment", "swaptron-web"),
    ("Deployment", "triton"), ("HorizontalPodAutoscaler", "triton"),
    ("NetworkPolicy", "triton"), ("PodDisruptionBudget", "triton"),
    ("Service", "swaptron-web"), ("Service", "triton"), ("Service", "triton-metrics")}
TWO_CORE_NODE_ALLOCATABLE_MILLICORES = 1900
BINARY_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
COMPOSE_KEY = re.compile(r"\$\{SWAPTRON_ADMIN_KEY[^}]*\}")


# --- rendering and lookups ------------------------------------------------------------------


def render(folder: Path) -> list[dict]:
    """The objects `kubectl kustomize FOLDER` prints."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: it renders deploy/k8s (kubectl kustomize)")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Objects of every variant, by variant name."""
    return {name: render(folder) for name, folder in VARIANTS.items()}


def find(docs: list[dict], kind: str, name: str) -> dict:
    """The one object of that kind and name."""
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_spec(docs: list[dict], deployment: str) -> dict:
    """The pod template spec of a Deployment."""
    return find(docs, "Deployment", deployment)["spec"]["template"]["spec"]


def pod_labels(docs: list[dict], deployment: str) -> dict[str, str]:
    """The pod template labels of a Deployment."""
    return find(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def container(docs: list[dict], deployment: str, name: str) -> dict:
    """One (app) container of a Deployment."""
    (found,) = [c for c in pod_spec(docs, deployment)["containers"] if c["name"] == name]
    return found


def all_containers(spec: dict) -> list[dict]:
    """Init and app containers of a pod spec."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def deployments(docs: list[dict]) -> list[dict]:
    """Every Deployment."""
    return [d for d in docs if d["kind"] == "Deployment"]


def flag_values(args: list[str], flag: str) -> list[str]:
    """Values of every `--flag=value` in a command."""
    return [part.split("=", 1)[1] for part in args if part.startswith(f"{flag}=")]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only, as the manifests use) matches the labels."""
    assert set(selector) <= {"matchLabels"}, selector
    return selector["matchLabels"].items() <= labels.items()


def millicores(quantity: str | int | float) -> int:
    """`1500m` / `2` / 2 -> millicores."""
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)


def size_in_bytes(quantity: str | int) -> int:
    """`1Gi` / `512Mi` / `1073741824` -> bytes (binary suffixes only)."""
    text = str(quantity)
    for suffix, factor in BINARY_UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def compose() -> dict:
    """docker-compose.yml as YAML (its `${...}` left unexpanded)."""
    return yaml.safe_load((CHECKOUT / "docker-compose.yml").read_text())


def security(spec: dict, one: dict) -> dict:
    """A container's effective security settings: the pod's, overridden by its own."""
    pod = {k: v for k, v in spec.get("securityContext", {}).items()
           if k in {"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"}}
    return {**pod, **one.get("securityContext", {})}


# --- rendering, schemas, lint ---------------------------------------------------------------


def test_every_variant_renders_the_expected_objects(rendered: dict[str, list[dict]]) -> None:
    for variant, docs in rendered.items():
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        claim = ("PersistentVolumeClaim", REPOSITORY_CLAIMS[variant])
        assert kinds == {*EXPECTED_OBJECTS, claim}, variant


def test_every_object_validates_against_the_kubernetes_schemas(
        rendered: dict[str, list[dict]]) -> None:
    for variant, docs in rendered.items():
        for doc in docs:
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{variant} {doc['kind']}/{doc['metadata']['name']} is not "
                                f"valid Kubernetes {version}: {error.message} at "
                                f"{'/'.join(map(str, error.absolute_path))}")


def test_the_schema_check_refuses_a_misspelt_field(rendered: dict[str, list[dict]]) -> None:
    broken = find(rendered["base"], "Deployment", "triton")
    broken = {**broken, "spec": {**broken["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_yamllint_passes_on_every_manifest() -> None:
    config = YamlLintConfig(file=str(CHECKOUT / ".yamllint.yaml"))
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    assert len(files) >= 10, files
    for path in files:
        relative = str(path.relative_to(CHECKOUT))  # the config's `ignore:` sees this path
        assert not config.is_file_ignored(relative), relative
        problems = list(linter.run(path.read_text(), config, relative))
        assert not problems, (relative, [str(p) for p in problems])


# --- what compose and the code say ----------------------------------------------------------


def test_triton_is_the_compose_image_of_the_client_version(
        rendered: dict[str, list[dict]]) -> None:
    image = compose()["x-triton-image"]
    release = image.rsplit(":", 1)[1].removesuffix("-py3")
    client = importlib.metadata.version("tritonclient")
    assert client.startswith(f"{TRITON_RELEASES[release]}."), (release, client)
    for variant, docs in rendered.items():
        images = [c["image"] for d in deployments(docs)
                  for c in all_containers(d["spec"]["template"]["spec"])
                  if c["image"].startswith(TRITON_IMAGE_NAME)]
        assert images == [image] * (2 if variant == "base" else 1), variant


def test_server_flags_are_the_compose_flags(rendered: dict[str, list[dict]]) -> None:
    services = compose()["services"]
    for variant, docs in rendered.items():
        triton = container(docs, "triton", "triton")
        assert "command" not in triton  # the image's entrypoint runs the args, as in compose
        mirrored = [COMPOSE_KEY.sub("KEY", part) for part in
                    services[COMPOSE_SERVERS[variant]]["command"]]
        assert [part.replace(ADMIN_KEY_REFERENCE, "KEY") for part in triton["args"]] == mirrored
        assert triton["args"][0] == "tritonserver"
        assert flag_values(triton["args"], "--model-repository") == ["/models"]
        assert flag_values(triton["args"], "--model-control-mode") == ["explicit"]
        assert flag_values(triton["args"], "--load-model") == ["*"]
        pinned = flag_values(triton["args"], "--pinned-memory-pool-byte-size")
        assert pinned == ([] if variant == "base" else ["0"]), variant


def test_model_control_needs_the_admin_key_from_a_secret(
        rendered: dict[str, list[dict]]) -> None:
    for variant, docs in rendered.items():
        triton = container(docs, "triton", "triton")
        for flag, locked in (("--grpc-restricted-protocol", access.LOCKED_GRPC),
                             ("--http-restricted-api", access.LOCKED_HTTP)):
            (value,) = flag_values(triton["args"], flag)
            apis, header = value.split(":", 1)
            assert apis.split(",") == list(locked), (variant, flag)
            assert header == f"{access.ADMIN_HEADER}={ADMIN_KEY_REFERENCE}", (variant, flag)
        env = {e["name"]: e for e in triton["env"]}
        assert "value" not in env["SWAPTRON_ADMIN_KEY"]
        name, key = SECRET_REFERENCES["SWAPTRON_ADMIN_KEY"]
        assert env["SWAPTRON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": name,
                                                                         "key": key}


def test_no_secret_is_committed(rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] == "Secret"]
        for deployment in deployments(docs):
            for one in all_containers(deployment["spec"]["template"]["spec"]):
                for env in one.get("env", []):
                    if env["name"] in SECRET_REFERENCES:
                        name, key = SECRET_REFERENCES[env["name"]]
                        assert env == {"name": env["name"], "valueFrom": {
                            "secretKeyRef": {"name": name, "key": key}}}
    for path in K8S.rglob("*"):
        if path.is_file():
            assert not re.search(r"^kind:\s*Secret\b", path.read_text(), re.MULTILINE), path


def test_engines_are_built_by_an_init_container_in_the_base_only(
        rendered: dict[str, list[dict]]) -> None:
    base = pod_spec(rendered["base"], "triton")
    (engines,) = base["initContainers"]
    script = " ".join(" ".join(engines["args"]).split())
    assert engines["args"][:2] == ["bash", "-c"]
    assert f"bash /models/{ENGINE_SCRIPT}" in script
    assert f"[ ! -f /models/{ENGINE_SCRIPT} ]" in script  # the compose guard ...
    assert "run swaptron export --target tensorrt" in script  # ... and what it says to do
    assert {m["mountPath"]: m.get("readOnly", False) for m in engines["volumeMounts"]} == {
        "/models": False}
    server = container(rendered["base"], "triton", "triton")
    assert {"mountPath": "/models", "name": "model-repository", "readOnly": True} in server[
        "volumeMounts"]
    assert "initContainers" not in pod_spec(rendered["cpu"], "triton")


def test_each_variant_serves_its_repository(rendered: dict[str, list[dict]]) -> None:
    for variant, docs in rendered.items():
        volumes = {v["name"]: v for v in pod_spec(docs, "triton")["volumes"]}
        claim = volumes["model-repository"]["persistentVolumeClaim"]["claimName"]
        assert claim == REPOSITORY_CLAIMS[variant], variant
        find(docs, "PersistentVolumeClaim", claim)


def test_only_the_base_takes_a_gpu(rendered: dict[str, list[dict]]) -> None:
    base = pod_spec(rendered["base"], "triton")
    for one in all_containers(base):
        assert int(one["resources"]["limits"]["nvidia.com/gpu"]) == 1, one["name"]
    assert any(t["key"] == "nvidia.com/gpu" for t in base["tolerations"])
    for deployment in deployments(rendered["cpu"]):
        spec = deployment["spec"]["template"]["spec"]
        assert "tolerations" not in spec
        for one in all_containers(spec):
            for amounts in one["resources"].values():
                assert "nvidia.com/gpu" not in amounts, one["name"]
    assert "nvidia.com/gpu" not in str(pod_spec(rendered["base"], "swaptron-web"))


# --- Kubernetes-only promises ---------------------------------------------------------------


def test_grpc_service_is_headless_on_the_triton_pods(rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        labels = pod_labels(docs, "triton")
        named = {p["name"]: p["containerPort"] for p in container(docs, "triton", "triton")[
            "ports"]}
        assert named == PORTS
        service = find(docs, "Service", "triton")["spec"]
        assert service["clusterIP"] == "None"
        assert service["selector"].items() <= labels.items()
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]}
        assert ports["grpc"] == (PORTS["grpc"], "grpc")
        metrics = find(docs, "Service", "triton-metrics")["spec"]
        assert metrics["selector"].items() <= labels.items()
        assert [(p["port"], p["targetPort"]) for p in metrics["ports"]] == [
            (PORTS["metrics"], "metrics")]


def test_prometheus_scrapes_the_metrics_port(rendered: dict[str, list[dict]]) -> None:
    template = find(rendered["base"], "Deployment", "triton")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORTS["metrics"])


def test_probes_ask_triton_health(rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        triton = container(docs, "triton", "triton")
        for probe, path in (("readinessProbe", "/v2/health/ready"),
                            ("livenessProbe", "/v2/health/live"),
                            ("startupProbe", "/v2/health/ready")):
            assert triton[probe]["httpGet"] == {"path": path, "port": "http"}, probe
        startup = triton["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model loading
        web = container(docs, "swaptron-web", "web")
        assert web["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        assert web["ports"] == [{"name": "http", "containerPort": 8080}]


def test_shared_memory_is_a_1gi_memory_volume(rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        volumes = {v["name"]: v for v in pod_spec(docs, "triton")["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(docs, "triton", "triton")[
            "volumeMounts"]}
        shm = volumes[mounts["/dev/shm"]]["emptyDir"]
        assert shm["medium"] == "Memory"
        assert size_in_bytes(shm["sizeLimit"]) == 1 << 30


def test_every_container_runs_non_root_with_resources(rendered: dict[str, list[dict]]) -> None:
    users = {"triton": 1000, "swaptron-web": 10001}  # the Triton image's triton-server user
    for docs in rendered.values():
        for deployment in deployments(docs):
            spec = deployment["spec"]["template"]["spec"]
            for one in all_containers(spec):
                settings = security(spec, one)
                where = (deployment["metadata"]["name"], one["name"])
                assert settings["runAsNonRoot"] is True, where
                assert settings["runAsUser"] == users[deployment["metadata"]["name"]], where
                assert settings["allowPrivilegeEscalation"] is False, where
                assert settings["capabilities"] == {"drop": ["ALL"]}, where
                assert settings["seccompProfile"] == {"type": "RuntimeDefault"}, where
                requests, limits = one["resources"]["requests"], one["resources"]["limits"]
                assert {"cpu", "memory"} <= set(requests) & set(limits), where
                assert millicores(limits["cpu"]) >= millicores(requests["cpu"]), where
                assert size_in_bytes(limits["memory"]) >= size_in_bytes(requests["memory"])


def test_cpu_variant_fits_a_two_core_node(rendered: dict[str, list[dict]]) -> None:
    resources = container(rendered["cpu"], "triton", "triton")["resources"]
    assert millicores(resources["requests"]["cpu"]) <= TWO_CORE_NODE_ALLOCATABLE_MILLICORES
    assert millicores(resources["limits"]["cpu"]) <= 2000
    gpu = container(rendered["base"], "triton", "triton")["resources"]
    assert millicores(gpu["requests"]["cpu"]) > TWO_CORE_NODE_ALLOCATABLE_MILLICORES


def adapter_rules(docs: list[dict]) -> list[dict]:
    """The custom-metric rules of the shipped prometheus-adapter config."""
    config = find(docs, "ConfigMap", "swaptron-prometheus-adapter-rules")["data"]["config.yaml"]
    return yaml.safe_load(config)["rules"]


def test_hpa_scales_triton_on_the_adapter_rule_queue_time(
        rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        hpa = find(docs, "HorizontalPodAutoscaler", "triton")["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": "triton"}
        (metric,) = hpa["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["target"]["type"] == "AverageValue"
        assert int(metric["pods"]["target"]["averageValue"]) > 0
        (rule,) = [r for r in adapter_rules(docs)
                   if r["name"]["as"] == metric["pods"]["metric"]["name"]]
        assert QUEUE_COUNTER in rule["seriesQuery"]
        assert re.fullmatch(rule["name"]["matches"], QUEUE_COUNTER)
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                                  "pod": {"resource": "pod"}}
        query = " ".join(rule["metricsQuery"].split())
        for counter in (QUEUE_COUNTER, SUCCESS_COUNTER):
            assert (f"sum(rate({counter}{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>)"
                    in query), counter
        assert query.index(QUEUE_COUNTER) < query.index("/") < query.index(SUCCESS_COUNTER)
        assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
        assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
        assert hpa["behavior"]["scaleUp"]["policies"]
        assert "replicas" not in find(docs, "Deployment", "triton")["spec"]  # the HPA's field


def test_pdb_and_network_policy_guard_the_triton_pods(rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        triton, web = pod_labels(docs, "triton"), pod_labels(docs, "swaptron-web")
        pdb = find(docs, "PodDisruptionBudget", "triton")["spec"]
        assert selects(pdb["selector"], triton) and not selects(pdb["selector"], web)
        assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 1
        policy = find(docs, "NetworkPolicy", "triton")["spec"]
        assert selects(policy["podSelector"], triton) and not selects(policy["podSelector"], web)
        assert policy["policyTypes"] == ["Ingress"]
        opened: dict[int, list[dict]] = {}
        for rule in policy["ingress"]:
            assert rule.get("from"), rule  # a rule without `from` lets everyone in
            for port in rule["ports"]:
                opened.setdefault(port["port"], []).extend(rule["from"])
        assert set(opened) == set(PORTS.values())
        for port in (PORTS["grpc"], PORTS["http"]):
            peers = [p["podSelector"] for p in opened[port]]
            assert all(set(p) == {"podSelector"} for p in opened[port])  # this namespace only
            assert any(selects(p, web) for p in peers), port
            assert CLIENT_LABEL in [p["matchLabels"] for p in peers], port
        assert all("namespaceSelector" in p and "podSelector" not in p
                   for p in opened[PORTS["metrics"]])


def test_web_gateway_balances_over_the_headless_service(
        rendered: dict[str, list[dict]]) -> None:
    for docs in rendered.values():
        web = container(docs, "swaptron-web", "web")
        assert web["image"] == WEB_IMAGE
        assert web["args"][:2] == ["swaptron", "web"]
        args = build_parser().parse_args(web["args"][1:])
        grpc_port = next(p["port"] for p in find(docs, "Service", "triton")["spec"]["ports"]
                         if p["name"] == "grpc")
        assert args.url == f"dns:///triton:{grpc_port}"
        assert (args.host, args.port) == ("0.0.0.0", 8080)
        service = find(docs, "Service", "swaptron-web")["spec"]
        assert service["type"] == "ClusterIP"
        assert service["selector"].items() <= pod_labels(docs, "swaptron-web").items()
        assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8080, "http")]
        assert any(e["name"] == "SWAPTRON_WEB_TOKEN" for e in web["env"])
