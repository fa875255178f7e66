"""deploy/k8s (kustomize), checked offline: both variants render with the real `kubectl
kustomize`, every object validates against the Kubernetes schemas (kubernetes-validate, strict),
every YAML file passes yamllint, and the objects say what docker-compose.yml and the code say:
the Triton image and flags of compose, the locked APIs of server/access.py, the engine script of
export/tensorrt.py and its profile, the `swaptron web` command line; plus what only Kubernetes
has (headless gRPC Service, probes, non-root pods but one root step that only changes owners,
GPU only in the base, requests that fit a 4-vCPU GPU node, the HPA's metric served by the
shipped prometheus-adapter rule per frame, PDB and NetworkPolicy on the Triton pods). Each
variant is also rendered on a ReadWriteOnce block volume and on a ReadWriteMany NFS-like one:
on both the repository is a folder of the volume (an ext4 root holds lost+found) that a root
step gives to the server's user (CSI drivers apply fsGroup to neither NFS nor EFS); that step's
script is run here on a folder laid out like a fresh ext4 volume.
"""

from __future__ import annotations

import importlib.metadata
import os
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
from swaptron.export.cli import MAX_BATCH_VARIABLE, MAX_FRAME_VARIABLE
from swaptron.export.tensorrt import ENGINE_SCRIPT, MIN_COMPUTE_CAPABILITY, frame_text
from swaptron.server import access
from swaptron.specs import ensembles

K8S = CHECKOUT / "deploy" / "k8s"
VARIANTS = {"base": K8S / "base", "cpu": K8S / "overlays" / "cpu"}
LOADER = K8S / "model-loader.yaml"
# (access mode, storage class) of a block volume formatted ext4 and of an NFS-like share
VOLUME_KINDS = {"block-rwo": ("ReadWriteOnce", "ebs-gp3"), "nfs-rwx": ("ReadWriteMany", "efs")}
OWNER_STEP = "repository-owner"
OWNER_CAPABILITIES = {"CHOWN", "DAC_OVERRIDE", "FOWNER"}  # what changing owners may need
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
# g4dn.xlarge / g5.xlarge: 4 vCPUs, 3920m allocatable (EKS, GKE), less about 500m of daemons
# (CNI, kube-proxy, CSI and device-plugin pods)
FOUR_VCPU_NODE_FREE_MILLICORES = 3920 - 500
FOUR_VCPU_NODE_FREE_MEMORY = 14 << 30  # 16 GiB nodes
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


VOLUME_PATCH = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {variant}
patches:
  - target:
      kind: PersistentVolumeClaim
    patch: |-
      - op: replace
        path: /spec/accessModes
        value: [{mode}]
      - op: add
        path: /spec/storageClassName
        value: {storage_class}
"""


@pytest.fixture(scope="module")
def on_volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[dict]]:
    """Objects of every variant on every kind of volume (a kustomize overlay patching the
    claim), by (variant, volume kind)."""
    found = {}
    for variant, folder in VARIANTS.items():
        for kind, (mode, storage_class) in VOLUME_KINDS.items():
            overlay = tmp_path_factory.mktemp(f"{variant}-{kind}")
            (overlay / "kustomization.yaml").write_text(VOLUME_PATCH.format(
                variant=os.path.relpath(folder, overlay), mode=mode,
                storage_class=storage_class))
            found[variant, kind] = render(overlay)
    return found


def loader() -> dict:
    """The model-loader Pod."""
    return yaml.safe_load(LOADER.read_text())


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


def init_container(spec: dict, name: str) -> dict:
    """One init container of a pod spec."""
    (found,) = [c for c in spec.get("initContainers", []) if c["name"] == name]
    return found


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
        rendered: dict[str, list[dict]],
        on_volumes: dict[tuple[str, str], list[dict]]) -> None:
    every = {**rendered, **{"/".join(key): docs for key, docs in on_volumes.items()},
             "loader": [loader()]}
    for variant, docs in every.items():
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
        # repository-owner, engines (base only), triton
        assert images == [image] * (3 if variant == "base" else 2), variant


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
    assert [c["name"] for c in base["initContainers"]] == [OWNER_STEP, "engines"]
    engines = init_container(base, "engines")
    script = " ".join(" ".join(engines["args"]).split())
    assert engines["args"][:2] == ["bash", "-c"]
    assert f"bash /models/{ENGINE_SCRIPT}" in script
    assert f"[ ! -f /models/{ENGINE_SCRIPT} ]" in script  # the compose guard ...
    assert "run swaptron export --target tensorrt" in script  # ... and what it says to do
    assert {m["mountPath"]: m.get("readOnly", False) for m in engines["volumeMounts"]} == {
        "/models": False}
    server = container(rendered["base"], "triton", "triton")
    (models,) = [m for m in server["volumeMounts"] if m["mountPath"] == "/models"]
    assert models["name"] == "model-repository" and models["readOnly"] is True
    assert [c["name"] for c in pod_spec(rendered["cpu"], "triton")["initContainers"]] == [
        OWNER_STEP]


def test_the_engine_build_expects_the_export_default_profile(
        rendered: dict[str, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (MAX_FRAME_VARIABLE, MAX_BATCH_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    export = build_parser().parse_args(["export", "--target", "tensorrt"])
    engines = init_container(pod_spec(rendered["base"], "triton"), "engines")
    env = {e["name"]: e["value"] for e in engines["env"]}
    assert env == {MAX_FRAME_VARIABLE: frame_text(export.max_frame),
                   MAX_BATCH_VARIABLE: str(export.max_batch_size)}


def test_the_documented_gpu_floor_is_the_engine_build_floor() -> None:
    floor = "compute capability {}.{}".format(*MIN_COMPUTE_CAPABILITY)
    for readme in (K8S / "README.md", CHECKOUT / "README.md"):
        text = " ".join(readme.read_text().split())
        assert floor in text, readme
        assert "compute capability 6.0" not in text, readme
        assert "Turing" in text, readme


def test_each_variant_serves_its_repository(rendered: dict[str, list[dict]]) -> None:
    for variant, docs in rendered.items():
        volumes = {v["name"]: v for v in pod_spec(docs, "triton")["volumes"]}
        claim = volumes["model-repository"]["persistentVolumeClaim"]["claimName"]
        assert claim == REPOSITORY_CLAIMS[variant], variant
        find(docs, "PersistentVolumeClaim", claim)


def test_only_the_base_takes_a_gpu(rendered: dict[str, list[dict]]) -> None:
    base = pod_spec(rendered["base"], "triton")
    for one in all_containers(base):
        gpus = int(one["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert gpus == (0 if one["name"] == OWNER_STEP else 1), one["name"]
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
                assert settings["allowPrivilegeEscalation"] is False, where
                assert settings["seccompProfile"] == {"type": "RuntimeDefault"}, where
                if one["name"] == OWNER_STEP:  # checked in test_the_owner_step_...
                    continue
                assert settings["runAsNonRoot"] is True, where
                assert settings["runAsUser"] == users[deployment["metadata"]["name"]], where
                assert settings["capabilities"] == {"drop": ["ALL"]}, where
                requests, limits = one["resources"]["requests"], one["resources"]["limits"]
                assert {"cpu", "memory"} <= set(requests) & set(limits), where
                assert millicores(limits["cpu"]) >= millicores(requests["cpu"]), where
                assert size_in_bytes(limits["memory"]) >= size_in_bytes(requests["memory"])


def pod_requests(spec: dict) -> tuple[int, int]:
    """What the scheduler reserves for a pod: millicores and bytes, the larger of the biggest
    init container and the sum of the app containers."""
    def amounts(one: dict) -> tuple[int, int]:
        requests = one["resources"]["requests"]
        return millicores(requests["cpu"]), size_in_bytes(requests["memory"])
    apps = [amounts(one) for one in spec["containers"]]
    inits = [amounts(one) for one in spec.get("initContainers", [])]
    return (max([sum(cpu for cpu, _ in apps), *(cpu for cpu, _ in inits)]),
            max([sum(memory for _, memory in apps), *(memory for _, memory in inits)]))


def test_the_gpu_pod_fits_a_four_vcpu_gpu_node(rendered: dict[str, list[dict]]) -> None:
    cpu, memory = pod_requests(pod_spec(rendered["base"], "triton"))
    assert cpu <= FOUR_VCPU_NODE_FREE_MILLICORES, cpu
    assert memory <= FOUR_VCPU_NODE_FREE_MEMORY, memory


def test_cpu_variant_fits_a_two_core_node(rendered: dict[str, list[dict]]) -> None:
    resources = container(rendered["cpu"], "triton", "triton")["resources"]
    assert millicores(resources["requests"]["cpu"]) <= TWO_CORE_NODE_ALLOCATABLE_MILLICORES
    assert millicores(resources["limits"]["cpu"]) <= 2000
    gpu = container(rendered["base"], "triton", "triton")["resources"]
    assert millicores(gpu["requests"]["cpu"]) > TWO_CORE_NODE_ALLOCATABLE_MILLICORES


# A frame is one request to an ensemble; it queues in the models that are not ensembles: its
# steps and what they call (Triton counts no queue time for the ensemble itself: its clock
# stops when the first step gets the request)
FRAMES = {e.name for e in ensembles(2, forensics=True)}


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
        # queue time of every model but the ensembles, over the ensembles' requests (frames)
        for counter, match in ((QUEUE_COUNTER, "!~"), (SUCCESS_COUNTER, "=~")):
            (selected,) = re.findall(
                rf"sum\(rate\({counter}\{{<<\.LabelMatchers>>, ?model{match}\"([a-z_|]+)\"\}}"
                r"\[1m\]\)\) by \(<<\.GroupBy>>\)", query)
            assert set(selected.split("|")) == FRAMES, counter
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


# --- the repository on any kind of volume --------------------------------------------------


FAKE_CHOWN = """#!/bin/sh
printf '%s\\n' "$@" >> "$CHOWN_LOG"
"""


def owner_step(spec: dict) -> dict:
    """The first init container: the one that makes the repository folder the server's."""
    first = spec["initContainers"][0]
    assert first["name"] == OWNER_STEP
    return first


def repository_mounts(spec: dict, claim_volume: str) -> dict[str, dict]:
    """Container name -> its mount of the repository volume."""
    found = {}
    for one in all_containers(spec):
        for mount in one.get("volumeMounts", []):
            if mount["name"] == claim_volume:
                found[one["name"]] = mount
    return found


def run_owner_step(step: dict, volume: Path, tools: Path) -> list[str]:
    """Run the step's command here on `volume` (its mount path replaced), with a stand-in
    `chown` that records its arguments; returns them."""
    (tools / "chown").write_text(FAKE_CHOWN)
    (tools / "chown").chmod(0o755)
    log = tools / "chown.log"
    log.write_text("")
    (mount,) = step["volumeMounts"]
    assert step["command"][:2] == ["sh", "-c"]
    script = step["command"][2].replace(mount["mountPath"], str(volume))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{tools}:/usr/bin:/bin", "CHOWN_LOG": str(log)},
                            check=False)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def check_repository_access(spec: dict, tmp_path: Path) -> None:
    """The repository is a folder of the volume, mounted at /models by everything but the owner
    step, which runs as root with CHOWN and little else, mounts the volume's root, creates that
    folder and gives it (and whatever in it is not theirs) to the uid and gid the others run as;
    run on a fresh ext4-like volume and on one already holding a repository."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    (claim_volume,) = [n for n, v in volumes.items() if "persistentVolumeClaim" in v]
    step = owner_step(spec)
    mounts = repository_mounts(spec, claim_volume)
    assert set(mounts) == {c["name"] for c in all_containers(spec)} - {"web"}
    assert "subPath" not in mounts.pop(OWNER_STEP)  # the volume's root
    (folder,) = {mount.get("subPath", "") for mount in mounts.values()}
    assert folder and "/" not in folder and folder != "lost+found"
    assert {mount["mountPath"] for mount in mounts.values()} == {"/models"}
    settings = security(spec, step)
    assert (settings["runAsUser"], settings["runAsNonRoot"]) == (0, False)
    assert settings["allowPrivilegeEscalation"] is False
    assert settings["capabilities"]["drop"] == ["ALL"]
    assert "CHOWN" in settings["capabilities"]["add"]
    assert set(settings["capabilities"]["add"]) <= OWNER_CAPABILITIES
    owners = {(security(spec, one)["runAsUser"], security(spec, one)["runAsGroup"])
              for one in all_containers(spec) if one["name"] != OWNER_STEP}
    (owner,) = owners
    for existing in (False, True):
        volume = tmp_path / f"volume-{existing}"
        (volume / "lost+found").mkdir(parents=True)  # what mkfs.ext4 leaves at the root
        if existing:
            (volume / folder / "detector" / "1").mkdir(parents=True)
            (volume / folder / "detector" / "1" / "model.onnx").write_bytes(b"onnx")
        tools = tmp_path / f"tools-{existing}"
        tools.mkdir()
        arguments = run_owner_step(step, volume, tools)
        assert (volume / folder).is_dir()
        present = [volume / folder, *sorted((volume / folder).rglob("*"))]
        foreign = {str(path) for path in present
                   if (path.lstat().st_uid, path.lstat().st_gid) != owner}
        if foreign:
            assert arguments[:2] == ["-h", f"{owner[0]}:{owner[1]}"], arguments
            assert set(arguments[2:]) == foreign
        assert not [a for a in arguments if "lost+found" in a]


def test_the_repository_is_a_folder_the_server_owns_on_any_volume(
        on_volumes: dict[tuple[str, str], list[dict]], tmp_path: Path) -> None:
    for (variant, kind), docs in on_volumes.items():
        claim = find(docs, "PersistentVolumeClaim", REPOSITORY_CLAIMS[variant])["spec"]
        assert (claim["accessModes"], claim["storageClassName"]) == (
            [VOLUME_KINDS[kind][0]], VOLUME_KINDS[kind][1])
        where = tmp_path / f"{variant}-{kind}"
        where.mkdir()
        check_repository_access(pod_spec(docs, "triton"), where)


def test_the_loader_writes_where_the_servers_read(rendered: dict[str, list[dict]],
                                                 tmp_path: Path) -> None:
    pod = loader()
    spec = pod["spec"]
    check_repository_access(spec, tmp_path)
    base = pod_spec(rendered["base"], "triton")
    assert owner_step(spec)["command"] == owner_step(base)["command"]
    assert security(spec, owner_step(spec)) == security(base, owner_step(base))
    (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]]
    assert claim == REPOSITORY_CLAIMS["base"]
    (mount,) = spec["containers"][0]["volumeMounts"]
    triton = container(rendered["base"], "triton", "triton")
    (served,) = [m for m in triton["volumeMounts"] if m["name"] == "model-repository"]
    assert (mount["mountPath"], mount["subPath"]) == (served["mountPath"], served["subPath"])
    assert "readOnly" not in mount  # it writes the export there
