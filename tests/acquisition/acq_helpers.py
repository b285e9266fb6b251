"""Small real models, pools and naive reference computations for the acquisition tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TinyConv3d(nn.Module):
    """conv3d + BN + ReLU(inplace) + maxpool + conv3d + dropout + linear, with features/head."""

    def __init__(self, num_classes: int = 4, box: int = 8, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.BatchNorm3d(4),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(2),
            nn.Conv3d(4, 6, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(1),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(6 * (box // 4) ** 3, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class TinyConv2d(nn.Module):
    """conv2d (grouped, dilated, reflect padding) + BN + PReLU + linear on sequences."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding="same", padding_mode="reflect")
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.PReLU(4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, dilation=2, groups=2, padding=2)
        self.gn = nn.GroupNorm(2, 6)
        self.seq = nn.Linear(6, 5)  # applied on (B, T, 6) tokens
        self.head = nn.Linear(5, num_classes)

    def features(self, x: Tensor) -> Tensor:
        z = self.gn(self.c2(self.act(self.bn(self.c1(x)))))
        tokens = z.flatten(2).transpose(1, 2)  # (B, T, 6)
        return torch.tanh(self.seq(tokens)).mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
    return model


def entropy_loss(z: Tensor) -> Tensor:
    logp = F.log_softmax(z, dim=1)
    return -(logp.exp() * logp).sum(1)


def naive_norms(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    reduction: str = "l2",
    params: list[nn.Parameter] | None = None,
) -> Tensor:
    """Batch-1 loop with torch.autograd.grad: the reference method."""
    model.eval()
    ps = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    out = []
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(loss_fn(model(x[i : i + 1])).sum(), ps, allow_unused=True)
        norms = torch.stack([g.norm() if g is not None else x.new_zeros(()) for g in grads])
        out.append(norms.pow(2).sum().sqrt() if reduction == "l2" else norms.sum())
    return torch.stack(out)


def naive_class_norms(model: nn.Module, x: Tensor, reduction: str = "l2") -> Tensor:
    """(B, C) ‖∇θ CE(f(x_i), y)‖ by a batch-1, class-by-class loop."""
    model.eval()
    n_cls = model(x[:1]).shape[1]
    cols = []
    for y in range(n_cls):

        def ce(z: Tensor, y: int = y) -> Tensor:
            return F.cross_entropy(z, torch.full((z.shape[0],), y), reduction="none")

        cols.append(naive_norms(model, x, ce, reduction))
    return torch.stack(cols, dim=1)


class TensorPool(torch.utils.data.Dataset[tuple[Tensor, int]]):
    """A map-style pool over an in-memory tensor; items are ``(x, -1)`` tuples."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.ids = [f"vol{i:03d}.mrc" for i in range(x.shape[0])]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], -1
