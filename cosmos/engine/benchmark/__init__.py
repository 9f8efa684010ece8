"""Benchmarks of the training step and of the towers: the logic behind ``tools/benchmark.py``.

One module per job:

- :mod:`.records`: what a run measures (settings, result rows, the step report) and the
  summaries shared by every timed setting (pairs/s, MFU, an error's first line);
- :mod:`.clock`: timestamps on the device's timeline, timing of repeated calls, memory release;
- :mod:`.batches`: synthetic batches with the structure of a config's loader;
- :mod:`.flops`: FLOP counting with fvcore (2 FLOPs per multiply-add);
- :mod:`.step_timer`: step boundaries and the phases of a trainer's step;
- :mod:`.step`: the config's complete training step in a real trainer;
- :mod:`.openclip`: OpenCLIP's CLIP training step, the reference in the same process;
- :mod:`.towers`: forward + backward of one tower per attention backend;
- :mod:`.tables`: the results as markdown tables;
- :mod:`.shards`: synthetic JPEG shards for the loader benchmarks.
"""
