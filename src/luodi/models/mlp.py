"""The combiner MLP: dense features, category embeddings and one vector per feature encoder (CNN, RNN, ...)
concatenated, then configurable hidden layers and the output layer, optionally as a parameter-efficient ensemble.

A table alone is just this MLP; an image or text model is the same MLP over its feature encoders' outputs, so
mixed tables (an image or text column beside numeric and category columns) need nothing more.

`model.mlp.ensemble: k` (k > 1) makes the hidden layers and the head a TabM ensemble (Gorishniy et al., ICLR 2025,
"TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling"; BatchEnsemble, Wen et al. 2020): the
k members share every hidden layer's weight matrix; each has its own scalings and biases (`adapters: layers`, TabM)
or only its own scaling of the input (`adapters: input`, TabM-mini), and its own output layer. The first scaling
starts at random signs, so the members differ from the first step. In training the model returns every member's
logits (batch, k, outputs) and `MemberLoss` averages the task's loss over the members (each is trained on the same
batch); in eval mode it returns one row of logits per input row whose activation is the members' mean prediction
(mean probability for classes, mean value for regression), so inference, export and explanations see a plain model.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from luodi.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
}
Combine = Literal["mean", "softmax", "sigmoid"]  # how members' logits become one prediction: the task's activation


def _output_size(encoder: nn.Module) -> int:
    size = getattr(encoder, "output_size", None)
    if not isinstance(size, int):
        raise TypeError(f"feature encoder {type(encoder).__name__} has no integer output_size")
    return size


def _uniform(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1 / math.sqrt(fan_in)  # nn.Linear's default range
    return nn.init.uniform_(tensor, -bound, bound)


def _random_signs(tensor: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return tensor.copy_(torch.randint(0, 2, tensor.shape).to(tensor) * 2 - 1)


class Members(nn.Module):
    """(batch, width) -> (batch, k, width): the row once per member, each scaled elementwise by its own vector
    (random signs at first) when `scaled` (TabM-mini's only per-member parameters before the shared layers)."""

    def __init__(self, members: int, width: int, scaled: bool):
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(_random_signs(torch.empty(members, width))) if scaled else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return hidden.unsqueeze(1).expand(-1, self.members, -1)
        return hidden.unsqueeze(1) * self.weight


class BatchEnsembleLinear(nn.Module):
    """(batch, k, in) -> (batch, k, out): one weight matrix shared by the k members, each with its own input scaling
    r, output scaling s and bias: ((x * r) @ W.T) * s + b. TabM's initialization: r random signs in the first layer
    and ones after it, s ones, every member's bias the same draw of nn.Linear's."""

    def __init__(self, in_features: int, out_features: int, members: int, first: bool):
        super().__init__()
        self.weight = nn.Parameter(_uniform(torch.empty(out_features, in_features), in_features))
        self.r = nn.Parameter(_random_signs(torch.empty(members, in_features)) if first
                              else torch.ones(members, in_features))
        self.s = nn.Parameter(torch.ones(members, out_features))
        self.bias = nn.Parameter(_uniform(torch.empty(out_features), in_features).repeat(members, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden * self.r) @ self.weight.T * self.s + self.bias


class EnsembleLinear(nn.Module):
    """(batch, k, in) -> (batch, k, out): k independent linear layers, one per member (the members' heads)."""

    def __init__(self, in_features: int, out_features: int, members: int):
        super().__init__()
        self.weight = nn.Parameter(_uniform(torch.empty(members, in_features, out_features), in_features))
        self.bias = nn.Parameter(_uniform(torch.empty(members, out_features), in_features))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bki,kio->bko", hidden, self.weight) + self.bias


class PeriodicEmbedding(nn.Module):
    """(batch, width) -> (batch, width + columns * out_width): the input as it is, then, for each numeric column
    (its normalized value x at `columns[i]`), ReLU(W_i [sin(2 pi c_i x), cos(2 pi c_i x)] + b_i) with the column's own
    trainable frequencies c_i (from N(0, sigma)) and linear layer (PLR, Gorishniy et al. 2022, "On Embeddings for
    Numerical Features in Tabular Deep Learning"). The first layer of the MLP's body, so explanations, which
    attribute to the body's input, still see one number per numeric column."""

    columns: torch.Tensor  # the numeric values' columns of the input (a buffer, rebuilt from the pipeline)

    def __init__(self, columns: list[int], frequencies: int, sigma: float, out_width: int):
        super().__init__()
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        count = len(columns)
        self.frequencies = nn.Parameter(torch.randn(count, frequencies) * sigma)
        self.weight = nn.Parameter(_uniform(torch.empty(count, 2 * frequencies, out_width), 2 * frequencies))
        self.bias = nn.Parameter(_uniform(torch.empty(count, out_width), 2 * frequencies))
        self.added = count * out_width

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        values = hidden.index_select(1, self.columns)  # (batch, columns)
        angles = 2 * math.pi * values.unsqueeze(-1) * self.frequencies  # (batch, columns, frequencies)
        periodic = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (batch, columns, 2 * frequencies)
        embedded = torch.relu(torch.einsum("bnf,nfo->bno", periodic, self.weight) + self.bias)
        return torch.cat([hidden, embedded.flatten(1)], dim=1)


class MemberBatchNorm(nn.BatchNorm1d):
    """Batch norm over (batch, k, width): the statistics of all members' rows together (shared, as the weights)."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden.flatten(0, 1)).view_as(hidden)


def combine_members(logits: torch.Tensor, combine: Combine) -> torch.Tensor:
    """(batch, k, outputs) member logits -> (batch, outputs) logits whose activation is the members' mean:
    log of the mean probability (softmax), logit of the mean probability (sigmoid), or the mean (regression)."""
    if combine == "mean":
        return logits.mean(dim=1)
    log_k = math.log(logits.shape[1])
    if combine == "softmax":
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - log_k
    positive = torch.logsumexp(nn.functional.logsigmoid(logits), dim=1) - log_k  # log mean P(positive)
    negative = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=1) - log_k  # log mean P(negative)
    return positive - negative


class MemberLoss(nn.Module):
    """The task's loss averaged over an ensemble's members: (batch, k, outputs) logits against (batch, ...) targets,
    each member scored on every row. A combined (batch, outputs) output (eval mode) is scored as it is."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 3:
            return self.loss(logits, target)
        members = logits.shape[1]
        return self.loss(logits.flatten(0, 1), target.repeat_interleave(members, dim=0))


def training_loss(model: nn.Module, loss: nn.Module) -> nn.Module:
    """The loss a model trains on: the task's, averaged over members when the model is an ensemble."""
    return MemberLoss(loss) if getattr(model, "members", 1) > 1 else loss


class MLP(nn.Module):
    """inputs['dense'] (batch, dense_width) float, inputs['categorical'] (batch, n_categories) int and whatever
    each feature encoder reads (`encoder(inputs)` -> (batch, encoder.output_size)) -> logits (batch, output_size);
    with `model.mlp.ensemble: k > 1`, (batch, k, output_size) in training mode (see the module docstring).
    """

    def __init__(self, config: ModelConfig, dense_width: int, categories: list[tuple[int, int]], output_size: int,
                 encoders: list[nn.Module] | None = None, combine: Combine = "mean", numeric: list[int] | None = None):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(cardinality, dim) for cardinality, dim in categories)
        # A list, not a ModuleDict: feature names may hold '.', which module names may not.
        encoders = encoders or []
        self.encoders = nn.ModuleList(encoders)
        self.dense_width = dense_width
        self.members, self.combine = config.mlp.ensemble, combine
        width = dense_width + sum(dim for _, dim in categories) + sum(_output_size(e) for e in encoders)
        if width == 0:
            raise ValueError("the model has no inputs")
        # model.mlp.linear: the input's linear model beside the hidden layers, its logits added (wide and deep)
        self.linear = nn.Linear(width, output_size) if config.mlp.linear else None
        ensemble, every_layer = self.members > 1, config.mlp.adapters == "layers"
        layers: list[nn.Module] = []
        mlp = config.mlp
        if mlp.numeric_embedding == "periodic" and numeric:  # numeric: the numeric values' columns of `dense`
            periodic = PeriodicEmbedding(numeric, mlp.periodic_frequencies, mlp.periodic_sigma, mlp.periodic_width)
            layers.append(periodic)
            width += periodic.added
        if ensemble:  # the body's input stays (batch, width): explanations attribute to it
            layers.append(Members(self.members, width, scaled=not every_layer))
        for index, size in enumerate(config.hidden_sizes):
            layers.append(BatchEnsembleLinear(width, size, self.members, first=index == 0)
                          if ensemble and every_layer else nn.Linear(width, size))
            if config.normalization == "batch":
                layers.append(MemberBatchNorm(size) if ensemble else nn.BatchNorm1d(size))
            elif config.normalization == "layer":
                layers.append(nn.LayerNorm(size))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head: nn.Module = EnsembleLinear(width, output_size, self.members) if ensemble else nn.Linear(
            width, output_size)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [inputs["dense"]] if self.dense_width else []
        if self.embeddings:
            categorical = inputs["categorical"]  # (batch, n_categories)
            parts += [embedding(categorical[:, index]) for index, embedding in enumerate(self.embeddings)]
        parts += [encoder(inputs) for encoder in self.encoders]
        hidden = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (batch, width)
        logits = self.head(self.body(hidden))  # (batch, output_size), or (batch, k, output_size) for k members
        if self.linear is not None:  # wide and deep: the input's linear model's logits, the same for every member
            wide = self.linear(hidden)  # (batch, output_size)
            logits = logits + (wide if self.members == 1 else wide.unsqueeze(1))
        if self.members == 1 or self.training:
            return logits
        return combine_members(logits, self.combine)
