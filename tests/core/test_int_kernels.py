"""load_compressed(fast=True) computes on integers and agrees with training's arithmetic."""

import pytest
import torch
import torch.nn.functional as F
from test_export_onnx import make_checkpoint

from xtc_core.batches import collate, encode
from xtc_core.checkpoint import ActQuantLinear, load_compressed, load_tokenizer
from xtc_core.int_kernels import Int8Embedding, Int8Linear
from xtc_core.quant import dequantize_weight, fake_quantize_activation, quantize_weight
from xtc_core.tabular import read_glue_file
from xtc_core.tasks import get_task


@pytest.fixture(scope="module")
def sst2_rows(glue_dir):
    return read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[:64]


def _logits(model, ckpt, rows):
    tokenizer = load_tokenizer(ckpt)
    batch, _ = collate(tokenizer, encode(tokenizer, rows, 64), range(len(rows)), "cpu", False)
    with torch.inference_mode():
        return model(**batch).logits


@pytest.mark.parametrize("bits,groups,embedding_bits", [
    (1, 1, None), (2, 1, None), (1, 8, None), (2, 8, None), (2, 8, 8), (1, 1, 4)])
def test_fast_load_computes_on_integers_and_matches_training(tmp_path, tiny_model_dir, sst2_rows,
                                                                bits, groups, embedding_bits):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=bits, groups=groups, act_bits=8,
                           embedding_bits=embedding_bits)
    fast, exact = load_compressed(ckpt, fast=True), load_compressed(ckpt)
    linears = [m for m in fast.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 2 * 6 and not any(isinstance(m, ActQuantLinear) for m in fast.modules())
    assert isinstance(fast.bert.embeddings.word_embeddings, Int8Embedding)
    assert type(fast.classifier) is torch.nn.Linear  # the head stays full precision
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in fast.modules())
    # lighter than the dense model: the quantized matrices are held as int8, not fp32
    def held(model):
        return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])

    dense = sum(t.numel() * t.element_size() for t in exact.state_dict().values())  # the fp32 student
    assert held(fast) < 0.5 * dense, (held(fast), dense)
    assert held(exact) < dense and isinstance(exact.bert.embeddings.word_embeddings, Int8Embedding)
    # every stored weight is what the exact model multiplies by, and the state dict (what
    # save_pretrained writes) is the stock model's, key for key and value for value
    fast_state, exact_state = fast.state_dict(), exact.state_dict()
    assert fast_state.keys() == exact_state.keys()
    assert all(torch.equal(fast_state[k], exact_state[k]) for k in exact_state)
    got, expected = _logits(fast, ckpt, sst2_rows), _logits(exact, ckpt, sst2_rows)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert (got - expected).abs().max() < 1e-3 * max(1.0, float(expected.abs().max()))


def test_int8_linear_is_training_quantizer_times_codes_summed_exactly():
    torch.manual_seed(0)
    w, b = torch.randn(48, 40), torch.randn(48)
    x = torch.randn(3, 7, 40) * torch.logspace(-2, 2, 7)[None, :, None]  # tokens of very different ranges
    codes, scales = quantize_weight(w, 2, 4)
    row_scale = scales.repeat_interleave(48 // 4)
    layer = Int8Linear(codes, row_scale, b, act_bits=8)
    got = layer(x)
    assert got.shape == (3, 7, 48) and got.dtype == torch.float32
    # reference: training's fake-quant codes, the product in float64 (exact for these integers)
    xq = fake_quantize_activation(x, 8).double()
    ref = F.linear(xq, dequantize_weight(codes, scales, 4).double(), b.double())
    assert torch.allclose(got.double(), ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))
    assert layer(torch.zeros(0, 40)).shape == (0, 48)
    # where no integer kernel runs (a module moved to CUDA after loading; no GPU here, so the device
    # check is patched) the same values in fp32
    from unittest import mock

    with mock.patch("xtc_core.int_kernels.integer_matmul_available", return_value=False):
        assert torch.allclose(layer(x), got, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # and training's own fp32 emulation is within float rounding of it
    emulated = F.linear(fake_quantize_activation(x, 8), dequantize_weight(codes, scales, 4), b)
    assert torch.allclose(got, emulated, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_int8_embedding_rows_are_bit_identical():
    torch.manual_seed(1)
    table = torch.randn(50, 16)
    codes, scales = quantize_weight(table, 1, 50)
    emb = Int8Embedding(codes, scales, padding_idx=0)
    ids = torch.tensor([[0, 5, 49], [3, 3, 7]])
    assert torch.equal(emb(ids), F.embedding(ids, dequantize_weight(codes, scales, 50)))


def test_integer_modules_refuse_what_they_cannot_compute():
    codes = torch.ones(4, 3, dtype=torch.int8)
    with pytest.raises(ValueError, match="at most 8 bits"):
        Int8Linear(codes, torch.ones(4), None, act_bits=16)
    with pytest.raises(ValueError, match="int8 codes"):
        Int8Linear(codes.float(), torch.ones(4), None, act_bits=8)
    with pytest.raises(ValueError, match="one fp32 scale per row"):
        Int8Embedding(codes, torch.ones(3), None)


def test_float_activation_checkpoints_load_dense(tmp_path, tiny_model_dir, sst2_rows):
    """Without 8-bit activations there is no integer product to run: fast=True loads the dense model."""
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=None)
    model = load_compressed(ckpt, fast=True)
    assert not any(isinstance(m, (Int8Linear, ActQuantLinear)) for m in model.modules())
    assert torch.equal(_logits(model, ckpt, sst2_rows), _logits(load_compressed(ckpt), ckpt, sst2_rows))


def test_inference_activation_quantizer_is_bit_identical_to_training(tmp_path, tiny_model_dir, sst2_rows):
    """The default (exact) loader quantizes activations as training does, with or without grad."""
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=2, groups=1, act_bits=8)
    layer = next(m for m in load_compressed(ckpt).modules() if isinstance(m, ActQuantLinear))
    torch.manual_seed(3)
    x = torch.randn(5, 9, layer.in_features) * torch.logspace(-3, 3, 9)[None, :, None]
    x[0, 0] = 0.0  # an all-zero token: the scale's clamp
    with torch.no_grad():
        fast_path = layer(x)
    with torch.enable_grad():
        training_path = layer(x)
    assert torch.equal(fast_path, training_path.detach())
    assert torch.equal(fast_path, F.linear(fake_quantize_activation(x, 8), layer.weight, layer.bias))
