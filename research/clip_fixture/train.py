"""Train the tiny open_clip CLIP test fixture on generated coloured shapes and write it to --out.

Usage: .venv/bin/python -m research.clip_fixture.train --out tests/fixtures/clip --seed 0
"""

from __future__ import annotations

import os

# Threads that busy-wait at OpenMP barriers make 2-thread training ~10x slower when another process
# holds one of the 2 cores; passive waiting avoids that. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from research.clip_fixture import shapes
from research.clip_fixture.evaluate import MODEL_NAME, Preprocess, evaluate, load_fixture

# Small on purpose: the token embedding (49408 x text width) dominates the file size, so the text
# tower is 32 wide; context_length 16 is plenty for "a purple triangle" and get_tokenizer() follows
# it. The vision tower is a ViT like the production CLIP (no BatchNorm, so train/eval mode and batch
# composition cannot change embeddings). 32 px input with 4 px patches (64 tokens) keeps it fast on
# CPU. After 600 steps a 64 px / 8 px-patch ViT reached only ~87% zero-shot accuracy (it confused
# circles and squares) against ~96% for this one, which gets ~99.8% after the default 1000 steps.
# open_clip's ModifiedResNet reached 100% in 600 steps, but its BatchNorm gives garbage for single
# images unless the caller remembers model.eval().
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 4,
        "width": 64,
        "layers": 3,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 2,
    },
}

# Training pool images are rendered at random sizes so the model sees the resize path it will get
# in the service (which accepts any image size).
TRAIN_SIZE_RANGE: tuple[int, int] = (32, 160)


def seed_everything(seed: int) -> None:
    """Seed every RNG we touch and force deterministic kernels so reruns give identical weights."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def build_pool(
    preprocess: Preprocess, per_caption: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``per_caption`` images of every caption and run them through the model's own preprocessing.

    Returns (images [N, 3, H, W], labels [N]) with labels indexing :func:`shapes.all_captions`.
    """
    rng = np.random.default_rng(seed)
    pairs = shapes.all_pairs()
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for _ in range(per_caption):
        for label, (color, shape) in enumerate(pairs):
            size = int(rng.integers(TRAIN_SIZE_RANGE[0], TRAIN_SIZE_RANGE[1] + 1))
            images.append(preprocess(shapes.render(color, shape, size=size, rng=rng)))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def grouped_batches(
    labels: torch.Tensor, n_captions: int, groups: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Split one shuffled epoch into batches of ``groups`` x ``n_captions`` indices.

    Each group holds exactly one image per caption, so within a group every image has a unique
    caption and the CLIP loss has no false negatives (with only 24 captions, a plain random batch
    would be full of duplicate captions treated as negatives).
    """
    per_label = [torch.nonzero(labels == c).flatten() for c in range(n_captions)]
    shuffled = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_label]
    n_groups = min(len(idx) for idx in shuffled)
    # Group g takes the g-th image of every caption, in a random caption order.
    group_list = [
        torch.stack([shuffled[c][g] for c in range(n_captions)])[
            torch.randperm(n_captions, generator=generator)
        ]
        for g in range(n_groups)
    ]
    order = torch.randperm(n_groups, generator=generator).tolist()
    return [
        torch.stack([group_list[i] for i in order[start : start + groups]])
        for start in range(0, n_groups - groups + 1, groups)
    ]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def train(
    model: torch.nn.Module,
    tokenizer: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    groups: int,
    lr: float,
    seed: int,
) -> None:
    """Contrastive CLIP training; each step uses ``groups`` groups of one image per caption."""
    captions = shapes.all_captions()
    tokens = tokenizer(captions)
    loss_fn = open_clip.ClipLoss()
    # No weight decay on gains, biases, embeddings and the temperature, as in open_clip's trainer;
    # the token embedding is excluded too because almost all of its rows never get a gradient.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        excluded = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if excluded else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    generator = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        if not batches:
            batches = grouped_batches(labels, len(captions), groups, generator)
        batch = batches.pop()  # [groups, n_captions] indices into the pool
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 20))

        image_features = model.encode_image(images[batch.flatten()], normalize=True)
        text_features = model.encode_text(tokens, normalize=True)  # all captions, encoded once
        image_features = image_features.view(*batch.shape, -1)
        logit_scale = model.logit_scale.exp()
        loss = torch.stack(
            [
                loss_fn(image_features[g], text_features[labels[batch[g]]], logit_scale)
                for g in range(batch.shape[0])
            ]
        ).mean()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            # Same clamp as open_clip's trainer: temperature never exceeds 100.
            model.logit_scale.clamp_(0, math.log(100))

        if step % 100 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - start
            print(
                f"step {step:5d}/{steps} loss {loss.item():.4f} scale {logit_scale.item():6.2f} {elapsed:6.1f}s"
            )


def save_fixture(model: torch.nn.Module, out: Path) -> Path:
    """Save the state dict with float16 storage (halves the size; load_state_dict upcasts on load)."""
    state = {
        key: value.detach().to(torch.float16) if value.is_floating_point() else value.detach()
        for key, value in model.state_dict().items()
    }
    path = out / f"{MODEL_NAME}.pt"
    torch.save(state, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/clip"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--groups", type=int, default=4, help="groups of one image per caption per step"
    )
    parser.add_argument(
        "--per-caption", type=int, default=400, help="training pool images per caption"
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = args.out / f"{MODEL_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2) + "\n")

    # Build through the same registry path the service uses, so config and weights cannot drift.
    open_clip.add_model_config(config_path)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)

    t0 = time.perf_counter()
    images, labels = build_pool(preprocess, args.per_caption, seed=args.seed)
    t1 = time.perf_counter()
    print(f"pool: {len(labels)} images in {t1 - t0:.1f}s")
    train(
        model,
        tokenizer,
        images,
        labels,
        steps=args.steps,
        groups=args.groups,
        lr=args.lr,
        seed=args.seed,
    )
    t2 = time.perf_counter()
    print(f"training: {t2 - t1:.1f}s (total with data generation {t2 - t0:.1f}s)")

    weights_path = save_fixture(model, args.out)
    size_kb = (weights_path.stat().st_size + config_path.stat().st_size) / 1024
    print(f"wrote {config_path} and {weights_path} ({size_kb:.0f} KiB)")

    # Evaluate the saved fp16 fixture through the service's loading path, not the in-memory model.
    loaded, loaded_preprocess, loaded_tokenizer = load_fixture(args.out)
    print(json.dumps(evaluate(loaded, loaded_preprocess, loaded_tokenizer), indent=2))


if __name__ == "__main__":
    main()
