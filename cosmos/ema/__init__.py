"""EMA teacher and momentum schedulers (registered in ``cosmos.registry.EMA_SCHEDULERS``)."""
