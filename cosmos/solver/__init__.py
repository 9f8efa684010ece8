from cosmos.solver.param_groups import decays, get_param_groups  # noqa: F401
from cosmos.solver.schedules import Constant, WarmupCosine  # noqa: F401
