"""The failure simulation's logits for one failure set (DESIGN 3.5), image by image: what
the runtime must reproduce when the same devices are down (its main test), and the figure
`dse run` prints beside its measured Top-1."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import Partition

__all__ = ["simulated_logits"]


def simulated_logits(
    net: MaskedNetwork, partition: Partition, failed: Iterable[int], images: Tensor
) -> Tensor:
    """Logits of the masked model with the devices ``failed`` down (CDC: a lost slice
    rebuilt from parity as the simulation does); zeros when every device is down."""
    failed_set = tuple(sorted(set(failed)))
    if len(failed_set) == partition.num_devices:
        with torch.inference_mode():
            return torch.zeros_like(net(images[:1])).expand(images.shape[0], -1).clone()
    masks = [torch.from_numpy(m).to(torch.float32) for m in partition.survival_masks([failed_set])]
    recovery = partition.recovery([failed_set])
    specs = (
        None
        if recovery is None
        else [(torch.from_numpy(slices), torch.from_numpy(lost)) for slices, lost in recovery]
    )
    with torch.inference_mode(), net.masked(masks, specs):
        return net(images.clone())
