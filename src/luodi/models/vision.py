"""Model inputs for images and numeric sequences: what turns the encoders' arrays into a convolution's input.

Images arrive as the cached uint8 batch (batch, channels, height, width); `ImageInput` scales them to 0-1, applies
the training-only augmentation on the whole batch at once (one affine resampling for crop, flip and rotation),
then normalizes with the training split's per-channel statistics. Doing this in the model, on the batch tensor,
keeps the dataset a compact uint8 array, runs on the GPU when training does, and gives evaluation and
prediction exactly the same preprocessing (without augmentation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from luodi.config import AugmentConfig


def augment(images: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Random crop with zero padding, horizontal flip and rotation of a float batch (batch, channels, h, w).

    Every image gets its own draw. The draws come from torch's CPU generator whatever the device, so they are
    part of a checkpoint's RNG state and a resumed run augments exactly as an uninterrupted one.
    """
    rows, _, height, width = images.shape
    angle = (torch.rand(rows) * 2 - 1) * math.radians(config.rotation)
    flip = torch.where(torch.rand(rows) < 0.5, -1.0, 1.0) if config.horizontal_flip else torch.ones(rows)
    pad = config.crop_padding
    shift_x = torch.randint(-pad, pad + 1, (rows,)).float() if pad else torch.zeros(rows)
    shift_y = torch.randint(-pad, pad + 1, (rows,)).float() if pad else torch.zeros(rows)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel -> input pixel, in the normalized [-1, 1] coordinates of affine_grid: rotation in pixel space
    # (hence the aspect ratios), the flip applied first, shifts of whole pixels (2 / size per pixel).
    theta = torch.stack([
        torch.stack([cos * flip, -sin * height / width, 2 * shift_x / width], dim=1),
        torch.stack([sin * flip * width / height, cos, 2 * shift_y / height], dim=1),
    ], dim=1).to(images.device, images.dtype)  # (batch, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ImageInput(nn.Module):
    """uint8 (batch, channels, height, width) -> normalized float, augmented in training mode."""

    def __init__(self, encoder: Any, augment_config: AugmentConfig, channels_last: bool):
        super().__init__()
        shape = (1, encoder.channels, 1, 1)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        # Not persistent: the statistics belong to the feature state in package.json, not to the weights.
        self.register_buffer("mean", torch.tensor(encoder.mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(encoder.std, dtype=torch.float32).view(shape), persistent=False)
        self.augment = augment_config
        self.active = bool(augment_config.crop_padding or augment_config.horizontal_flip or augment_config.rotation)
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0  # (batch, channels, height, width)
        if self.training and self.active:
            x = augment(x, self.augment)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class FeatureEncoder(nn.Module):
    """Reads one feature's input from the batch dict and returns (batch, output_size): the combiner's contract."""

    def __init__(self, name: str, prepare: nn.Module, body: nn.Module):
        super().__init__()
        self.name = name
        self.prepare = prepare
        self.body = body
        self.output_size: int = getattr(body, "output_size")  # noqa: B009 - nn.Module's __getattr__ types it a Module

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(self.prepare(batch[self.name]))


class SequenceInput(nn.Module):
    """float (batch, length, channels) -> (batch, channels, length), the layout of a 1-D convolution."""

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        return sequences.transpose(1, 2)
