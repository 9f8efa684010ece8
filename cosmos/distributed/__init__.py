"""Below the engine: the process environment and group (``env``), FSDP wrapping and
consolidated train state (``fsdp``), stop requests from signals (``preemption``).
Knows no model classes: backbones declare their FSDP units with ``fsdp_units()``."""
