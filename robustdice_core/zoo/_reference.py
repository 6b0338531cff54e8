"""Three small reference CNNs for 8x8 digits, one per family of the paper's models."""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn
from torchvision.models.convnext import CNBlock, LayerNorm2d

__all__ = ["DigitsAlexNet", "DigitsVGGBN", "DigitsConvNeXt"]


class DigitsAlexNet(nn.Module):
    """Plain conv + ReLU + max-pool, then dropout / fully connected layers (AlexNet-like)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(96, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.3),
            nn.Linear(64 * 2 * 2, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DigitsVGGBN(nn.Module):
    """Stacked conv + BatchNorm + ReLU blocks, then an FC classifier (VGG16-BN-like)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(1, 32),
            *_conv_bn(32, 32),
            nn.MaxPool2d(2),
            *_conv_bn(32, 64),
            *_conv_bn(64, 64),
            nn.MaxPool2d(2),
            *_conv_bn(64, 128),
        )
        self.classifier = nn.Sequential(
            nn.Linear(128 * 2 * 2, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class DigitsConvNeXt(nn.Module):
    """torchvision's ConvNeXt blocks (depthwise conv, LayerNorm, inverted MLP, layer scale,
    residual) at digits scale: a 2x2 patchify stem, two stages, a LayerNorm head."""

    def __init__(self, num_classes: int = 10, dims: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        block = partial(CNBlock, layer_scale=0.1, stochastic_depth_prob=0.0, norm_layer=norm)
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, dims[0], 2, stride=2), LayerNorm2d(dims[0], eps=1e-6)),
            nn.Sequential(block(dims[0]), block(dims[0])),
            nn.Sequential(LayerNorm2d(dims[0], eps=1e-6), nn.Conv2d(dims[0], dims[1], 2, 2)),
            nn.Sequential(block(dims[1]), block(dims[1])),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[1], num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))
