"""Child config: imports from the base by file-relative import and mutates what it imported."""
from .base import model, optimizer, train

model.hours = 5
optimizer["lr"] = 5e-4
train["max_iter"] = 200
