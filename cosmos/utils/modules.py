"""A module's state for a call: where its parameters live, and eval mode with its mode restored."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter; the CPU for a module without parameters."""
    param = next(iter(module.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; its own mode is restored after, also when the
    block raises."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
