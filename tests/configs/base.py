"""Base test config: plain data plus LazyCall nodes with standard-library targets."""
from datetime import timedelta

from cosmos.config import LazyCall as L

model = L(timedelta)(days=1, hours=2)
optimizer = dict(lr=1e-3, betas=[0.9, 0.98], weight_decay=0.05)
train = dict(max_iter=100, output_dir="/tmp/cosmos-test", amp=True, log=dict(period=20))

_private = dict(hidden=True)  # leading underscore: not part of the config
not_a_node = 3  # scalars at top level are not part of the config
