"""A small, well-tuned CNN in plain PyTorch: the image baseline that issue 14 holds luodi's default within 2 points of.

What a practitioner who knows small-image training writes by hand, fitted on every training image (luodi's config
holds 30% of them out for validation and its own test): two conv blocks (conv 3x3, batch norm, ReLU, max pool) of 32
and 64 channels, flattened into a hidden layer of 128 with dropout 0.3; random shifts of up to a tenth of the side
(at least one pixel) with zero padding; AdamW (lr 3e-3, weight decay 5e-4) under a one-cycle schedule for a fixed
30 epochs; cross entropy with label smoothing 0.1; batch 64; per-channel standardization from the training images.
No flips or rotations: they are not safe for every image set (a mirrored 2 is not a 2).

Used by benchmarks/quality.py (and so quality_holdout.py) and benchmarks/init_variants.py with scikit-learn's
interface: `fit(x, y)` / `predict(x)` on pixels flattened and scaled to 0-1, reshaped with the `shape` given.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SmallCNNClassifier:
    """The baseline, as a scikit-learn-style estimator over flattened (rows, h*w*channels) pixels in 0-1."""

    def __init__(self, shape: tuple[int, ...], epochs: int = 30, batch_size: int = 64, lr: float = 3e-3,
                 weight_decay: float = 5e-4, label_smoothing: float = 0.1, seed: int = 0):
        self.shape = shape  # (h, w) or (h, w, channels), as the images were before flattening
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.weight_decay, self.label_smoothing, self.seed = weight_decay, label_smoothing, seed

    def _tensor(self, x: np.ndarray) -> Any:
        import torch

        height, width = self.shape[:2]
        channels = self.shape[2] if len(self.shape) == 3 else 1
        images = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), height, width, channels)
        return (images.permute(0, 3, 1, 2) - self.mean) / self.std  # (rows, channels, h, w)

    def _network(self, channels: int, height: int, width: int, classes: int) -> Any:
        from torch import nn

        layers: list[nn.Module] = []
        inputs = channels
        for out in (32, 64):
            layers += [nn.Conv2d(inputs, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            inputs = out
        return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.3), nn.Linear(inputs * height * width, 128),
                             nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, classes))

    def fit(self, x: np.ndarray, y: np.ndarray) -> SmallCNNClassifier:
        import torch
        from torch.nn import functional as F

        torch.manual_seed(self.seed)
        generator = np.random.default_rng(self.seed)
        self.classes_, codes = np.unique(y, return_inverse=True)
        channels = self.shape[2] if len(self.shape) == 3 else 1
        pixels = np.asarray(x, dtype=np.float32).reshape(len(x), -1, channels)
        self.mean = torch.as_tensor(pixels.mean(axis=(0, 1))).view(1, channels, 1, 1)
        self.std = torch.as_tensor(pixels.std(axis=(0, 1)) + 1e-6).view(1, channels, 1, 1)
        images, targets = self._tensor(x), torch.as_tensor(codes)
        height, width = images.shape[2:]
        self.model = self._network(channels, height, width, len(self.classes_))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = -(-len(images) // self.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.lr, total_steps=self.epochs * steps)
        pad = max(1, min(height, width) // 10)
        self.model.train()
        for _ in range(self.epochs):
            order = torch.as_tensor(generator.permutation(len(images)))
            for start in range(0, len(images), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = _shift(images[rows], pad, generator)
                loss = F.cross_entropy(self.model(batch), targets[rows], label_smoothing=self.label_smoothing)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            logits = torch.cat([self.model(batch) for batch in self._tensor(x).split(512)])
        return np.asarray(self.classes_[logits.argmax(1).numpy()])


def _shift(images: Any, pad: int, generator: np.random.Generator) -> Any:
    """Each image moved by up to `pad` pixels each way, zeros (the mean, after standardization) filling in."""
    import torch
    from torch.nn import functional as F

    rows, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    shifts = generator.integers(0, 2 * pad + 1, (rows, 2))
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(shifts)])
