"""The active career model and its hot swap.

`LoadedVersion` is one loaded version plus what makes explaining it cheap per request (its
cohort profiles, a verified fast predictor). `VersionHolder` owns the one being served:
it loads it in the background, follows the ACTIVE pointer that any process may move,
activates a version after checking that it loads, and falls back to the last good
version when ACTIVE is unusable. A request reads the holder once and keeps that model.
"""

import logging
import threading
import time

import numpy as np

from app.core import metrics
from app.core.exceptions import (
    AppError,
    InvalidInput,
    ModelInvalid,
    ModelLoading,
    ModelUnavailable,
)
from app.schemas.health import CareerPredictor, CareerStatus
from app.services.career.bundle import (
    ActivePointerError,
    BundleError,
    CareerBundle,
    VersionRegistry,
    validate_version_name,
)
from app.services.career.catalog import career_id
from app.services.career.cohorts import career_profile
from app.services.career.compiled import verified_predictor
from app.services.served import ModelState
from app.utils.text import redact_paths

logger = logging.getLogger(__name__)

# Stands for ACTIVE itself in `_failed_version` while the pointer is unusable (never a
# version name: those cannot hold '<').
UNUSABLE_POINTER = "<ACTIVE>"


class LoadedVersion:
    """A loaded bundle plus the arrays that make explaining it cheap per request."""

    def __init__(self, bundle: CareerBundle) -> None:
        self.bundle = bundle
        self.spec = bundle.spec
        self.classes = bundle.classes
        self.grid = np.asarray(bundle.reference["quantile_grid"], dtype=float)
        self.grid_list = [float(g) for g in self.grid]
        self.baseline = np.array(
            [bundle.reference["population_median"][name] for name in self.spec.names]
        )
        self.profiles = [
            career_profile(
                label,
                bundle.reference["careers"][label],
                bundle.catalog.get(label),
                self.spec,
                self.grid_list,
                self.baseline,
            )
            for label in self.classes
        ]
        self.by_key = {}
        for i, profile in enumerate(self.profiles):
            self.by_key[profile.ref.id] = i
            self.by_key[profile.ref.name.lower()] = i
        if not hasattr(bundle.estimator, "predict_proba"):
            raise ModelUnavailable("The career model has no predict_proba.")
        # The compiled predictor serves only after it reproduces sklearn on probe rows;
        # otherwise sklearn serves and `compile_problem` says why (in /health).
        self.compiled, self.compile_problem = verified_predictor(
            bundle.estimator, self._probe_rows()
        )

    def _probe_rows(self) -> np.ndarray:
        """Rows spanning every career's range, with and without missing values."""
        rows = [self.baseline]
        for profile in self.profiles:
            for q in (1, len(self.grid) // 2, len(self.grid) - 2):
                rows.append(
                    np.array(
                        [
                            profile.scales[name].quantiles[q] if name in profile.scales else np.nan
                            for name in self.spec.names
                        ]
                    )
                )
        probes = np.vstack(rows)
        holes = probes.copy()
        holes[:, ::2] = np.nan
        return np.vstack([probes, holes])

    def predictor_status(self) -> CareerPredictor:
        """How this model predicts: compiled, or through sklearn and why."""
        return CareerPredictor(
            kind="compiled" if self.compiled is not None else "sklearn",
            model=self.bundle.manifest.metrics.get("chosen_model"),
            problem=self.compile_problem,
        )

    def proba(self, rows: np.ndarray) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled(rows)
        # Rows are built by build_row (finite or NaN for the imputer): sklearn's per-call
        # re-validation would cost more than the prediction itself.
        import sklearn  # already loaded with the model; imported here to keep start-up fast

        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(self.bundle.estimator.predict_proba(rows))

    def resolve(self, names: list[str] | None) -> list[int]:
        if not names:
            return list(range(len(self.classes)))
        indices, unknown = [], []
        for name in names:
            key = name.strip().lower()
            index = self.by_key.get(key, self.by_key.get(career_id(key)))
            if index is None:
                unknown.append(name)
            elif index not in indices:
                indices.append(index)
        if unknown:
            raise InvalidInput(
                f"Unknown career(s) for the active model: {', '.join(unknown)}.",
                details=[
                    {
                        "field": "careers",
                        "message": f"unknown career '{name}'",
                        "type": "unknown_career",
                        "allowed": [p.ref.name for p in self.profiles],
                    }
                    for name in unknown
                ],
            )
        return indices


class VersionHolder:
    """Holds the served career model: loaded once, swapped atomically on activation."""

    name = "career"

    def __init__(self, store: VersionRegistry) -> None:
        self.store = store
        self._model: LoadedVersion | None = None
        self._lock = threading.Lock()
        self.error: str | None = "not loaded yet"
        self.loading = True  # until the first load() ends, in the background at start-up
        self.load_seconds: float | None = None
        self._failed_version: str | None = None

    def load(self) -> None:
        """Load the active version. If ACTIVE is unusable or names a version that does not
        load, serve the last good version instead (if any) and say why."""
        try:
            try:
                version = self.store.read_active()
            except ActivePointerError as exc:
                self._fall_back(UNUSABLE_POINTER, f"The ACTIVE pointer is unusable: {exc}")
                return
            if version is None:
                if self.store.last_good_version() is not None:  # it existed: lost, not new
                    self._fall_back(UNUSABLE_POINTER, "The ACTIVE pointer is missing")
                    return
                self._failed(
                    None,
                    f"No active career model in {self.store.root}: build one with "
                    "`python -m app.train`.",
                )
                return
            self._load_version(version)
        except Exception as exc:  # an unreadable model directory: report it, keep polling
            self._failed(None, f"The career model cannot be loaded: {type(exc).__name__}: {exc}")
        finally:
            self.loading = False

    def _open(self, version: str) -> LoadedVersion:
        """Load and prepare a version; any failure becomes BundleError with the reason."""
        try:
            return LoadedVersion(self.store.load(version))
        except BundleError:
            raise
        except AppError as exc:
            raise BundleError(exc.message) from exc
        except Exception as exc:  # a bad manifest or a model that loads but cannot predict
            raise BundleError(f"{type(exc).__name__}: {exc}") from exc

    def _load_version(self, version: str) -> LoadedVersion | None:
        started = time.perf_counter()
        try:
            model = self._open(version)
        except BundleError as exc:
            self._fall_back(version, f"The career model cannot be loaded: {exc}")
            return None
        self.install(model, started)
        logger.info("career model %s loaded in %.2fs", version, self.load_seconds)
        return model

    def install(self, model: LoadedVersion, started: float | None = None) -> None:
        """Serve this prepared model from now on (`started`: when its loading began)."""
        started = time.perf_counter() if started is None else started
        _observe(model)
        with self._lock:
            self._model = model
            self.error = None
            self._failed_version = None
            self.load_seconds = round(time.perf_counter() - started, 3)

    def _fall_back(self, failed: str | None, reason: str) -> None:
        """ACTIVE cannot be served: keep the model in hand or load the last good one, and
        record why (for /health and the 503s); `failed` is not retried until ACTIVE moves."""
        served = self._model
        if served is None:
            good = self.store.last_good_version()
            if good is not None and good != failed:
                started = time.perf_counter()
                try:
                    served = self._open(good)
                except BundleError as exc:
                    reason = f"{reason}; the last good version {good} does not load either: {exc}"
                else:
                    with self._lock:
                        self._model = served
                        self.load_seconds = round(time.perf_counter() - started, 3)
                    _observe(served)
        if served is not None:
            reason = f"{reason}. Serving the last good version, {served.bundle.version}."
        self._failed(failed, reason)

    def _failed(self, version: str | None, reason: str) -> None:
        self.error = reason
        self._failed_version = version
        logger.error("%s", reason)

    def sync(self) -> None:
        """Follow the ACTIVE pointer (another process may have moved it); cheap when unchanged."""
        try:
            version = self.store.read_active()
        except ActivePointerError as exc:
            if self._failed_version != UNUSABLE_POINTER:  # said once, not at every poll
                self._fall_back(UNUSABLE_POINTER, f"The ACTIVE pointer is unusable: {exc}")
            return
        current = self._model.bundle.version if self._model else None
        if version is None:
            return
        if version == current:
            if self._failed_version is not None:  # ACTIVE names the served version again
                with self._lock:
                    self.error = None
                    self._failed_version = None
                logger.info("career model %s is the active version again", version)
            return
        if version != self._failed_version:
            self._load_version(version)

    def activate(self, version: str) -> LoadedVersion:
        """Check that a version loads, then make it active here and for every process."""
        validate_version_name(version)
        self.store.require(version)  # 404 when there is no such version
        started = time.perf_counter()
        try:
            model = self._open(version)
        except BundleError as exc:
            raise ModelInvalid(
                f"Version '{version}' was refused and the active model is unchanged: {exc}"
            ) from exc
        self.store.set_active(version)
        self.install(model, started)
        logger.info("career model %s activated", version)
        return model

    @property
    def model(self) -> LoadedVersion:
        # One read of the reference: a request keeps the model it started with.
        model = self._model
        if model is None:
            if self.loading:
                raise ModelLoading(
                    "The career model is still loading; retry shortly.",
                    retry_after=1,
                )
            # The API may be open (no API_KEYS): the reason without host paths.
            raise ModelUnavailable(
                f"The career model is not available: {redact_paths(self.error or 'unknown')}"
            )
        return model

    @property
    def current(self) -> LoadedVersion | None:
        """The served model, or None while none is: for readers that must not raise 503."""
        return self._model

    @property
    def state(self) -> ModelState:
        return "loaded" if self._model else "loading" if self.loading else "unavailable"

    def status(self) -> CareerStatus:
        model = self._model
        return CareerStatus(
            state=self.state,
            version=model.bundle.version if model else None,
            load_seconds=self.load_seconds,
            error=self.error,
            predictor=model.predictor_status() if model else None,
        )

    def close(self) -> None:
        """Nothing to release: a loaded bundle is plain memory."""


def _observe(model: LoadedVersion) -> None:
    """The served version and its held-out top-1, for /metrics."""
    holdout = model.bundle.manifest.metrics.get("holdout") or {}
    metrics.observe_career_model(model.bundle.version, holdout.get("top1_accuracy"))
