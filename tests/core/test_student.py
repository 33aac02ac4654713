import json

import pytest
import torch
from tiny_models import make_tiny_model

from xtc_core.errors import ConfigError, ModelLoadError
from xtc_core.models import load_teacher
from xtc_core.student import (
    apply_quantization,
    build_student,
    default_layers,
    layer_list_path,
    quantized_linears,
    resolve_layers,
)


def test_default_layer_choice_follows_the_paper():
    assert default_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert default_layers(12, 5) == [2, 4, 6, 8, 10]
    assert default_layers(6, 3) == [1, 3, 5]
    assert default_layers(4, 4) == [0, 1, 2, 3]
    assert resolve_layers(None, 12) == [1, 3, 5, 7, 9, 11]
    assert resolve_layers([0, 5], 6) == [0, 5]
    with pytest.raises(ConfigError, match="outside"):
        resolve_layers([0, 6], 6)
    with pytest.raises(ConfigError):
        resolve_layers(7, 6)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_student_copies_mapped_teacher_layers(tmp_path, model_type):
    folder = make_tiny_model(tmp_path / model_type, model_type=model_type)
    teacher = load_teacher(str(folder), num_labels=2, regression=False).model
    student = build_student(teacher, [1, 3])
    prefix = layer_list_path(teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    assert student.config.num_hidden_layers == 2
    for key, value in s_state.items():
        if key.startswith(prefix + "."):
            i, rest = key[len(prefix) + 1:].split(".", 1)
            source = f"{prefix}.{[1, 3][int(i)]}.{rest}"
        else:
            source = key
        assert torch.equal(value, t_state[source]), key
    plan = apply_quantization(student, weight_bits=1, activation_bits=8, weight_groups=1)
    assert len(quantized_linears(student)) == 6 * 2  # Q, K, V, attn out, FFN in, FFN out per layer
    assert len(plan) == 6 * 2 + 1  # + word embeddings, token-wise
    emb = [spec for name, spec in plan.items() if "word_embeddings" in name]
    assert emb and emb[0]["groups"] == student.config.vocab_size
    assert not any("pooler" in n or "classifier" in n for n in plan)
    ids = torch.randint(1000, 2000, (2, 9))
    assert student(input_ids=ids).logits.shape == (2, 2)


def test_headless_model_is_reported_for_stage0(tiny_headless_model_dir, tiny_model_dir):
    assert not load_teacher(str(tiny_headless_model_dir), num_labels=2, regression=False).has_task_head
    assert load_teacher(str(tiny_model_dir), num_labels=2, regression=False).has_task_head
    # a 2-label head asked for a 3-label task is a new head
    assert not load_teacher(str(tiny_model_dir), num_labels=3, regression=False).has_task_head


def test_model_errors_are_clear(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="unknown bundled model"):
        load_teacher("bundled:nope", num_labels=2, regression=False)
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_teacher(str(tmp_path / "missing"), num_labels=2, regression=False)
    with pytest.raises(ModelLoadError, match="unreachable"):  # tests run with HF_HUB_OFFLINE=1
        load_teacher("someone/some-bert", num_labels=2, regression=False)
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelLoadError, match="not supported"):
        load_teacher(str(gpt), num_labels=2, regression=False)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="pickled .bin weights are refused"):
        load_teacher(str(pickled), num_labels=2, regression=False)
