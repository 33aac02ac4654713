import pytest
import torch

from xtc_core.packing import pack_codes, packed_size, unpack_codes


@pytest.mark.parametrize("bits,alphabet", [(1, [-1, 1]), (2, [-1, 0, 1]), (4, list(range(-7, 8))),
                                           (8, list(range(-127, 128)))])
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
    # 4 and 8 bits: two's complement words, low nibble first
    assert pack_codes(torch.tensor([-1, 3], dtype=torch.int8), 4).item() == 0x3F
    assert pack_codes(torch.tensor([-127, 5], dtype=torch.int8), 8).tolist() == [0x81, 0x05]


def test_rejects_codes_outside_the_alphabet_and_corrupt_data():
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([0, 1], dtype=torch.int8), 1)
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([2], dtype=torch.int8), 2)
    with pytest.raises(ValueError, match="code word 3"):
        unpack_codes(torch.tensor([0b11], dtype=torch.uint8), 2, (1,))
    with pytest.raises(ValueError, match="do not hold"):
        unpack_codes(torch.zeros(2, dtype=torch.uint8), 1, (3, 8))
    # symmetric codes: +-qmax is the range, the most negative word is never written
    with pytest.raises(ValueError, match=r"\[-7, 7\]"):
        pack_codes(torch.tensor([-8], dtype=torch.int8), 4)
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        pack_codes(torch.tensor([-128], dtype=torch.int8), 8)
    with pytest.raises(ValueError, match="code -8"):
        unpack_codes(torch.tensor([0x80], dtype=torch.uint8), 4, (2,))
    with pytest.raises(ValueError, match="code -128"):
        unpack_codes(torch.tensor([0x80], dtype=torch.uint8), 8, (1,))
    with pytest.raises(ValueError, match="can pack 1, 2, 4, 8 bits"):
        pack_codes(torch.tensor([1], dtype=torch.int8), 3)
