"""Load the tiny CLIP fixture exactly as the service does and measure zero-shot and image-similarity quality."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image

from research.clip_fixture import shapes

MODEL_NAME = "tiny-clip"
DEFAULT_FIXTURE_DIR = Path("tests/fixtures/clip")
# Evaluation images come from a seed the training pool never uses (training draws from `seed`).
DEFAULT_EVAL_SEED = 12345
# Render sizes seen by the evaluation: any size works because preprocessing resizes to 64 px.
EVAL_SIZE_RANGE: tuple[int, int] = (32, 256)

Preprocess = Callable[[Image.Image], torch.Tensor]


def load_fixture(
    fixture_dir: Path = DEFAULT_FIXTURE_DIR,
) -> tuple[torch.nn.Module, Preprocess, Any]:
    """Load model, eval preprocessing and tokenizer through the same open_clip calls the service uses."""
    open_clip.add_model_config(fixture_dir / f"{MODEL_NAME}.json")
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, pretrained=str(fixture_dir / f"{MODEL_NAME}.pt")
    )
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    model.eval()
    return model, preprocess, tokenizer


@torch.no_grad()
def embed_images(
    model: torch.nn.Module, preprocess: Preprocess, images: list[Image.Image]
) -> torch.Tensor:
    """L2-normalised image embeddings, one row per image."""
    batch = torch.stack([preprocess(image) for image in images])
    return model.encode_image(batch, normalize=True)


@torch.no_grad()
def embed_texts(model: torch.nn.Module, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings, one row per text."""
    return model.encode_text(tokenizer(texts), normalize=True)


def _random_size(rng: np.random.Generator) -> int:
    return int(rng.integers(EVAL_SIZE_RANGE[0], EVAL_SIZE_RANGE[1] + 1))


@torch.no_grad()
def zero_shot_accuracy(
    model: torch.nn.Module, preprocess: Preprocess, tokenizer: Any, *, per_caption: int, seed: int
) -> dict[str, float]:
    """Classify fresh images among all captions with the model's logit scale; return accuracy stats."""
    rng = np.random.default_rng(seed)
    pairs = shapes.all_pairs()
    captions = shapes.all_captions()
    images: list[Image.Image] = []
    labels: list[int] = []
    for _ in range(per_caption):
        for label, (color, shape) in enumerate(pairs):
            images.append(shapes.render(color, shape, size=_random_size(rng), rng=rng))
            labels.append(label)
    image_features = embed_images(model, preprocess, images)
    text_features = embed_texts(model, tokenizer, captions)
    logits = model.logit_scale.exp() * image_features @ text_features.T
    probs = logits.softmax(dim=-1)
    target = torch.tensor(labels)
    predicted = logits.argmax(dim=-1)
    correct = predicted == target
    color_ok = torch.tensor(
        [pairs[p][0] == pairs[t][0] for p, t in zip(predicted.tolist(), labels, strict=True)]
    )
    shape_ok = torch.tensor(
        [pairs[p][1] == pairs[t][1] for p, t in zip(predicted.tolist(), labels, strict=True)]
    )
    return {
        "n_images": float(len(images)),
        "accuracy": correct.float().mean().item(),
        "color_accuracy": color_ok.float().mean().item(),
        "shape_accuracy": shape_ok.float().mean().item(),
        "mean_prob_correct": probs[torch.arange(len(labels)), target].mean().item(),
        "logit_scale": model.logit_scale.exp().item(),
    }


@torch.no_grad()
def similarity_checks(
    model: torch.nn.Module, preprocess: Preprocess, *, trials: int, seed: int
) -> dict[str, float]:
    """Compare an image with a shifted/resized copy of itself versus other shapes/colours.

    Negatives are drawn at the anchor's own placement, so a model that matched on position or size
    rather than on colour and shape would fail.
    """
    rng = np.random.default_rng(seed)
    colors, shape_names = list(shapes.COLORS), list(shapes.SHAPES)
    wins_shape = wins_color = wins_both = 0
    self_cosines: list[float] = []
    margins: list[float] = []
    for _ in range(trials):
        color = colors[rng.integers(len(colors))]
        shape = shape_names[rng.integers(len(shape_names))]
        other_color = colors[(colors.index(color) + rng.integers(1, len(colors))) % len(colors)]
        other_shape = shape_names[
            (shape_names.index(shape) + rng.integers(1, len(shape_names))) % len(shape_names)
        ]
        anchor_place = shapes.random_placement(rng)
        moved_place = shapes.random_placement(rng)
        size = _random_size(rng)
        noise_seed = int(rng.integers(2**31))

        # Same size and background noise for every image of a trial; only colour/shape/placement vary.
        variants = [
            (color, shape, anchor_place),
            (color, shape, moved_place),
            (color, other_shape, anchor_place),
            (other_color, shape, anchor_place),
        ]
        anchor, moved, diff_shape, diff_color = (
            shapes.render(
                c, s, size=size, center=p.center, scale=p.scale, angle=p.angle, seed=noise_seed
            )
            for c, s, p in variants
        )
        feats = embed_images(
            model, preprocess, [anchor, anchor.copy(), moved, diff_shape, diff_color]
        )
        sims = feats[1:] @ feats[0]
        self_cos, positive, neg_shape, neg_color = sims.tolist()
        self_cosines.append(self_cos)
        wins_shape += positive > neg_shape
        wins_color += positive > neg_color
        wins_both += positive > max(neg_shape, neg_color)
        margins.append(positive - max(neg_shape, neg_color))
    return {
        "trials": float(trials),
        "self_cosine_min": min(self_cosines),
        "shifted_beats_other_shape": wins_shape / trials,
        "shifted_beats_other_color": wins_color / trials,
        "shifted_beats_both": wins_both / trials,
        "mean_margin": float(np.mean(margins)),
    }


def evaluate(
    model: torch.nn.Module,
    preprocess: Preprocess,
    tokenizer: Any,
    *,
    seed: int = DEFAULT_EVAL_SEED,
    per_caption: int = 20,
    trials: int = 200,
) -> dict[str, dict[str, float]]:
    """All acceptance numbers for the fixture, on images generated from ``seed``."""
    model.eval()
    return {
        "zero_shot": zero_shot_accuracy(
            model, preprocess, tokenizer, per_caption=per_caption, seed=seed
        ),
        "similarity": similarity_checks(model, preprocess, trials=trials, seed=seed + 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixture-dir", type=Path, default=DEFAULT_FIXTURE_DIR)
    parser.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED)
    parser.add_argument("--per-caption", type=int, default=20)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, preprocess, tokenizer = load_fixture(args.fixture_dir)
    results = evaluate(
        model,
        preprocess,
        tokenizer,
        seed=args.seed,
        per_caption=args.per_caption,
        trials=args.trials,
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
