"""The course's challenge score (seed 000, session 8): lower is better; the leaderboard ranks on it and the
`challenge_score` check grades it. w parameters, f MACs, q_w / q_a bits of the weights / activations, p_s / p_u
structured / unstructured sparsity, all measured from the exported model (harness/measure.py, harness/compression.py).
"""
from __future__ import annotations

REFERENCE_PARAMS, REFERENCE_MACS = 5.6e6, 2.8e8  # ResNet18-CIFAR (11,173,962 params, ~5.55e8 MACs) at 16 bits
FULL_BITS = 32  # float32: q / FULL_BITS = 1


def score_terms(params: float, macs: float, weight_bits: float, activation_bits: float,
                structured_sparsity: float = 0.0, unstructured_sparsity: float = 0.0) -> tuple[float, float]:
    """(the weights' term, the MACs' term) of the score."""
    p_s, p_u = structured_sparsity, unstructured_sparsity
    return ((1 - p_s - p_u) * (weight_bits / FULL_BITS) * params / REFERENCE_PARAMS,
            (1 - p_s) * (max(weight_bits, activation_bits) / FULL_BITS) * macs / REFERENCE_MACS)


def challenge_score(params: float, macs: float, weight_bits: float, activation_bits: float,
                    structured_sparsity: float = 0.0, unstructured_sparsity: float = 0.0) -> float:
    return sum(score_terms(params, macs, weight_bits, activation_bits, structured_sparsity, unstructured_sparsity))
