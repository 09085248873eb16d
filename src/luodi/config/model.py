"""The `model` section: the architecture (`model.type`), the combiner MLP's layers, and one sub-section per
architecture (mlp, cnn, resnet, rnn, transformer, gpt, hf with its LoRA settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from luodi.config.base import Strict

__all__ = [
    "CNNConfig", "GPTConfig", "HFConfig", "LoRAConfig", "MLPConfig", "ModelConfig", "RNNConfig", "ResNetConfig",
    "TransformerConfig",
]



def positive_channels(sizes: list[int], unit: str) -> list[int]:
    """The CNN's blocks and the ResNet's stages: at least one, each with at least one channel."""
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"give at least one {unit}, each with >= 1 channels")
    return sizes

class MLPConfig(Strict):
    """The combiner MLP: a TabM ensemble (Gorishniy et al. 2025), periodic embeddings of numbers; any model.type.

    `ensemble` members share the hidden layers' weights; each has its own multiplicative adapters and output layer,
    trains on the same batches (the loss is the members' mean) and the prediction is their mean (of probabilities
    for classes)."""

    ensemble: int = Field(1, ge=1, le=64, description="Members of the ensemble (1: one plain MLP; TabM uses 32). "
                          "The hidden layers' compute grows with it, their weights barely.")
    adapters: Literal["layers", "input"] = Field(
        "layers", description="Where members differ: layers (a per-member input and output scaling and bias in every "
        "hidden layer, TabM) or input (one per-member scaling of the MLP's input, TabM-mini).")
    numeric_embedding: Literal["none", "periodic"] = Field(
        "none", description="periodic: each numeric column's normalized value x also enters as a learned vector, "
        "ReLU(Linear(sin(2 pi c x), cos(2 pi c x))) with trainable frequencies c and a Linear of its own per column "
        "(PLR, Gorishniy et al. 2022); beside the value and any piecewise-linear bins.")
    periodic_frequencies: int = Field(16, ge=1, le=256, description="periodic: frequencies c per column.")
    periodic_sigma: float = Field(0.1, gt=0, le=100, description="periodic: the frequencies start from N(0, sigma) "
                                  "(the values are standardized; larger sigma: finer detail, more overfitting).")
    periodic_width: int = Field(16, ge=1, le=256, description="periodic: width of each column's vector.")
    linear: bool = Field(False, description="Wide and deep: also a linear layer from the MLP's input to the outputs, "
                         "its logits added to the hidden layers' (a linear model beside the MLP).")


class CNNConfig(Strict):
    """model.type cnn: conv blocks (conv, batch norm, activation, pooling, dropout), 2-D for images and 1-D for
    sequences, then a pooled vector for the combiner MLP."""

    channels: list[int] = Field(default_factory=lambda: [32, 64], description="Output channels of each conv block.")
    kernel_size: int = Field(3, ge=1, le=31, description="Convolution kernel size (odd keeps the size).")
    convs_per_block: int = Field(1, ge=1, le=4, description="Convolutions in each block before its pooling.")
    batch_norm: bool = Field(True, description="Batch normalization after each convolution.")
    pool: Literal["max", "avg", "none"] = Field("max", description="Pooling (size 2) at the end of each block.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each block.")
    output: Literal["avg", "max", "flatten"] = Field(
        "avg", description="Vector from the last block: global average or max pooling, or flatten every position.")
    channels_last: bool = Field(True, description="Images in channels-last memory layout (faster convolutions on "
                                                  "CPU and tensor cores).")

    @field_validator("channels")
    @classmethod
    def _positive_channels(cls, sizes: list[int]) -> list[int]:
        return positive_channels(sizes, "block")


class ResNetConfig(Strict):
    """model.type resnet: a small residual network for 28-64 px images (stem, stages of basic blocks, the first
    block of each later stage halving the size, global average pooling)."""

    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], description="Channels of each stage.")
    blocks_per_stage: int = Field(2, ge=1, le=8, description="Residual blocks in each stage.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the pooled vector.")
    channels_last: bool = Field(True, description="Images in channels-last memory layout.")

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, sizes: list[int]) -> list[int]:
        return positive_channels(sizes, "stage")


class RNNConfig(Strict):
    """model.type rnn: a recurrent encoder per text (tokens) or sequence feature."""

    cell: Literal["gru", "lstm"] = Field("gru", description="Recurrent cell.")
    layers: int = Field(1, ge=1, le=16, description="Stacked recurrent layers.")
    hidden_size: int = Field(128, ge=1, le=8192, description="Hidden state width per direction.")
    embedding_dim: int = Field(128, ge=1, le=8192, description="Token embedding (or step projection) width.")
    bidirectional: bool = Field(False, description="Also read each sequence backwards.")
    pooling: Literal["last", "mean", "max"] = Field("last", description="How the steps become one vector.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the embeddings and between layers.")


class TransformerConfig(Strict):
    """model.type transformer: a Transformer encoder per text (tokens) or sequence feature."""

    layers: int = Field(2, ge=1, le=48, description="Encoder layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (width must divide by it).")
    width: int = Field(128, ge=8, le=8192, description="Model width (d_model).")
    feedforward: int | None = Field(None, ge=1, description="Feed-forward width; default 4 x width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on embeddings, attention outputs and feed-forward.")
    attention_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on attention weights; 0 lets CPU attention run its fused kernel "
        "(2.6x faster training steps measured at width 64, 256 tokens)."
    )
    positions: Literal["learned", "sinusoidal"] = Field("learned", description="Position embeddings.")
    pooling: Literal["cls", "mean"] = Field("mean", description="cls: a learned summary token; mean: of the steps.")
    norm_first: bool = Field(True, description="Pre-layer-norm (trains more stably) instead of post.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.width % self.heads:
            raise ValueError(f"model.transformer.width {self.width} is not divisible by heads {self.heads}")
        return self


class GPTConfig(Strict):
    """model.type gpt (text_generation): a decoder-only Transformer trained from scratch: pre-norm blocks, rotary
    positions, tied input and output embeddings. Its context is target.text.context_length."""

    layers: int = Field(4, ge=1, le=96, description="Decoder blocks.")
    width: int = Field(256, ge=8, le=16384, description="Model width.")
    heads: int = Field(4, ge=1, le=128, description="Attention heads (width / heads must be even, for rotary).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the residual branches while training.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"model.gpt.width {self.width} / heads {self.heads} must be an even whole number")
        return self


class LoRAConfig(Strict):
    """model.hf.lora (text_generation): train low-rank adapters (PEFT) instead of every weight of the checkpoint."""

    enabled: bool = Field(False, description="Train LoRA adapters; the checkpoint's own weights stay frozen.")
    rank: int = Field(8, ge=1, le=1024, description="Rank of each adapter.")
    alpha: float = Field(16.0, gt=0, description="Scaling: the adapter's update is multiplied by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] | None = Field(None, description="Names of the linear layers to adapt; default: "
                                             "PEFT's choice for the architecture (attention projections).")


class HFConfig(Strict):
    """model.type hf: how the checkpoint in model.path is fine-tuned."""

    freeze: int | Literal["all"] = Field(
        0, description="0 fine-tunes everything; N freezes the embeddings and the lowest N layers; all freezes the "
        "whole encoder (only the layers above it train)."
    )
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="Layer-wise lr: the new layers train at lr, the checkpoint's top layer at "
        "lr x decay, each layer below at one more factor of decay (1.0: off)."
    )
    pooling: Literal["mean", "cls"] = Field("mean", description="mean of the token states, or the first token's.")
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped in the checkpoint folder (auto_map); refused unless true."
    )
    lora: LoRAConfig = Field(default_factory=LoRAConfig)  # type: ignore[arg-type]


class ModelConfig(Strict):
    """The architecture: feature encoders of `type` for image, sequence and text features, then an MLP over
    their outputs, the numeric values and the category embeddings. Tables alone use `mlp`."""

    type: Literal["mlp", "cnn", "resnet", "rnn", "transformer", "hf", "gpt"] = Field(
        "mlp", description="Architecture name: mlp (tables), cnn, resnet, rnn, transformer, hf; gpt (text_generation)."
    )
    path: str | None = Field(
        None, description="hf: local folder of a Hugging Face checkpoint (config.json, safetensors, tokenizer)."
    )
    hidden_sizes: list[int] = Field(default_factory=lambda: [128, 64], description="Width of each hidden layer.")
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field("relu", description="Activation.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    normalization: Literal["none", "batch", "layer"] = Field("none", description="Normalization per hidden layer.")
    mlp: MLPConfig = Field(default_factory=MLPConfig)  # type: ignore[arg-type]
    cnn: CNNConfig = Field(default_factory=CNNConfig)  # type: ignore[arg-type]
    resnet: ResNetConfig = Field(default_factory=ResNetConfig)  # type: ignore[arg-type]
    rnn: RNNConfig = Field(default_factory=RNNConfig)  # type: ignore[arg-type]
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)  # type: ignore[arg-type]
    hf: HFConfig = Field(default_factory=HFConfig)  # type: ignore[arg-type]
    gpt: GPTConfig = Field(default_factory=GPTConfig)  # type: ignore[arg-type]

    @field_validator("hidden_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(size < 1 for size in sizes):
            raise ValueError("every hidden size must be >= 1")
        return sizes

    @model_validator(mode="after")
    def _path_for_hf(self) -> ModelConfig:
        if self.type == "hf" and not self.path:
            raise ValueError("model.type hf needs model.path: the local folder of a Hugging Face checkpoint")
        if self.type != "hf" and self.path is not None:
            raise ValueError(f"model.path is for model.type hf (this model is {self.type!r})")
        return self
