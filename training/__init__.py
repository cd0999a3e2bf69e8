"""Builds the chest X-ray model: data, backbones, the two-stage schedule, evaluation and the CLI."""
