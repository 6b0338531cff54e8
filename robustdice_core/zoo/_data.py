"""Evaluation data: the scikit-learn digits set (embedded) and ImageNet-style folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustdice_core._cache import hash_tensors
from robustdice_core._errors import CorruptFileError, InvalidParameterError, MissingResourceError

__all__ = ["LabelledImages", "EvalData", "digits_splits", "image_folder_data"]


@dataclass(frozen=True)
class LabelledImages:
    images: Tensor  # [N, C, H, W] float32, already transformed
    labels: Tensor  # [N] int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def fingerprint(self) -> str:
        return hash_tensors({"images": self.images, "labels": self.labels})


@dataclass(frozen=True)
class EvalData:
    """Calibration images (for importance scores) and test images (for accuracy)."""

    name: str
    calibration: LabelledImages
    test: LabelledImages


# Fixed split sizes of the 1,797 digits: train / calibration / test.
DIGITS_CALIBRATION = 256
DIGITS_TEST = 500


def _digits_tensors() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = (images - 0.3) / 0.4  # roughly zero-mean, unit-variance pixels
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return images, labels


def digits_splits() -> tuple[LabelledImages, LabelledImages, LabelledImages]:
    """The fixed (seeded, stratified) train / calibration / test splits of sklearn's digits."""
    from sklearn.model_selection import train_test_split

    images, labels = _digits_tensors()
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=DIGITS_TEST, random_state=0, stratify=labels.numpy()
    )
    train, calib = train_test_split(
        rest, test_size=DIGITS_CALIBRATION, random_state=0, stratify=labels.numpy()[rest]
    )

    def take(idx: np.ndarray) -> LabelledImages:
        tensor_idx = torch.as_tensor(np.sort(idx))
        return LabelledImages(images[tensor_idx], labels[tensor_idx])

    return take(train), take(calib), take(test)


def image_folder_data(
    root: Path,
    transform: Callable[..., Tensor],
    *,
    calibration_size: int,
    test_size: int,
    num_classes: int | None = None,
    seed: int = 0,
) -> EvalData:
    """Calibration and test images drawn (seeded, disjoint) from an ImageFolder tree.

    The class index is torchvision's ``ImageFolder`` order (sorted folder names), which for
    ImageNet's synset folders (n01440764, ...) is the standard 1000-class order.
    """
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise MissingResourceError(
            f"data folder `{root}` does not exist; pass `--data PATH` to an ImageNet-style "
            "folder (one sub-folder of images per class)."
        )
    try:
        dataset = ImageFolder(str(root), transform=transform, allow_empty=True)
    except (FileNotFoundError, RuntimeError) as err:
        raise MissingResourceError(
            f"data folder `{root}` holds no images in class sub-folders ({err}); pass "
            "`--data PATH` to an ImageNet-style folder."
        ) from err
    if num_classes is not None and len(dataset.classes) != num_classes:
        raise InvalidParameterError(
            f"data folder `{root}` has {len(dataset.classes)} class folders but the model "
            f"predicts {num_classes} classes; labels are the sorted folder names' positions, "
            "so every class needs its folder (missing classes may be empty folders)."
        )
    needed = calibration_size + test_size
    if needed > len(dataset):
        raise InvalidParameterError(
            f"`{root}` has {len(dataset)} images but {calibration_size} calibration + "
            f"{test_size} test were asked for; lower `--calibration-size`/`--test-size`."
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))

    def item(index: int) -> tuple[Tensor, int]:
        try:
            return dataset[index]
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise CorruptFileError(
                f"image `{dataset.samples[index][0]}` cannot be read ({err}); remove or "
                "replace it."
            ) from err

    def load(indices: Tensor) -> LabelledImages:
        items = [item(int(i)) for i in indices]
        images = torch.stack([image for image, _ in items])
        labels = torch.as_tensor([label for _, label in items], dtype=torch.int64)
        return LabelledImages(images, labels)

    return EvalData(
        name=f"folder:{root}",
        calibration=load(order[:calibration_size]),
        test=load(order[calibration_size:needed]),
    )
