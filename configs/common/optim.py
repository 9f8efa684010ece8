import torch

from cosmos.config import LazyCall as L
from cosmos.solver import get_param_groups

# AdamW as OpenCLIP / COSMOS: no weight decay on norms, biases, class embedding, logit scales.
AdamW = L(torch.optim.AdamW)(
    params=L(get_param_groups)(model=None, weight_decay=0.2),
    lr=5e-4,
    betas=(0.9, 0.98),
    eps=1e-6,
)
