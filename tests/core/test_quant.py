import pytest
import torch

from xtc_core.quant import (
    binarize,
    dequantize_weight,
    fake_quantize_activation,
    fake_quantize_weight,
    groups_for,
    quantize_weight,
    ternarize,
)


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_binary_weights_are_plus_minus_alpha_per_group(groups):
    w = torch.randn(16, 24)
    q = binarize(w, groups)
    for wg, qg in zip(w.reshape(groups, -1), q.reshape(groups, -1), strict=True):
        alpha = wg.abs().double().mean().float()  # fp64 mean rounded once: thread-count independent
        assert torch.equal(qg.abs(), torch.full_like(qg, alpha.item()))
        assert torch.equal(torch.sign(qg), torch.where(wg >= 0, 1.0, -1.0))


def test_binary_zero_weight_gets_a_sign():
    q = binarize(torch.tensor([[0.0, 1.0, -3.0, 0.0]]))
    assert torch.equal(q, torch.tensor([[1.0, 1.0, -1.0, 1.0]]))  # alpha = 1, sign(0) = +1


@pytest.mark.parametrize("groups", [1, 8])
def test_ternary_weights_are_in_minus_alpha_zero_alpha(groups):
    w = torch.randn(8, 32)
    q = ternarize(w, groups)
    for wg, qg in zip(w.reshape(groups, -1), q.reshape(groups, -1), strict=True):
        delta = 0.7 * wg.abs().mean()
        keep = wg.abs() > delta
        # exactly three values: one alpha per group, the mean magnitude of the kept weights
        alpha = qg.abs().max()
        assert set(qg.unique().tolist()) <= {-alpha.item(), 0.0, alpha.item()}
        assert torch.isclose(alpha, wg.abs()[keep].mean(), rtol=1e-6)
        assert torch.equal(qg == 0, ~keep)
        assert torch.equal(qg[keep], torch.sign(wg[keep]) * alpha)


def test_ternary_hand_computed():
    w = torch.tensor([[0.1, -2.0, 3.0, 0.9]])  # mean|w| = 1.5, delta = 1.05 -> keep -2, 3; alpha = 2.5
    assert torch.equal(ternarize(w), torch.tensor([[0.0, -2.5, 2.5, 0.0]]))


@pytest.mark.parametrize("fn", [binarize, ternarize])
def test_straight_through_gradient(fn):
    w = torch.randn(6, 10, requires_grad=True)
    upstream = torch.randn(6, 10)
    (fn(w, 2) * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)


def test_activation_quant_levels_per_token_and_ste():
    x = torch.randn(3, 5, 64, requires_grad=True)
    q = fake_quantize_activation(x, 8)
    scale = x.detach().abs().amax(-1, keepdim=True) / 127
    levels = q.detach() / scale
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert levels.abs().max() <= 127 + 1e-4
    assert torch.allclose(q, x, atol=float(scale.max()) / 2 + 1e-6)
    # one token's result does not depend on the others (batch-independent evaluation)
    assert torch.equal(fake_quantize_activation(x[1:2, 2:3], 8), q[1:2, 2:3])


def test_quantize_dequantize_reproduces_fake_quant_forward_exactly():
    w = torch.randn(32, 48)
    for bits in (1, 2):
        codes, scales = quantize_weight(w, bits, 4)
        fq = binarize(w, 4) if bits == 1 else ternarize(w, 4)
        assert torch.equal(dequantize_weight(codes, scales, 4), fq)
    for bits in (4, 8):
        codes, scales = quantize_weight(w, bits, 32)
        fq = fake_quantize_weight(w, bits, 32)
        assert torch.equal(dequantize_weight(codes, scales, 32), fq)
        # down to the sign bit: small negative weights give +0.0 in both, as their code 0 does
        assert torch.equal(torch.signbit(dequantize_weight(codes, scales, 32)), torch.signbit(fq))
        assert bool((codes == 0).any())


@pytest.mark.parametrize("bits", [4, 8])
def test_multi_bit_codes_are_symmetric_per_row_with_max_abs_scale(bits):
    qmax = 2 ** (bits - 1) - 1
    w = torch.randn(20, 40)
    w[5] = 0.0  # an all-zero row: codes 0, not 0/0
    codes, scales = quantize_weight(w, bits, 20)
    assert codes.dtype == torch.int8 and int(codes.abs().max()) == qmax
    assert torch.equal(codes[5], torch.zeros(40, dtype=torch.int8))
    expected = w.abs().amax(dim=1).double() / qmax
    assert torch.equal(scales[torch.arange(20) != 5], expected.float()[torch.arange(20) != 5])
    # each row's extreme weight is represented exactly at +-qmax; error at most half a step elsewhere
    err = (dequantize_weight(codes, scales, 20) - w).abs()
    assert bool((err <= scales[:, None] / 2 * (1 + 1e-6)).all())
    # more bits, less error, same rows
    assert err.mean() < (dequantize_weight(*quantize_weight(w, 2, 20), 20) - w).abs().mean()


def test_hand_computed_4_bit_row():
    w = torch.tensor([[0.7, -0.35, 0.05, 0.0]])  # scale 0.1: codes 7, -4 (-3.5 to even), 0 (0.5), 0
    codes, scales = quantize_weight(w, 4, 1)
    assert codes.tolist() == [[7, -4, 0, 0]] and scales.tolist() == pytest.approx([0.1])


def test_groups_never_straddle_rows():
    w = torch.empty(12, 7)
    assert groups_for(w, 5, per_row=False) == 4  # largest divisor of 12 not above 5
    assert groups_for(w, 1, per_row=True) == 12
    with pytest.raises(ValueError):
        quantize_weight(torch.randn(5, 3), 1, 4)
    with pytest.raises(ValueError):
        quantize_weight(torch.randn(4, 4), 3, 1)


def test_training_embedding_lookup_quantizes_rows_like_the_full_matrix():
    from torch import nn

    from xtc_core.quant import quantize_module_weight

    for bits in (1, 2, 4, 8):
        emb = nn.Embedding(50, 16)
        quantize_module_weight(emb, bits, 50)  # token-wise: one scale per row
        ids = torch.tensor([[3, 7, 7, 49], [0, 1, 2, 3]])
        emb.train()
        fast = emb(ids)  # quantizes only the looked-up rows
        emb.eval()
        full = emb(ids)  # looks up rows of the fully quantized matrix (what export stores)
        assert torch.allclose(fast, full, rtol=1e-6, atol=0)
        if bits <= 2:
            assert set(full[0, 1].abs().tolist()) <= {0.0, full[0, 1].abs().max().item()}
        else:
            assert len(set(full[0, 1].abs().tolist())) > 2
        emb.train()
        emb(ids).sum().backward()
        grad = emb.parametrizations.weight.original.grad
        assert torch.equal(grad[7], torch.full((16,), 2.0)) and torch.equal(grad[10], torch.zeros(16))
