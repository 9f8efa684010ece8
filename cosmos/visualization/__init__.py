"""Figures of runs and trained models (PNG, matplotlib Agg). Import the submodules directly, e.g.
``from cosmos.visualization.attention import render_attention``."""
