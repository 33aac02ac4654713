"""Recipe options: attention scores captured through the registry, masking, dropout, schedules,
and TinyBERT-style augmentation, on tiny models."""

import copy

import pytest
import torch

from xtc_core.attention import capture_scores, use_scores_attention
from xtc_core.augment import EmbeddingNeighbours, augment_examples, load_mlm
from xtc_core.config import CompressConfig, DataSource, TrainingConfig, budget
from xtc_core.distill import kd_loss, masked_mse
from xtc_core.errors import ConfigError
from xtc_core.pipeline import compress
from xtc_core.student import disable_dropout
from xtc_core.tabular import Example


def _tiny(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, attn_implementation="eager")
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _batch(tok):
    return tok(["a fine movie", "the plot is thin and the acting is worse than bad"], padding=True,
               return_tensors="pt")


def test_scores_are_captured_per_layer_and_match_eager_probabilities(tiny_model_dir):
    model, tok = _tiny(tiny_model_dir)
    model.eval()
    batch = _batch(tok)
    with torch.no_grad():
        ref = model(**batch, output_attentions=True)
        use_scores_attention(model)
        with capture_scores() as scores:
            out = model(**batch)
    assert len(scores) == model.config.num_hidden_layers
    assert torch.allclose(out.logits, ref.logits, atol=1e-6)
    pad = ~batch["attention_mask"].bool()
    for s, probs in zip(scores, ref.attentions, strict=True):
        masked = s.masked_fill(pad[:, None, None, :], torch.finfo(s.dtype).min)
        assert torch.allclose(masked.softmax(-1), probs, atol=1e-6)  # pre-softmax, unmasked scores
    with torch.no_grad():
        model(**batch)  # outside the block nothing is collected
    assert len(scores) == model.config.num_hidden_layers


def test_identical_student_has_zero_kd_loss_only_with_dropout_off(tiny_model_dir):
    model, tok = _tiny(tiny_model_dir)
    batch = _batch(tok)
    layers = list(range(model.config.num_hidden_layers))
    torch.manual_seed(0)
    _, with_dropout = _kd_identical_from(copy.deepcopy(model), copy.deepcopy(model), batch, layers)
    assert with_dropout["hidden"] > 1e-4 and with_dropout["attention"] > 1e-6

    student = copy.deepcopy(model)
    disable_dropout(student)
    model2 = copy.deepcopy(model)
    _, parts = _kd_identical_from(model2, student, batch, layers)
    assert parts["hidden"] < 1e-10 and parts["attention"] < 1e-10 and parts["logits"] >= 0


def _kd_identical_from(teacher, student, batch, layers):
    use_scores_attention(teacher)
    use_scores_attention(student)
    student.train()
    with torch.no_grad(), capture_scores() as t_scores:
        t_out = teacher.eval()(**batch, output_hidden_states=True)
    with capture_scores() as s_scores:
        s_out = student(**batch, output_hidden_states=True)
    return student, kd_loss(s_out, t_out, layers, regression=False, attention_mask=batch["attention_mask"],
                            hidden_mask=True, student_scores=s_scores, teacher_scores=t_scores)[1]


def test_masks_ignore_padding_positions():
    a = torch.zeros(2, 4, 3)
    b = torch.zeros(2, 4, 3)
    b[1, 3] = 5.0  # differs only at a padded token
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]).bool()
    assert masked_mse(a, b, valid[:, :, None]) == 0
    assert masked_mse(a, b, None) > 0


def test_late_kd_weights_and_per_width_learning_rates():
    t = TrainingConfig(kd_late_start=0.5, kd_late_logits=3.0, kd_late_intermediate=0.0, lr=1e-4,
                       quant_lr_w1=3e-4)
    assert t.kd_weights(0.2) == (1.0, 1.0, 1.0)
    assert t.kd_weights(0.75) == pytest.approx((2.0, 0.5, 0.5))
    assert t.kd_weights(1.0) == pytest.approx((3.0, 0.0, 0.0))
    assert TrainingConfig().kd_weights(0.99) == (1.0, 1.0, 1.0)  # off by default
    assert t.stage2_lr(1) == 3e-4 and t.stage2_lr(2) == 1e-4


@pytest.mark.parametrize("bad", [dict(augment=-1), dict(augment=33), dict(augment="2"), dict(augment=True),
                                 dict(augment_prob=0.0), dict(kd_attention_target="x"),
                                 dict(kd_late_start=1.5), dict(quant_lr_w1=0.0)])
def test_invalid_recipe_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        budget("smoke", **bad).validate()


def test_embedding_neighbour_augmentation_is_seeded_and_keeps_labels(tiny_model_dir):
    model, tok = _tiny(tiny_model_dir)
    rows = [Example("the movie is good and the story is great", None, 1),
            Example("a bad film", "with a bad plot", 0)]
    emb = model.get_input_embeddings().weight
    one = augment_examples(rows, tok, copies=2, prob=0.5, neighbors=5, seed=3, embeddings=emb)
    two = augment_examples(rows, tok, copies=2, prob=0.5, neighbors=5, seed=3, embeddings=emb)
    assert one == two and len(one) == 4
    assert [e.label for e in one] == [1, 0, 1, 0]
    assert any(a.text != e.text for a, e in zip(one, rows * 2, strict=True))
    assert one[1].text_pair is not None
    index = EmbeddingNeighbours(emb, tok, 5)
    good = tok.convert_tokens_to_ids("good")
    unit = emb / emb.norm(dim=1, keepdim=True)
    sims = (unit @ unit[good]).tolist()
    nbrs = index(good)
    assert good not in nbrs and len(nbrs) == 5
    assert sims[nbrs[0]] >= max(sims[i] for i in nbrs)  # ordered by similarity


def test_masked_lm_head_is_used_when_present(tmp_path, tiny_model_dir):
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    assert load_mlm(tiny_model_dir) is None  # a sequence classifier has no MLM head
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    mlm = load_mlm(tmp_path / "mlm")
    assert mlm is not None
    rows = [Example("the movie is good and the story is great", None, 1)]
    out = augment_examples(rows, tok, copies=1, prob=1.0, neighbors=3, seed=0, mlm=mlm)
    assert out[0].text != rows[0].text and len(out[0].text.split()) == len(rows[0].text.split())


@pytest.mark.timeout(300)
def test_pipeline_with_augmentation_and_the_reference_recipe(tmp_path, tiny_model_dir, glue_dir):
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    events = []
    training = budget("smoke", max_train_examples=16, max_eval_examples=32, augment=2,
                      kd_attention_target="scores", kd_hidden_mask=True, kd_student_dropout=False,
                      kd_late_start=0.5, kd_late_logits=2.0, quant_lr_w1=2e-4)
    cfg = CompressConfig(model=str(tiny_model_dir), data=data, output_dir=str(tmp_path / "out"),
                         training=training, budget_name="smoke", weight_bits=1, layers=2)
    result = compress(cfg, on_progress=events.append)
    assert any("augmenting" in e.message for e in events)
    assert result.metrics["train_examples"] == 16  # the labelled set; KD stages saw 3x as many rows
    parts = [e.message for e in events if e.stage == "quantization" and "attention=" in e.message]
    assert parts  # the attention term on scores was computed


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "electra"])
def test_scores_capture_works_for_every_supported_encoder_family(tmp_path, model_type):
    from tiny_models import make_tiny_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_tiny_model(tmp_path / model_type, model_type=model_type)
    model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    batch = _batch(tok)
    if model_type == "distilbert":
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        ref = model(**batch).logits
        use_scores_attention(model)
        with capture_scores() as scores:
            out = model(**batch).logits
    assert len(scores) == 4 and torch.allclose(out, ref, atol=1e-6)
