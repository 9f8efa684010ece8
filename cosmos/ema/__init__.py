"""EMA teacher and momentum schedulers (registered in ``cosmos.registry.EMA_SCHEDULERS``)."""
from cosmos.ema.schedulers import ConstantMomentum, CosineMomentum  # noqa: F401
from cosmos.ema.teacher import ema_update, make_teacher  # noqa: F401
