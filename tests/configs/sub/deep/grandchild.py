"""Config two folders below the base, using multi-dot relative imports."""
from ... import child
from ...base import model
from ..common import dataloader

model.days = 7
dataloader["batch_size"] = 64
extra = dict(child_max_iter=child.train["max_iter"])
