"""The paper's published numbers, kept here so a fresh clone has them (source:
``../shared/paper/*.csv``, transcribed from the paper's tables and text; a test checks the
copy against those files when they are present).

The paper ran torchvision's ImageNet-1K models on Jetson Xavier NX boards; the embedded
digits models are small analogues of the same families, so for them only the *trends*
(orderings, ratios) are comparable, never the values.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustdice_core.zoo import split_seed

__all__ = [
    "PAPER_COUNTERPART",
    "PAPER_FIG4_ALEXNET",
    "PAPER_OPTIMAL_ALEXNET",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PaperResources",
    "paper_model",
]

# our model -> the paper's model of the same family
PAPER_COUNTERPART = {
    "digits-alexnet": "alexnet",
    "digits-vgg-bn": "vgg16_bn",
    "digits-convnext": "convnext_tiny",
    "alexnet": "alexnet",
    "vgg16_bn": "vgg16_bn",
    "convnext_tiny": "convnext_tiny",
}


def paper_model(model: str) -> str | None:
    """The paper's model for a registered name (seed suffixes ignored); None if none."""
    return PAPER_COUNTERPART.get(split_seed(model).base)


# Table 1: Top-1 % with one failed device of 4 (SysConf4D), by importance-score subset.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "alexnet": {
        "s1": 43.718,
        "s2": 43.642,
        "s3": 43.432,
        "s1+s2": 51.268,
        "s1+s3": 51.658,
        "s2+s3": 51.250,
        "s1+s2+s3": 52.396,
    },
    "vgg16_bn": {
        "s1": 60.426,
        "s2": 58.920,
        "s3": 59.942,
        "s1+s2": 69.152,
        "s1+s3": 71.736,
        "s2+s3": 67.360,
        "s1+s2+s3": 72.500,
    },
    "convnext_tiny": {
        "s1": 76.618,
        "s2": 75.904,
        "s3": 76.134,
        "s1+s2": 76.678,
        "s1+s3": 76.580,
        "s2+s3": 76.572,
        "s1+s2+s3": 76.820,
    },
}

# Fig. 4(a), quoted in the text: AlexNet on 4 devices, Top-1 % by failed devices. LOP is the
# paper's optimistic choice (the devices with the least important neurons fail).
PAPER_OPTIMAL_ALEXNET = 56.55
PAPER_FIG4_ALEXNET: dict[str, dict[int, float]] = {
    "robustdice": {1: 52.40, 2: 45.28, 3: 28.93},
    "lop": {1: 41.07, 2: 23.50, 3: 6.42},
}


@dataclass(frozen=True)
class PaperResources:
    """One row of Table 2 (measured on 4 Jetson Xavier NX over a Gigabit switch)."""

    max_energy_j: float
    fps: float
    max_memory_mb: float


# Table 2, by the paper's model and system configuration.
PAPER_TABLE2: dict[str, dict[str, PaperResources]] = {
    "alexnet": {
        "QMR/TMR/DMR": PaperResources(0.179, 46.255, 150.914),
        "CDC-SysConf3D": PaperResources(0.165, 43.670, 94.117),
        "CDC-SysConf4D": PaperResources(0.157, 45.587, 78.852),
        "Robust-SysConf2D": PaperResources(0.159, 48.214, 99.254),
        "Robust-SysConf3D": PaperResources(0.148, 50.045, 80.777),
        "Robust-SysConf4D": PaperResources(0.142, 51.219, 72.801),
    },
    "vgg16_bn": {
        "QMR/TMR/DMR": PaperResources(0.850, 10.744, 429.215),
        "CDC-SysConf3D": PaperResources(0.809, 10.634, 313.688),
        "CDC-SysConf4D": PaperResources(0.799, 10.485, 272.293),
        "Robust-SysConf2D": PaperResources(0.826, 10.761, 328.426),
        "Robust-SysConf3D": PaperResources(0.799, 10.993, 295.086),
        "Robust-SysConf4D": PaperResources(0.779, 11.078, 267.395),
    },
    "convnext_tiny": {
        "QMR/TMR/DMR": PaperResources(0.308, 28.223, 88.895),
        "CDC-SysConf3D": PaperResources(0.307, 27.107, 69.129),
        "CDC-SysConf4D": PaperResources(0.297, 28.248, 59.961),
        "Robust-SysConf2D": PaperResources(0.301, 28.044, 76.465),
        "Robust-SysConf3D": PaperResources(0.296, 28.415, 65.203),
        "Robust-SysConf4D": PaperResources(0.288, 29.034, 58.090),
    },
}
