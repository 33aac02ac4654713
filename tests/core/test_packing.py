import pytest
import torch

from xtc_core.packing import pack_codes, packed_size, unpack_codes


@pytest.mark.parametrize("bits,alphabet", [(1, [-1, 1]), (2, [-1, 0, 1])])
@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (13, 5), (64, 33), (3, 4, 5)])
def test_pack_unpack_is_lossless(bits, alphabet, shape):
    g = torch.Generator().manual_seed(sum(shape) * bits)
    codes = torch.tensor(alphabet, dtype=torch.int8)[torch.randint(len(alphabet), shape, generator=g)]
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    numel = codes.numel()
    assert packed.numel() == (numel * bits + 7) // 8 == packed_size(numel, bits)
    assert torch.equal(unpack_codes(packed, bits, shape), codes)


def test_bit_layout_is_little_endian_within_a_byte():
    assert pack_codes(torch.tensor([1, -1, -1, -1, -1, -1, -1, 1], dtype=torch.int8), 1).item() == 0b10000001
    assert pack_codes(torch.tensor([1, 0, -1, 1], dtype=torch.int8), 2).item() == 0b01_10_00_01


def test_rejects_codes_outside_the_alphabet_and_corrupt_data():
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([0, 1], dtype=torch.int8), 1)
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([2], dtype=torch.int8), 2)
    with pytest.raises(ValueError, match="code word 3"):
        unpack_codes(torch.tensor([0b11], dtype=torch.uint8), 2, (1,))
    with pytest.raises(ValueError, match="do not hold"):
        unpack_codes(torch.zeros(2, dtype=torch.uint8), 1, (3, 8))
