"""load_pretrained / checkpoints against transformers on tiny checkpoints and the real MiniLM teacher."""
from __future__ import annotations

import json

import pytest
import torch

from models.errors import UserError
from models.loading import load_checkpoint, load_pretrained, load_tokenizer, save_checkpoint
from models.teacher import resolve_teacher
from models.variants import InhibitorOptions


def padded_batch(vocab=99, lengths=(10, 7, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), n), generator=g)
    mask = (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, n)
    return ids * mask, mask  # pad id 0 at padded positions


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_distilbert_dir"])
def test_hidden_states_match_transformers(fixture, request):
    """All positions, padded ones included: both sides mask padded keys the same way."""
    from transformers import AutoModel
    folder = request.getfixturevalue(fixture)
    ids, mask = padded_batch()
    with torch.no_grad():
        ref = AutoModel.from_pretrained(folder).eval()(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = load_pretrained(folder, attention="dot").encoder(ids, mask).last_hidden
    assert max_diff(ours, ref) < 1e-5


def test_bert_classifier_logits_match(tiny_bert_cls_dir):
    from transformers import BertForSequenceClassification
    ids, mask = padded_batch(seed=1)
    model = load_pretrained(tiny_bert_cls_dir)
    assert model.cfg.num_labels == 3 and model.cfg.pooler == "bert"
    with torch.no_grad():
        ref = BertForSequenceClassification.from_pretrained(tiny_bert_cls_dir).eval()(ids, attention_mask=mask).logits
        assert max_diff(model(ids, mask), ref) < 1e-5


def test_distilbert_bin_classifier_logits_match(tiny_distilbert_cls_bin_dir):
    from transformers import DistilBertForSequenceClassification
    assert (tiny_distilbert_cls_bin_dir / "pytorch_model.bin").is_file()
    ids, mask = padded_batch(seed=2)
    ref_model = DistilBertForSequenceClassification.from_pretrained(tiny_distilbert_cls_bin_dir).eval()
    with torch.no_grad():
        assert max_diff(load_pretrained(tiny_distilbert_cls_bin_dir)(ids, mask), ref_model(ids, attention_mask=mask).logits) < 1e-5


def test_head_initialised_when_absent_or_relabelled(tiny_distilbert_dir, tiny_bert_cls_dir):
    assert load_pretrained(tiny_distilbert_dir).cfg.num_labels == 2
    reg = load_pretrained(tiny_bert_cls_dir, num_labels=1)
    assert reg.classifier.weight.shape == (1, 32)
    ids, mask = padded_batch()
    assert reg(ids, mask).shape == (3, 1)


def test_variants_load_from_checkpoint(tiny_bert_dir):
    from safetensors.torch import load_file
    hf = load_file(str(tiny_bert_dir / "model.safetensors"))
    inh = load_pretrained(tiny_bert_dir, attention="inhibitor", attention_options=InhibitorOptions(center=True))
    assert torch.equal(inh.encoder.blocks[1].attn.k_lin.weight, hf["encoder.layer.1.attention.self.key.weight"])
    assert inh.cfg.attention_options.center
    sym = load_pretrained(tiny_bert_dir, attention="symmetric")
    attn = sym.encoder.blocks[0].attn
    assert torch.equal(attn.qk_lin.weight, hf["encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(attn.c, torch.ones(4, 8))
    ids, mask = padded_batch()
    for model in (inh, sym):
        assert torch.isfinite(model(ids, mask)).all()


def test_checkpoint_round_trip(tiny_bert_dir, tmp_path):
    model = load_pretrained(tiny_bert_dir, attention="inhibitor", attention_options=InhibitorOptions(signed=True))
    save_checkpoint(model, model.cfg, tmp_path / "ck", extra={"task": "rt"})
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["extra"] == {"task": "rt"}
    assert not list((tmp_path / "ck").glob("*.part"))
    again, cfg = load_checkpoint(tmp_path / "ck")
    assert cfg == model.cfg
    ids, mask = padded_batch()
    with torch.no_grad():
        assert torch.equal(again(ids, mask), model(ids, mask))


@pytest.mark.slow
def test_minilm_teacher_matches_transformers():
    from transformers import BertModel
    folder = resolve_teacher("minilm")
    tok = load_tokenizer(folder)
    batch = tok(teacher_sentences(), padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        ref = BertModel.from_pretrained(folder).eval()(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = load_pretrained(folder).encoder(ids, mask).last_hidden
    assert max_diff(ours, ref) < 1e-4


def teacher_sentences() -> list[str]:
    """32 RT test snippets when the data module provides them, else fixed review-like sentences."""
    try:
        from quant.data.tasks import load_split  # written concurrently; optional here
        texts = [t[0] for t in load_split("rt", "test", limit=32).texts]
        if len(texts) == 32 and all(isinstance(t, str) for t in texts):
            return texts
    except Exception:  # the data module is absent or has another API: fall back
        pass
    base = ["a gripping, beautifully acted drama", "dull and far too long", "the jokes never land",
            "one of the best films of the year", "an uneven but often charming comedy",
            "i wanted to leave after twenty minutes", "visually stunning, emotionally empty",
            "a smart, funny and surprisingly moving film"]
    return [f"{s} ({i})" if i >= len(base) else s for i, s in enumerate(base * 4)]


# ---------------------------------------------------------------- bad inputs

def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_pretrained(tmp_path / "nope")


def test_missing_config(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_pretrained(tmp_path)


def test_no_weights(tmp_path, tiny_bert_dir):
    (tmp_path / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no weights file"):
        load_pretrained(tmp_path)


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="unsupported model_type 'gpt2'.*bert, distilbert"):
        load_pretrained(tmp_path)


def test_unknown_attention(tiny_bert_dir):
    with pytest.raises(UserError, match="unknown attention 'flash'.*dot"):
        load_pretrained(tiny_bert_dir, attention="flash")


def test_shape_mismatch(tmp_path, tiny_bert_dir):
    hf = json.loads((tiny_bert_dir / "config.json").read_text())
    hf["intermediate_size"] = 40
    (tmp_path / "config.json").write_text(json.dumps(hf))
    (tmp_path / "model.safetensors").symlink_to(tiny_bert_dir / "model.safetensors")
    with pytest.raises(UserError, match="shape mismatch for encoder.layer.0.intermediate.dense.weight"):
        load_pretrained(tmp_path)


def test_corrupt_and_incomplete_checkpoints(tmp_path, tiny_bert_dir):
    model = load_pretrained(tiny_bert_dir)
    save_checkpoint(model, model.cfg, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot read"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="not an inhibitor-hwsim checkpoint"):
        load_checkpoint(tiny_bert_dir)


def test_unknown_teacher():
    with pytest.raises(UserError, match="neither a known name.*minilm"):
        resolve_teacher("bert-base-uncased")


def test_quantized_run_folder_is_named_as_such(tmp_path):
    """load_checkpoint on a quantized run says what the folder is and how to load it, instead of
    reporting a state-dict mismatch."""
    from models.config import EncoderConfig
    from models.encoder import SequenceClassifier
    from quant.train.checkpoint import save_quant_run
    from quant.qat.config import QuantConfig
    from quant.qat.model import quantize_model
    cfg = EncoderConfig(vocab_size=30, hidden=8, layers=1, heads=2, ffn=16, max_position=8, activation="relu")
    qmodel = quantize_model(SequenceClassifier(cfg).eval(), QuantConfig())
    save_quant_run(qmodel, cfg, QuantConfig(), tmp_path)
    with pytest.raises(UserError, match=r"quantized run.*load_quant_run.*hwsim export") as err:
        load_checkpoint(tmp_path)
    assert "does not match" not in str(err.value)


def test_atomic_path_removes_only_dead_writers_temporaries(tmp_path):
    import os
    import subprocess
    from models.files import atomic_path
    target = tmp_path / "r.png"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".r.png.{dead.pid}.abc123.part"
    live = tmp_path / f".r.png.{os.getppid()}.def456.part"  # the parent shell/pytest runner is alive
    other = tmp_path / f".s.png.{dead.pid}.abc123.part"      # another target's: not ours to judge here
    for p in (stale, live, other):
        p.write_bytes(b"half")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".r.png.{os.getpid()}.") and tmp.name.endswith(".part")
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and live.exists() and other.exists()
