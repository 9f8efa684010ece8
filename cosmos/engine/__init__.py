from cosmos.engine.hooks import (  # noqa: F401
    EvalHook, LogitScaleClamp, NaNGuard, ParamSchedule, PeriodicCheckpointer, PeriodicWriter)
from cosmos.engine.trainer import HookBase, Trainer  # noqa: F401
