"""deploy/ checked offline: Kubernetes manifests against the Kubernetes JSON schemas
(kubernetes-validate bundles them per version), docker-compose.yml against the Compose
spec schema (bundled by check-jsonschema), the Grafana dashboard against the metrics the
service exports, and all of them against the app itself: setting names, probe routes,
the port, mount paths.

No Docker engine, kubectl or kustomize runs here: kustomize's few transformations that
matter (resources, generators, strategic-merge patches) are re-done in a few lines.
"""

import copy
import importlib.util
import json
import re
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
GPU = K8S / "overlays" / "gpu"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "skill-compass-ml.json"

# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.25.0", "1.37.0")

# OTEL_* are the OpenTelemetry SDK's own variables (the service reads two of them too).
OTEL_PREFIX = "OTEL_"

# Measured on a 2-vCPU VM (docs/benchmarks.md); the manifests' resources and probes follow them.
IDLE_RSS_ONNX_INT8 = 486e6
PEAK_RSS = 1.5e9
LIVE_AFTER_S = 3

# The Prometheus metrics the service exposes: name -> (type, labels). Kept here to check the
# dashboard; another test cross-checks this list against a live /metrics.
METRICS: dict[str, tuple[str, set[str]]] = {
    "http_requests_total": ("counter", {"route", "method", "status"}),
    "http_request_duration_seconds": ("histogram", {"route", "method"}),
    "http_requests_in_flight": ("gauge", set()),
    "clip_queue_depth": ("gauge", set()),
    "clip_images_waiting": ("gauge", set()),
    "clip_batch_size": ("histogram", {"tower"}),
    "clip_inference_seconds": ("histogram", {"tower"}),
    "clip_preprocess_seconds": ("histogram", set()),
    "clip_cache_hits_total": ("counter", set()),
    "clip_cache_misses_total": ("counter", set()),
    "clip_overloaded_total": ("counter", set()),
    "model_state": ("gauge", {"model", "state"}),
    "clip_runtime_info": ("gauge", {"backend", "precision", "device"}),
    "career_predictions_total": ("counter", {"route"}),
    "career_model_info": ("gauge", {"version"}),
    "career_model_holdout_top1": ("gauge", set()),
    "career_retrain_jobs_total": ("counter", {"state"}),
    "career_retrain_duration_seconds": ("histogram", set()),
    "career_outcomes_ingested_total": ("counter", {"result"}),
    "career_drift_psi": ("gauge", {"feature"}),
    "career_drift_max_psi": ("gauge", set()),
    "career_prediction_psi": ("gauge", set()),
    "career_monitoring_window_requests": ("gauge", set()),
    "career_live_top1_accuracy": ("gauge", set()),
    "career_live_log_loss": ("gauge", set()),
    "career_outcomes_new_since_active": ("gauge", set()),
    "career_retrain_auto_triggers_total": ("counter", {"reason"}),
    # prometheus_client's process collector
    "process_resident_memory_bytes": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_open_fds": ("gauge", set()),
}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus at scrape time
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


def base_resources() -> list[dict[str, Any]]:
    """What `kustomize build deploy/kubernetes` starts from: every listed resource."""
    docs = []
    for name in kustomization(K8S)["resources"]:
        docs += load_yaml(K8S / name)
    return docs


def resource(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def merge(base: Any, patch: Any) -> Any:
    """Strategic-merge-patch as kustomize applies it to the fields the overlays touch:
    maps merge, lists of named items (containers, env) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    )
    if named:
        by_name = {item["name"]: item for item in base}
        out = [merge(by_name[i["name"]], i) if i["name"] in by_name else i for i in patch]
        patched = {i["name"] for i in patch}
        return [item for item in base if item["name"] not in patched] + out
    return copy.deepcopy(patch)


def overlay_resources(folder: Path) -> list[dict[str, Any]]:
    config = kustomization(folder)
    assert config["resources"] == ["../.."], "the overlay builds on deploy/kubernetes"
    docs = copy.deepcopy(base_resources())
    for entry in config["patches"]:
        [patch] = load_yaml(folder / entry["path"])
        target = resource(docs, patch["kind"], patch["metadata"]["name"])
        docs[docs.index(target)] = merge(target, patch)
    return docs


def routed(app: FastAPI, path: str) -> bool:
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
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
    listed = kustomization(K8S)["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    for generator in kustomization(K8S)["configMapGenerator"]:
        for name in generator["files"]:
            assert (K8S / name).is_file(), name


@pytest.mark.parametrize(
    "doc", base_resources(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    validate_k8s(doc)


def test_the_schema_check_is_strict() -> None:
    """A misspelt field fails: the check would catch a typo in a manifest."""
    bad = copy.deepcopy(resource(base_resources(), "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_gpu_overlay_patches_existing_resources_into_valid_ones() -> None:
    docs = overlay_resources(GPU)
    for doc in docs:
        validate_k8s(doc)
    pod = resource(docs, "Deployment")["spec"]["template"]["spec"]
    [ml] = [c for c in pod["containers"] if c["name"] == "ml"]
    assert ml["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] and pod["tolerations"]
    assert ml["readinessProbe"]  # the patch merged into the container, not replaced it
    data = resource(docs, "ConfigMap")["data"]
    settings = settings_from(data)
    assert settings.clip_device == "cuda"
    assert settings.workers * settings.torch_threads <= int(ml["resources"]["requests"]["cpu"])


# ----------------------------------------------------------- Kubernetes against the app


def test_configmap_names_only_real_settings_with_valid_values() -> None:
    data = resource(base_resources(), "ConfigMap", "skill-compass-ml")["data"]
    assert not unknown_settings(set(data)), "not Settings fields"
    settings = settings_from(data)
    assert settings.clip_backend == "onnx" and settings.clip_precision == "int8"
    assert settings.fastapi_port == Settings.model_fields["fastapi_port"].default


def test_secret_holds_the_keys_as_clearly_marked_placeholders() -> None:
    secret = resource(base_resources(), "Secret")
    assert set(secret["stringData"]) == {"API_KEYS", "ADMIN_API_KEYS"}
    assert all("REPLACE-ME" in value for value in secret["stringData"].values())
    assert not unknown_settings(set(secret["stringData"]))


def test_pods_take_their_settings_from_the_configmap_and_secret() -> None:
    docs = base_resources()
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    generated = {("ConfigMap", g["name"]) for g in kustomization(K8S)["configMapGenerator"]}
    for kind in ("Deployment", "Job"):
        pod = resource(docs, kind)["spec"]["template"]["spec"]
        for container in pod_containers(pod):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source["secretRef"]
                ref_kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (ref_kind, ref["name"]) in names
            assert not unknown_settings({e["name"] for e in container.get("env", [])})
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names | generated
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
    [ml] = resource(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    refs = {next(iter(s.values()))["name"] for s in ml["envFrom"]}
    assert refs == {"skill-compass-ml", resource(docs, "Secret")["metadata"]["name"]}
    # The outcome store's URL (it may hold a password) and hash key come from a Secret made
    # out of band, never from a value in git.
    env = {e["name"]: e for e in ml["env"]}
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
    assert ml["readinessProbe"]["httpGet"]["path"] == "/health/ready"
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
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_every_pod_is_locked_down() -> None:
    docs = base_resources()
    for kind in ("Deployment", "Job"):
        pod = resource(docs, kind)["spec"]["template"]["spec"]
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


# ------------------------------------------------------------------- the prefetch stamp


def stamp_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prefetch_stamp", K8S / "prefetch_stamp.py")
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
    assert (DEPLOY / ml["build"]["context"] / ml["build"]["dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )
    assert prefetch["image"] == ml["image"]
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
    for docs in (base_resources(), overlay_resources(GPU)):
        [ml] = resource(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        [keys] = [e for e in ml["env"] if e["name"] == "API_KEYS"]
        ref = keys["valueFrom"]["secretKeyRef"]
        assert ref == {"name": resource(docs, "Secret")["metadata"]["name"], "key": "API_KEYS"}
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
    label_args = set(re.findall(r"label_values\([^,]*,\s*(\w+)\)", expr))
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


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    used = set()
    for expr in queries():
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
    assert used == set(METRICS), f"metrics without a panel: {set(METRICS) - used}"


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
