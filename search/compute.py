"""The compute of a proxy run (docs: theory §6): MACs per token of the proxy MLP and training FLOPs.

A token is one example. The proxy MLP ``d_in → width → … → width → d_out`` spends
``d_in·width`` MACs in its dense input layer, each structured hidden layer's own MACs, and
``width·d_out`` in its readout (biases and nonlinearities are not counted, nor is
evaluation). A training step of batch ``b`` costs ``6 × MACs-per-token × b`` FLOPs
(forward, and the two backward products).

Examples:
    >>> mlp_macs_per_token(8, 1, 16, 2, 256)  # dense hidden layers of width 16
    656
    >>> step_flops(656, 64)
    251904.0
"""

from __future__ import annotations

__all__ = ["mlp_macs_per_token", "step_flops"]


def mlp_macs_per_token(d_in: int, d_out: int, width: int, depth: int, hidden_macs: float) -> int:
    """MACs per example of the proxy MLP: ``d_in·width + depth·hidden_macs + width·d_out``.

    Examples:
        >>> mlp_macs_per_token(8, 1, 16, 0, 0)  # no hidden layers: input layer and readout
        144
    """
    return int(d_in * width + depth * hidden_macs + width * d_out)


def step_flops(macs_per_token: float, batch_size: int) -> float:
    """Training FLOPs of one optimizer step: ``6 × macs_per_token × batch_size``.

    Examples:
        >>> step_flops(100, 2)
        1200.0
    """
    return 6.0 * macs_per_token * batch_size
