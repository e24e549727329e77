"""What runtime selection keeps in the artifact store for one checkpoint: the probe
reference (torch fp32 on the probe set, with the model's metadata) and the ONNX exports.
Each is looked up first and built once where missing, so a later start that needs only
cached artifacts need not import torch."""

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.config import Settings
from app.services.clip.artifacts import ArtifactError, ArtifactStore, library_versions
from app.services.clip.candidates import INT8_RECIPES, Int8Recipe, Trial
from app.services.clip.parity import PROBE_TAGS, Reference, fast_agreement, probe_reference
from app.services.clip.preprocess import ImageSpec
from app.services.clip.runtime import ClipMeta, TorchModel
from app.services.clip.tokenizer import vocabulary_file
from app.services.clip.weights import Weights
from app.utils.hashing import sha256_file
from app.utils.text import brief_error

logger = logging.getLogger(__name__)

REFERENCE_VERSIONS = ("torch", "open_clip_torch")
VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
ONNX_VERSIONS = ("torch", "open_clip_torch", "onnx", "onnxruntime")


def store_for(settings: Settings, weights: Weights) -> ArtifactStore | None:
    """The artifact store of these weights; None for random-init weights (no checksum to
    key it by, and nothing that could be exported reproducibly)."""
    if weights.sha256 is None:
        return None
    return ArtifactStore(
        settings.clip_model_cache_dir / settings.clip_model_name / weights.sha256,
        model=settings.clip_model_name,
        weights_sha256=weights.sha256,
        variant=_variant(settings, weights),
    )


def _variant(settings: Settings, weights: Weights) -> str:
    """What besides the checkpoint decides the model: its loading options and, for a custom
    architecture, the config file's content."""
    config = settings.clip_model_config
    parts = {
        "options": weights.options,
        "config": sha256_file(Path(config)) if config and Path(config).is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Cached:
    """What the artifact cache already holds for these weights."""

    meta: ClipMeta | None
    reference: Reference | None
    exports: dict[str, Path | None]  # artifact kind -> export directory, for the ONNX trials
    vocabulary: Path | None = None  # the tokenizer's merges file kept with the reference

    @classmethod
    def look_up(cls, store: ArtifactStore | None, kinds: list[str]) -> "Cached":
        if store is None:
            return cls(None, None, {})
        found = store.find("reference", library_versions(*REFERENCE_VERSIONS))
        versions = library_versions(*ONNX_VERSIONS)
        exports = {}
        for kind in kinds:
            export = store.find(kind, versions)
            exports[kind] = export[0] if export else None
        if found is None:
            return cls(None, None, exports)
        path, manifest = found
        try:
            meta = ClipMeta.from_dict(manifest.extras["meta"])
            reference = Reference.load(path / "probes.npz")
            return cls(meta, reference, exports, vocabulary_in(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # removed or damaged meanwhile
            logger.warning("CLIP probe reference unusable (%s): rebuilding it", brief_error(exc))
            store.discard(path)
            return cls(None, None, exports)

    def torch_free(self, live: list[Trial]) -> bool:
        """Everything these trials need is cached and none of them is torch."""
        return (
            self.meta is not None
            and all(t.backend == "onnx" for t in live)
            and all(self.exports.values())
            and self.meta.tokenizer is not None
            and ImageSpec.from_open_clip(self.meta.preprocess) is not None
        )


def vocabulary_in(directory: Path) -> Path | None:
    """The tokenizer's merges file kept in a reference artifact (older ones have none)."""
    path = directory / VOCABULARY
    return path if path.is_file() else None


def build_reference(
    store: ArtifactStore | None, source: TorchModel | None, meta: ClipMeta
) -> tuple[Reference, ClipMeta]:
    """torch fp32 on the probe set, and how closely the fast decode follows open_clip's
    transform (recorded in the metadata), cached together: both need torch, so a later
    start without it has them."""
    assert source is not None
    reference = probe_reference(source)
    agreement = fast_agreement(source)
    meta = replace(meta, fast_agreement=agreement.to_dict() if agreement is not None else None)
    if store is not None:

        def write(out: Path) -> dict[str, Any]:
            reference.save(out / "probes.npz")
            if meta.tokenizer is not None:  # so that a start without open_clip can tokenise
                shutil.copyfile(vocabulary_file(), out / VOCABULARY)
            return {"meta": meta.to_dict(), "probe_tags": list(PROBE_TAGS)}

        try:
            store.build("reference", library_versions(*REFERENCE_VERSIONS), write)
        except ArtifactError as exc:  # a read-only or full cache: this start still gates
            logger.warning("CLIP probe reference not cached: %s", exc)
    return reference, meta


def build_exports(
    store: ArtifactStore | None, source: TorchModel | None, exports: dict[str, Path | None]
) -> dict[str, Path | str]:
    """The ONNX exports the trials need, built where missing (each int8 recipe from the
    fp32 export): artifact kind -> directory, or why it could not be built."""
    if store is None or all(exports.values()):
        return {k: v for k, v in exports.items() if v is not None}
    if source is None:
        why = (
            "not in the CLIP cache, and torch (needed to export) is not installed: "
            "build it with `python -m app.prefetch` where torch is"
        )
        return {k: v if v is not None else why for k, v in exports.items()}
    # Imported only to build: a start that finds every export cached never imports it.
    from app.services.clip import onnx_export

    versions = library_versions(*ONNX_VERSIONS)

    def write_fp32(out: Path) -> dict[str, Any]:
        onnx_export.export(source, out)
        return {"opset": onnx_export.OPSET}

    built: dict[str, Path | str] = {}
    try:
        found = store.find("onnx-fp32", versions) or store.build("onnx-fp32", versions, write_fp32)
    except ArtifactError as exc:
        return {kind: str(exc) for kind in exports}
    fp32 = found[0]
    recipes = {recipe.kind: recipe for recipe in INT8_RECIPES.values()}
    for kind, path in exports.items():
        if path is not None:
            built[kind] = path
        elif kind == "onnx-fp32":
            built[kind] = fp32
        else:
            recipe = recipes[kind]

            def write_int8(out: Path, recipe: Int8Recipe = recipe) -> dict[str, Any]:
                onnx_export.quantize_int8(fp32, out, recipe)
                return {"quantization": recipe.describe(), "recipe": recipe.name}

            try:
                built[kind] = store.build(kind, versions, write_int8)[0]
            except ArtifactError as exc:
                built[kind] = str(exc)
    return built
