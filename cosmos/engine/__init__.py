from cosmos.engine.hooks import (  # noqa: F401
    EvalHook, LogitScaleClamp, NaNGuard, ParamSchedule, PeriodicCheckpointer, PeriodicWriter)
from cosmos.engine.ema_hook import EMAHook  # noqa: F401
from cosmos.engine.hook_base import HookBase  # noqa: F401
from cosmos.engine.trainer import Trainer  # noqa: F401
