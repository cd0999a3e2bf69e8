"""Population heads: one softmax over (age group x class), read per age group.

In the training data age and source predict the class (every child is from one hospital, every
COVID-19 film is an adult's), so a single head can call a film COVID-19 because it looks adult.
A run trained with age heads has ``len(age_heads) x len(classes)`` logits, one block per age
group, trained so that each image's target lies in its own group's block. Within a block the
age group is constant, so age cannot stand in for a class there:

* age group known (DICOM, or given by a person): the class logits are that group's block, and
  their softmax is P(class | image, age group);
* not known: the class logits are the log-sum-exp over the blocks, whose softmax is the
  marginal P(class | image), and P(age group | image) is the blocks' share of the mass.

The functions take and return backend tensors or NumPy arrays (``keras.ops``), so training's
NumPy evaluation and the predictor's compiled graph compute exactly the same thing.
"""

from __future__ import annotations

import numpy as np
from keras import ops


def _blocks(raw_logits, n_groups: int, n_classes: int):
    return ops.reshape(raw_logits, (-1, n_groups, n_classes))


def class_logits(raw_logits, populations, n_groups: int, n_classes: int):
    """(N, G*C) block logits and (N,) int population indices (UNKNOWN: marginal) -> (N, C)."""
    blocks = _blocks(raw_logits, n_groups, n_classes)
    marginal = ops.logsumexp(blocks, axis=1)
    known = ops.maximum(ops.cast(populations, "int32"), 0)
    own = ops.take_along_axis(blocks, ops.reshape(known, (-1, 1, 1)) * ops.ones_like(
        blocks[:, :1, :], dtype="int32"), axis=1)[:, 0, :]
    is_known = ops.reshape(ops.cast(populations, "int32") >= 0, (-1, 1))
    return ops.where(is_known, own, marginal)


def age_probabilities(raw_logits, n_groups: int, n_classes: int):
    """(N, G*C) block logits -> (N, G) the model's estimate of each age group (all ones for a
    model without age heads: there is nothing to estimate)."""
    masses = ops.logsumexp(_blocks(raw_logits, n_groups, n_classes), axis=2)
    return ops.ones_like(masses) if n_groups == 1 else ops.softmax(masses, axis=-1)


def block_targets(allowed, populations, n_groups: int):
    """(N, C) allowed-class masks and (N,) population indices -> (N, G*C) training targets:
    each image's allowed classes, in its own age group's block only."""
    allowed = np.asarray(allowed)
    targets = np.zeros((len(allowed), n_groups, allowed.shape[1]), dtype=allowed.dtype)
    targets[np.arange(len(allowed)), np.asarray(populations)] = allowed
    return targets.reshape(len(allowed), -1)
