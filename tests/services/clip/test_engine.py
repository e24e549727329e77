"""The CLIP engine's parts on their own: preprocessing parity, batcher, admission, cache,
and finding weights without a network."""

import asyncio
import contextlib
import io
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
from PIL import Image, ImageOps

from app.config import Settings
from app.core.exceptions import Overloaded
from app.services.clip.admission import Admission, Flow
from app.services.clip.batcher import Batcher
from app.services.clip.decode_pool import DecodeBudget
from app.services.clip.embedding_cache import EmbeddingCache
from app.services.clip.engine import ClipEngine, EngineSettings, ImageInput
from app.services.clip.gpu_decode import decode_jpegs
from app.services.clip.parity import FastAgreement, agreement_set, fast_agreement
from app.services.clip.preprocess import ImageSpec, region_of, to_array
from app.services.clip.runtime import TorchModel, TorchRuntime
from app.services.clip.tokenizer import ClipTokenizer
from app.services.clip.weights import WeightsUnavailable, resolve_weights
from app.utils.image_structure import StructureLimits
from app.utils.images import load_image, open_image
from benchmarks.common import photo_jpeg
from research.clip_fixture.shapes import all_captions, all_pairs, render
from tests.conftest import TINY_CLIP

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny() -> TorchModel:
    settings = Settings(_env_file=None, **TINY_CLIP)  # type: ignore[call-arg]
    return TorchModel(settings, "cpu", resolve_weights(settings))


@pytest.fixture(scope="module")
def vit_spec() -> tuple[ImageSpec, Any]:
    """ViT-B-32's preprocessing (no weights needed) and open_clip's own transform for it."""
    model, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    spec = ImageSpec.from_open_clip(open_clip.get_model_preprocess_cfg(model))
    assert spec is not None
    return spec, transform


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def preprocess_bytes(data: bytes, spec: ImageSpec) -> np.ndarray:
    """The decode worker's steps: header, reduced decode of the crop's region, numpy
    preprocessing."""
    image = open_image(data, max_pixels=10**8)
    return to_array(load_image(image, min_side=spec.min_side, region=region_of(spec)), spec)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- preprocessing parity ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (225, 300), (333, 1000), (224, 224)])
def test_numpy_preprocessing_matches_open_clip_on_the_same_pixels(
    vit_spec: tuple[ImageSpec, Any], size: tuple[int, int]
) -> None:
    """Only the crop's region is resampled, straight to the input size. Pillow may then
    take the two passes in the other order than for the whole image, and its rounding
    between them moves some pixels by a grey level or two: never more."""
    spec, transform = vit_spec
    image = Image.open(io.BytesIO(photo_jpeg(1, size))).convert("RGB")
    ours = to_array(image, spec)
    reference = transform(image).numpy()
    assert ours.shape == reference.shape == (3, 224, 224)
    assert ours.dtype == np.float32
    grey_levels = np.abs(ours - reference) * spec.std * 255
    assert grey_levels.max() <= 2.01
    assert cosines(ours.reshape(1, -1), reference.reshape(1, -1))[0] >= 0.9999


def test_reduced_decoding_stays_close_to_open_clip(vit_spec: tuple[ImageSpec, Any]) -> None:
    """Large photos decode reduced (draft / reduce); the input moves by a few grey levels."""
    spec, transform = vit_spec
    for size in [(1920, 1080), (4000, 3000)]:
        data = photo_jpeg(2, size)
        reference = transform(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
        ours = preprocess_bytes(data, spec)
        assert np.abs(ours - reference).max() < 0.05  # normalised units: ~3/255 before std
        assert np.abs(ours - reference).mean() < 0.01


def test_embeddings_from_both_preprocessings_agree(tiny: TorchModel) -> None:
    """The fixture's shapes and photo-like images from 640x480 to 12 MP (decoded reduced):
    the service's preprocessing and open_clip's give the same embeddings."""
    spec = ImageSpec.from_open_clip(tiny.meta.preprocess)
    assert spec is not None
    rng = np.random.default_rng(11)
    shapes = [jpeg(render(c, s, size=int(rng.integers(40, 400)), rng=rng)) for c, s in all_pairs()]
    photos = [
        photo_jpeg(i, size) for i, size in enumerate([(640, 480), (1920, 1080), (4000, 3000)])
    ]
    photos.append(png(Image.open(io.BytesIO(photo_jpeg(3, (2600, 2100))))))
    for blobs in (shapes, photos):
        ours = np.stack([preprocess_bytes(b, spec) for b in blobs])
        reference = np.stack(
            [tiny.preprocess(Image.open(io.BytesIO(b)).convert("RGB")).numpy() for b in blobs]
        )
        assert (
            cosines(tiny.fp32.encode_images([ours]), tiny.fp32.encode_images([reference])).min()
            >= 0.9999
        )


def awkward_images() -> dict[str, bytes]:
    """Files the fast decode must still get right: photos, and the awkward shapes."""
    stored = Image.open(io.BytesIO(photo_jpeg(5, (2601, 2103))))
    files = {
        "photo 640x480": photo_jpeg(1, (640, 480)),
        "photo 1080p": photo_jpeg(2, (1920, 1080)),
        "photo 24 MP": photo_jpeg(3, (6000, 4000)),
        "tiny 12x9": jpeg(render("red", "circle", size=(12, 9), seed=1)),
        "strip 40x2000": jpeg(render("blue", "square", size=(40, 2000), seed=2)),
        "strip 3000x60 png": png(render("green", "star", size=(3000, 60), seed=3)),
    }
    for orientation in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        stored.save(out, format="JPEG", quality=92, exif=exif)
        files[f"exif {orientation}"] = out.getvalue()
    ramp = np.linspace(0, 65535, 1600 * 1200).reshape(1200, 1600).astype(np.uint16)
    files["16-bit grey 1600x1200"] = png(Image.fromarray(ramp))
    shapes = render("purple", "triangle", size=1500, seed=4)
    files["palette 1500"] = png(shapes.convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
    return files


def full_upright(data: bytes) -> Image.Image:
    """The whole picture at full size, upright, in RGB, as the service converts it (16-bit
    scaled, transparency over white): what open_clip's transform is given as the reference."""
    return load_image(open_image(data, max_pixels=10**9)).image


def test_fast_decoding_agrees_with_open_clip_on_photos_and_awkward_shapes(
    tiny: TorchModel, vit_spec: tuple[ImageSpec, Any]
) -> None:
    """CLIP_PREPROCESS=fast (JPEG draft / integer reduce to 2x the input): embeddings within
    0.999 cosine of open_clip's transform on the full-size picture, and the same answers."""
    import dataclasses

    tiny_fast = ImageSpec.from_open_clip(tiny.meta.preprocess, decode="fast")
    vit_exact, transform = vit_spec
    vit_fast = dataclasses.replace(vit_exact, decode="fast")
    assert tiny_fast is not None and tiny_fast.min_side == 64 and vit_fast.min_side == 448
    files = awkward_images()
    uprights = [full_upright(data) for data in files.values()]
    ours = np.stack([preprocess_bytes(data, tiny_fast) for data in files.values()])
    theirs = np.stack([tiny.preprocess(image).numpy() for image in uprights])
    a, b = tiny.fp32.encode_images([ours]), tiny.fp32.encode_images([theirs])
    texts = tiny.fp32.encode_texts([tiny.tokenize(all_captions())])
    worst = dict(zip(files, cosines(a, b).round(6), strict=True))
    assert min(worst.values()) >= 0.999, worst
    assert np.array_equal(np.argmax(a @ texts.T, axis=1), np.argmax(b @ texts.T, axis=1))
    # ViT-B-32's geometry (224 px): the model's input itself stays this close.
    for name, data, upright in zip(files, files.values(), uprights, strict=True):
        fast = preprocess_bytes(data, vit_fast).reshape(1, -1)
        reference = transform(upright).numpy().reshape(1, -1)
        assert cosines(fast, reference)[0] >= 0.999, name


def test_fast_decoding_agreement_is_measured_for_the_model(tiny: TorchModel) -> None:
    """What CLIP_PREPROCESS=auto decides by, measured with torch when the reference is built."""
    agreement = fast_agreement(tiny)
    assert agreement is not None and agreement.images == len(agreement_set())
    # 1x (32 px: JPEGs drop to 1/8 scale) drifts for the fixture's tiny input; 2x agrees.
    assert agreement.agrees and agreement.factor == 2, agreement
    assert FastAgreement.from_dict(agreement.to_dict()) == agreement


def test_normalising_by_table_is_bit_exact(vit_spec: tuple[ImageSpec, Any]) -> None:
    """One table look-up per pixel gives the very floats of `(v / 255 - mean) / std`."""
    spec, _ = vit_spec
    pixels = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    expected = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    expected = (expected - spec.mean) / spec.std
    out = np.full((3, 224, 224), np.nan, dtype=np.float32)
    assert to_array(image, spec, out) is out
    assert np.array_equal(out, expected)


def test_device_jpeg_decoding_matches_pillow(
    tiny: TorchModel, vit_spec: tuple[ImageSpec, Any]
) -> None:
    """The GPU path's code, run on the CPU: same input within a grey level or two."""
    spec, _ = vit_spec
    blobs = [photo_jpeg(i, size) for i, size in enumerate([(640, 480), (480, 640), (300, 300)])]
    rows = decode_jpegs(blobs, spec, "cpu")
    assert [tuple(r.shape) for r in rows] == [(1, 3, 224, 224)] * 3
    for row, blob in zip(rows, blobs, strict=True):
        pillow = preprocess_bytes(blob, spec)
        assert np.abs(row[0].numpy() - pillow).mean() < 0.02
    tiny_spec = ImageSpec.from_open_clip(tiny.meta.preprocess)
    assert tiny_spec is not None
    shapes = [jpeg(render(c, s, size=96, seed=i)) for i, (c, s) in enumerate(all_pairs())]
    device = np.concatenate([r.numpy() for r in decode_jpegs(shapes, tiny_spec, "cpu")])
    pillow = np.stack([preprocess_bytes(b, tiny_spec) for b in shapes])
    assert (
        cosines(tiny.fp32.encode_images([device]), tiny.fp32.encode_images([pillow])).min() >= 0.999
    )


def test_exif_rotated_reduced_images_keep_their_framing(vit_spec: tuple[ImageSpec, Any]) -> None:
    """Reduced decode, then the EXIF turn or flip: the same crop as open_clip's on the
    upright full-size image (the partial last row/column of the reduction moves with it)."""
    spec, transform = vit_spec
    stored = Image.open(io.BytesIO(photo_jpeg(5, (2601, 2103))))
    for orientation in (2, 3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        for fmt in ("JPEG", "PNG"):
            out = io.BytesIO()
            stored.save(out, format=fmt, exif=exif)
            upright = ImageOps.exif_transpose(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
            reference = transform(upright).numpy()
            ours = preprocess_bytes(out.getvalue(), spec)
            assert np.abs(ours - reference).mean() < 0.01, (orientation, fmt)


def test_device_decoding_path_in_the_engine(tiny: TorchModel) -> None:
    """The engine's GPU JPEG route, run on the CPU: upright JPEGs go through the device
    decoder, EXIF-rotated ones through Pillow, and the answers match the Pillow engine."""
    settings = EngineSettings(
        identity="tiny",
        max_waiting=64,
        max_batch=8,
        wait_ms=0,
        preprocess_workers=2,
        cache_mb=0,
        budget=DecodeBudget(
            max_bytes=10**7,
            max_pixels=10**8,
            structure=StructureLimits(max_scans=64, max_chunks=1024),
            timeout_s=5.0,
            memory_mb=512,
        ),
    )
    tokenize = ClipTokenizer.from_spec(tiny.meta.tokenizer or {})
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    render("green", "triangle", size=(120, 80), seed=6).save(
        out, format="JPEG", quality=95, exif=exif
    )
    blobs = [jpeg(render(c, s, size=96, seed=i)) for i, (c, s) in enumerate(all_pairs()[:5])] + [
        out.getvalue(),
        png(render("red", "circle", size=90, seed=1)),
    ]
    items = [ImageInput(b, f"images.{i}") for i, b in enumerate(blobs)]
    on_device = replace(settings, jpeg_device="cpu")
    device = ClipEngine(tiny.fp32, meta=tiny.meta, tokenize=tokenize, settings=on_device)
    pillow = ClipEngine(tiny.fp32, meta=tiny.meta, tokenize=tokenize, settings=settings)
    try:
        a = asyncio.run(device.encode_images(items))
        b = asyncio.run(pillow.encode_images(items))
    finally:
        device.close()
        pillow.close()
    assert cosines(a, b).min() >= 0.999


def test_without_a_cache_images_are_not_hashed(
    tiny: TorchModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLIP_CACHE_MB=0: no content key is computed (a sha256 of every upload, on a thread),
    and the cache counts neither hits nor misses; with a cache, the same images are hashed
    and the answers are the same."""
    budget = DecodeBudget(10**7, 10**8, StructureLimits(64, 1024), 5.0, 512)
    settings = EngineSettings("tiny", 64, 8, 0, 1, 0, budget)
    tokenize = ClipTokenizer.from_spec(tiny.meta.tokenizer or {})
    items = [ImageInput(photo_jpeg(i, (96, 64)), f"images.{i}") for i in range(3)]
    hashed: list[ClipEngine] = []
    real_cached = ClipEngine._cached

    def counting(engine: ClipEngine, batch: Any) -> Any:
        hashed.append(engine)
        return real_cached(engine, batch)

    monkeypatch.setattr(ClipEngine, "_cached", counting)
    # Runtimes of their own: closing an engine closes its runtime, and tiny.fp32 is shared.
    off = ClipEngine(
        TorchRuntime(tiny, "fp32"), meta=tiny.meta, tokenize=tokenize, settings=settings
    )
    on = ClipEngine(
        TorchRuntime(tiny, "fp32"),
        meta=tiny.meta,
        tokenize=tokenize,
        settings=replace(settings, cache_mb=1),
    )
    try:
        a = asyncio.run(off.encode_images(items))
        assert hashed == [] and off.images_cache.stats().misses == 0
        b = asyncio.run(on.encode_images(items))
        assert hashed == [on] and on.images_cache.stats().misses == 3
    finally:
        off.close()
        on.close()
    assert cosines(a, b).min() >= 0.9999


# --- batcher ----------------------------------------------------------------------------------


class RecordingForward:
    """A forward pass that records batch sizes and can be held closed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, kind: str, parts: list[Any]) -> np.ndarray:
        self.gate.wait(10)
        rows = np.concatenate(parts)
        self.sizes.append(len(rows))
        return rows.reshape(len(rows), -1)[:, :1] * (2 if kind == "images" else 3)


def test_batcher_collects_concurrent_jobs_and_keeps_their_rows() -> None:
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch=8, wait_s=0.005, expected=lambda kind: 0)
    try:
        forward.gate.clear()  # the first job occupies the model; the rest queue up
        first = batcher.submit("images", np.array([[1.0]]))
        time.sleep(0.05)
        jobs = [
            batcher.submit("images", np.array([[10.0 * i], [10.0 * i + 1]])) for i in range(1, 6)
        ]
        forward.gate.set()
        assert first.result(5).tolist() == [[2.0]]
        for i, job in enumerate(jobs, start=1):
            assert job.result(5).tolist() == [[20.0 * i], [20.0 * i + 2]]
        assert forward.sizes == [1, 8, 2]  # 4 jobs of 2 rows fill a batch of 8; one is left
        stats = batcher.stats()
        assert (stats.batches, stats.images, stats.mean_batch_size) == (3, 11, 3.667)
    finally:
        batcher.close()


def test_batcher_does_not_wait_when_nothing_else_is_coming() -> None:
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch=32, wait_s=5.0, expected=lambda kind: 0)
    try:
        started = time.monotonic()
        assert batcher.submit("texts", np.array([[1.0]])).result(5).tolist() == [[3.0]]
        assert time.monotonic() - started < 1.0  # the 5 s window was not waited for
    finally:
        batcher.close()


def test_batcher_waits_for_work_being_prepared() -> None:
    forward = RecordingForward()
    preparing = [1]
    batcher = Batcher(forward, max_batch=32, wait_s=2.0, expected=lambda kind: 2 * preparing[0])
    try:
        first = batcher.submit("images", np.array([[1.0]]))
        time.sleep(0.1)
        preparing[0] = 0
        second = batcher.submit("images", np.array([[2.0]]))
        assert first.result(5).tolist() == [[2.0]] and second.result(5).tolist() == [[4.0]]
        assert forward.sizes == [2]
    finally:
        batcher.close()


def test_batcher_waits_for_as_many_rows_as_were_recently_in_flight() -> None:
    """Closed-loop clients just answered come back: with 4 recently in flight, the first
    returning job waits (within the window) for the other three instead of running alone."""
    forward = RecordingForward()
    flow = Flow()
    with contextlib.ExitStack() as requests:  # four requests were in flight at once
        for _ in range(4):
            requests.enter_context(flow.track(1, lambda: None))
        assert flow.in_flight == 4 and flow.preparing == 4
    assert flow.in_flight == 0 and flow.preparing == 0 and flow.recent_peak() == 4
    batcher = Batcher(forward, max_batch=32, wait_s=2.0, expected=lambda kind: flow.recent_peak())
    try:
        jobs = [batcher.submit("images", np.array([[0.0]]))]
        time.sleep(0.1)
        jobs += [batcher.submit("images", np.array([[float(i)]])) for i in range(1, 4)]
        assert [job.result(5).tolist() for job in jobs] == [[[2.0 * i]] for i in range(4)]
        assert forward.sizes == [4]
    finally:
        batcher.close()


def test_batcher_skips_cancelled_jobs_and_keeps_serving() -> None:
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch=8, wait_s=0.0, expected=lambda kind: 0)
    try:
        forward.gate.clear()
        blocker = batcher.submit("images", np.array([[1.0]]))
        time.sleep(0.05)
        gone = batcher.submit("images", np.array([[5.0]]))
        kept = batcher.submit("images", np.array([[7.0]]))
        assert gone.cancel()  # its request was cancelled (client gone, shutdown)
        forward.gate.set()
        assert blocker.result(5).tolist() == [[2.0]]
        assert kept.result(5).tolist() == [[14.0]]
        assert forward.sizes == [1, 1]  # the cancelled job was never computed
        assert batcher.submit("images", np.array([[3.0]])).result(5).tolist() == [[6.0]]
    finally:
        batcher.close()


def test_batcher_splits_an_oversized_job_and_separates_towers() -> None:
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch=4, wait_s=0.0, expected=lambda kind: 0)
    try:
        forward.gate.clear()
        blocker = batcher.submit("texts", np.zeros((1, 1)))
        time.sleep(0.05)
        big = batcher.submit("images", np.arange(10.0).reshape(10, 1))
        text = batcher.submit("texts", np.ones((2, 1)))
        forward.gate.set()
        blocker.result(5)
        assert big.result(5)[:, 0].tolist() == [2.0 * i for i in range(10)]
        assert text.result(5).tolist() == [[3.0], [3.0]]
        assert forward.sizes == [1, 4, 4, 2, 2]
    finally:
        batcher.close()


def test_batcher_hands_errors_to_every_job_and_keeps_running() -> None:
    calls = []

    def failing(kind: str, parts: list[Any]) -> np.ndarray:
        calls.append(len(parts))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.concatenate(parts)

    batcher = Batcher(failing, max_batch=8, wait_s=0.0, expected=lambda kind: 0)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit("images", np.zeros((1, 1))).result(5)
        assert batcher.submit("images", np.ones((1, 1))).result(5).tolist() == [[1.0]]
    finally:
        batcher.close()


# --- admission and cache ----------------------------------------------------------------------


def test_admission_counts_units_and_refuses_beyond_the_budget() -> None:
    admission = Admission(4)
    with admission.hold(3):
        with admission.hold(1):
            assert admission.in_flight == 4
            with pytest.raises(Overloaded) as refused, admission.hold(1):
                pass
            assert refused.value.retry_after == 1
        assert admission.in_flight == 3
    assert admission.in_flight == 0
    with admission.hold(10):  # larger than the budget: admitted when nothing is in flight
        assert admission.in_flight == 10
    assert admission.refused == 1


def test_cache_is_an_lru_bounded_in_megabytes() -> None:
    cache = EmbeddingCache(max_mb=0.01)  # 10,485 bytes: four 2 KB vectors with overhead
    vectors = {f"k{i}": np.full(512, i, dtype=np.float32) for i in range(6)}
    for key in ("k0", "k1", "k2", "k3"):
        cache.put(key, vectors[key])
    assert cache.get("k0") is not None  # k0 is now the most recently used
    cache.put("k4", vectors["k4"])  # evicts k1, the least recently used
    assert cache.get("k1") is None
    assert cache.get("k0") is not None and cache.get("k4") is not None
    assert cache.bytes <= cache.max_bytes
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 1)
    off = EmbeddingCache(max_mb=0)
    off.put("k", vectors["k0"])
    assert off.get("k") is None and off.stats().size_mb == 0


# --- weights ----------------------------------------------------------------------------------


def test_default_weights_offline_fail_fast_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cached weights and no route to the hub (as on the build machines): one quick,
    clear refusal, not open_clip's minute of retries."""
    settings = Settings(_env_file=None, clip_model_cache_dir=tmp_path / "empty")  # type: ignore[call-arg]
    started = time.monotonic()

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(WeightsUnavailable) as refused:
        resolve_weights(settings)
    assert time.monotonic() - started < 5
    message = str(refused.value)
    assert "ViT-B-32/openai" in message
    assert "python -m app.prefetch" in message and "CLIP_PRETRAINED=" in message


def test_cached_weights_resolve_without_any_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub cache laid out as `python -m app.prefetch` leaves it is used as is."""
    cache = tmp_path / "clip"
    repo = cache / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    settings = Settings(_env_file=None, clip_model_cache_dir=cache)  # type: ignore[call-arg]

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    weights = resolve_weights(settings)
    assert weights.checkpoint == str(snapshot / "open_clip_model.safetensors")
    assert weights.tag == "openai"
    assert weights.options["force_quick_gelu"] is True
