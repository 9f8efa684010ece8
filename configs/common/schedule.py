from cosmos.config import LazyCall as L
from cosmos.solver import WarmupCosine

# lr = optimizer.lr × lr_multiplier(step): linear warmup then cosine to 0 at train.max_iter.
lr_multiplier = L(WarmupCosine)(total_steps="${train.max_iter}", warmup_steps=100, final_value=0.0)
