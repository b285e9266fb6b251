"""Dimension-generic building blocks shared by the 2D and 3D networks."""

from __future__ import annotations

from torch import nn

__all__ = ["ConvBNReLU", "ResidualBlock", "adaptive_avg_pool", "max_pool"]

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_BN: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL: dict[int, type[nn.Module]] = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class ConvBNReLU(nn.Sequential):
    """``conv(k, stride) → BatchNorm → ReLU`` with 'same' padding, in 2D or 3D."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            _CONV[dims](c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            _BN[dims](c_out),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): two 3×3(×3) convs plus an identity/1×1 shortcut."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        conv, bn = _CONV[dims], _BN[dims]
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(c_out)
        self.conv2 = conv(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                conv(c_in, c_out, 1, stride=stride, bias=False), bn(c_out)
            )

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def max_pool(dims: int, kernel: int = 2) -> nn.Module:
    """``MaxPool{2,3}d(kernel)``."""
    return _MAXPOOL[dims](kernel)


def adaptive_avg_pool(dims: int) -> nn.Module:
    """Global average pooling to a single voxel/pixel."""
    return _AVGPOOL[dims](1)
