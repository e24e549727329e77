"""JPEG decoding and preprocessing as one batch on a torch device (nvJPEG on CUDA).

On a GPU host the CPU cannot decode JPEGs as fast as the model embeds them; torchvision
decodes a list of JPEGs in one call on the GPU. The resize is torch's antialiased bicubic
(the same a = -0.5 kernel as Pillow's), rounded to 8 bits as Pillow does, then the same
crop and normalisation as `preprocess.to_array`. It runs on the CPU too (`device="cpu"`),
which is how its parity with the Pillow path is tested on machines without a GPU.
"""

from typing import Any

from app.services.clip.preprocess import ImageSpec, crop_box, resized_size


def decode_jpegs(datas: list[bytes], spec: ImageSpec, device: str) -> list[Any]:
    """One (1, 3, height, width) float32 tensor on `device` per JPEG, in order."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    decoded = decode_jpeg(
        encoded, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True
    )
    mean = torch.as_tensor(spec.mean, device=device)
    std = torch.as_tensor(spec.std, device=device)
    mode = {"bicubic": "bicubic", "bilinear": "bilinear"}.get(spec.resample.name.lower())
    if mode is None:
        raise ValueError(f"no device resize for {spec.resample.name} interpolation")
    rows = []
    for image in decoded:
        height, width = image.shape[-2:]
        new_w, new_h = resized_size(width, height, spec)
        pixels = image.unsqueeze(0).float()
        if (new_w, new_h) != (width, height):
            pixels = F.interpolate(
                pixels, size=(new_h, new_w), mode=mode, antialias=True, align_corners=False
            )
            pixels = pixels.round_().clamp_(0, 255)
        left, top, right, bottom = crop_box(new_w, new_h, spec)
        pixels = pixels[:, :, top:bottom, left:right] / 255
        rows.append(((pixels - mean) / std).contiguous())
    return rows
