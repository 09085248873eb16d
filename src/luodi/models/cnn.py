"""Convolutional feature encoders: `cnn` (plain conv blocks) and `resnet` (a small residual network), each 2-D for
images and 1-D for numeric sequences, registered per modality in models/__init__.py.

A body takes (batch, channels, *spatial) and returns a vector (batch, output_size) for the combiner MLP.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from luodi.config import CNNConfig, ModelConfig, ResNetConfig
from luodi.models.mlp import ACTIVATIONS
from luodi.models.vision import FeatureEncoder, ImageInput, SequenceInput


def _layers(dims: int) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(Conv, BatchNorm, MaxPool, AvgPool, Dropout, AdaptiveAvgPool) for 1-D or 2-D inputs."""
    if dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.Dropout1d, nn.AdaptiveAvgPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout2d, nn.AdaptiveAvgPool2d


class ConvNet(nn.Module):
    """Blocks of [conv -> batch norm -> activation] x convs_per_block -> pool 2 -> dropout, then a vector.

    Pooling is skipped once a side is down to 1, so the same config runs on 8x8 digits and 64x64 photos.
    """

    def __init__(self, config: CNNConfig, activation: str, in_channels: int, spatial: tuple[int, ...]):
        super().__init__()
        conv, norm, max_pool, avg_pool, dropout, _ = _layers(len(spatial))
        layers: list[nn.Module] = []
        channels, size = in_channels, list(spatial)
        for width in config.channels:
            for _ in range(config.convs_per_block):
                layers.append(conv(channels, width, config.kernel_size, padding=config.kernel_size // 2,
                                   bias=not config.batch_norm))
                if config.batch_norm:
                    layers.append(norm(width))
                layers.append(ACTIVATIONS[activation]())
                channels = width
                size = [side + 2 * (config.kernel_size // 2) - config.kernel_size + 1 for side in size]
            if config.pool != "none" and min(size) >= 2:
                layers.append((max_pool if config.pool == "max" else avg_pool)(2))
                size = [side // 2 for side in size]
            if config.dropout:
                layers.append(dropout(config.dropout))
        self.blocks = nn.Sequential(*layers)
        self.output = config.output
        self.output_size = channels * math.prod(size) if config.output == "flatten" else channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)  # (batch, channels, *spatial)
        if self.output == "flatten":
            if x.requires_grad and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
                x = ChannelsLastGrad.apply(x)
            return x.flatten(1)
        spatial = tuple(range(2, x.dim()))
        return x.amax(dim=spatial) if self.output == "max" else x.mean(dim=spatial)


class ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in channels-last layout.

    Flattening a channels-last activation for a linear layer copies it into (channels, height, width) order, and
    the gradient comes back in that order: the pooling and convolution below then convert it to their layout
    first. Converting once here cost 0.1 ms, against 2.2 ms a step in max-pool's backward alone on the
    CIFAR-shaped CNN (64 x 32 x 32 x 32, 2 CPU threads).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


class BasicBlock(nn.Module):
    """Two 3-wide convolutions with batch norm and a shortcut (a strided 1-wide conv when the shape changes)."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, stride: int, activation: str):
        super().__init__()
        conv, norm, *_ = _layers(dims)
        self.main = nn.Sequential(
            conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), norm(out_channels),
            ACTIVATIONS[activation](),
            conv(out_channels, out_channels, 3, padding=1, bias=False), norm(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride=stride, bias=False),
                                          norm(out_channels))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.main(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, then stages of basic blocks (each later stage starts with stride 2), global average pooling."""

    def __init__(self, config: ResNetConfig, activation: str, in_channels: int, spatial: tuple[int, ...]):
        super().__init__()
        conv, norm, *_, pool = _layers(len(spatial))
        widths = config.widths
        layers: list[nn.Module] = [conv(in_channels, widths[0], 3, padding=1, bias=False), norm(widths[0]),
                                   ACTIVATIONS[activation]()]
        channels, side = widths[0], min(spatial)
        for stage, width in enumerate(widths):
            for block in range(config.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 and side >= 2 else 1
                layers.append(BasicBlock(len(spatial), channels, width, stride, activation))
                channels, side = width, (side + 1) // stride
        layers += [pool(1), nn.Flatten(), nn.Dropout(config.dropout)]
        self.layers = nn.Sequential(*layers)
        self.output_size = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _image(body_class: Any, section: str) -> Any:
    def build(config: ModelConfig, encoder: Any) -> nn.Module:
        settings = getattr(config, section)
        body = body_class(settings, config.activation, encoder.channels, (encoder.height, encoder.width))
        if settings.channels_last:
            body = body.to(memory_format=torch.channels_last)
        prepare = ImageInput(encoder, encoder.config.augment, settings.channels_last)
        return FeatureEncoder(encoder.name, prepare, body)

    return build


def _sequence(body_class: Any, section: str) -> Any:
    def build(config: ModelConfig, encoder: Any) -> nn.Module:
        body = body_class(getattr(config, section), config.activation, encoder.channels, (encoder.length,))
        return FeatureEncoder(encoder.name, SequenceInput(), body)

    return build


# Registered in models/__init__.py as FEATURE_ENCODERS["cnn"] and FEATURE_ENCODERS["resnet"].
CNN_BUILDERS = {"image": _image(ConvNet, "cnn"), "sequence": _sequence(ConvNet, "cnn")}
RESNET_BUILDERS = {"image": _image(ResNet, "resnet"), "sequence": _sequence(ResNet, "resnet")}
