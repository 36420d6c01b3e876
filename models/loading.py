"""Load Hugging Face BERT / DistilBERT folders into our encoder; save and load our own checkpoints.

Hugging Face folders: `config.json` plus `model.safetensors` or `pytorch_model.bin` (the latter read
only with `torch.load(weights_only=True)`). Our checkpoints: `model.safetensors` plus a `config.json`
holding our `EncoderConfig` under the key "encoder_config" (and optional "extra").
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models import variants
from models.attention import attention_class
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from models.errors import UserError
from models.files import atomic_path, write_text_atomic

SUPPORTED_MODEL_TYPES = ("bert", "distilbert")
QUANT_RUN_FORMAT = "inhibitor-hwsim-quant"  # config.json "format" of a quantized run (quant.train.checkpoint)
HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}  # HF 'gelu' is the exact erf form, like ours


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path} not found: a model folder needs a config.json next to its weights")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); restore or re-save the model folder") from err
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return data


def _check_dir(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist; pass a folder holding config.json and weights "
                        f"(or 'minilm' where a teacher name is accepted)")
    return folder


# ------------------------------------------------------------------ Hugging Face -> EncoderConfig

def config_from_hf(hf: dict[str, Any], attention: str, num_labels: int, **overrides: Any) -> EncoderConfig:
    """Our config for a Hugging Face `bert` / `distilbert` config.json dict."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(f"unsupported model_type {model_type!r} in config.json: supported are "
                        f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    variants.get(attention)  # UserError naming the registered variants
    act_key = "hidden_act" if model_type == "bert" else "activation"
    act = hf.get(act_key, "gelu")
    if act not in HF_ACTIVATIONS:
        raise UserError(f"unsupported {act_key} {act!r} in config.json: supported are {', '.join(HF_ACTIVATIONS)}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"unsupported position_embedding_type {hf['position_embedding_type']!r}: only 'absolute'")
    try:
        fields = _hf_fields(hf, model_type)
    except KeyError as err:
        raise UserError(f"config.json lacks {err.args[0]!r}, which a {model_type} config needs; "
                        f"re-save the model with save_pretrained") from err
    cfg = EncoderConfig(max_position=hf.get("max_position_embeddings", 512), activation=HF_ACTIVATIONS[act],
                        attention=attention, num_labels=num_labels, pad_token_id=hf.get("pad_token_id") or 0,
                        **fields)
    return cfg.replace(**overrides) if overrides else cfg


def _hf_fields(hf: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The architecture fields of our config, read from a Hugging Face config.json dict."""
    if model_type == "bert":
        return dict(vocab_size=hf["vocab_size"], hidden=hf["hidden_size"], layers=hf["num_hidden_layers"],
                    heads=hf["num_attention_heads"], ffn=hf["intermediate_size"],
                    type_vocab_size=hf.get("type_vocab_size", 2), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                    dropout=hf.get("hidden_dropout_prob", 0.1),
                    attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), pooler="bert")
    return dict(vocab_size=hf["vocab_size"], hidden=hf["dim"], layers=hf["n_layers"], heads=hf["n_heads"],
                ffn=hf["hidden_dim"], type_vocab_size=0, layer_norm_eps=1e-12,  # fixed in DistilBERT
                dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
                pooler="distilbert")


# ------------------------------------------------------------------ Hugging Face weight names -> ours

def _layer_names(model_type: str, i: int) -> dict[str, str]:
    """Our module prefix -> the checkpoint's module prefix, for block i (attention as in `dot`)."""
    if model_type == "bert":
        p = f"encoder.layer.{i}."
        return {"attn.q_lin": p + "attention.self.query", "attn.k_lin": p + "attention.self.key",
                "attn.v_lin": p + "attention.self.value", "attn.out_lin": p + "attention.output.dense",
                "attn_norm": p + "attention.output.LayerNorm", "ffn.lin1": p + "intermediate.dense",
                "ffn.lin2": p + "output.dense", "ffn_norm": p + "output.LayerNorm"}
    p = f"transformer.layer.{i}."
    return {"attn.q_lin": p + "attention.q_lin", "attn.k_lin": p + "attention.k_lin",
            "attn.v_lin": p + "attention.v_lin", "attn.out_lin": p + "attention.out_lin",
            "attn_norm": p + "sa_layer_norm", "ffn.lin1": p + "ffn.lin1", "ffn.lin2": p + "ffn.lin2",
            "ffn_norm": p + "output_layer_norm"}


def hf_name_map(cfg: EncoderConfig, model_type: str) -> dict[str, str]:
    """Our module prefix -> the checkpoint's (unprefixed) module prefix, for the encoder and head.

    The attention variant names (or drops) the checkpoint's attention modules (`Attention.from_dot_name`):
    `symmetric` takes its shared projection `qk_lin` from the checkpoint's QUERY weights and has no keys.
    """
    variant = attention_class(cfg.attention)
    names = {"encoder.embeddings.word": "embeddings.word_embeddings",
             "encoder.embeddings.position": "embeddings.position_embeddings",
             "encoder.embeddings.norm": "embeddings.LayerNorm"}
    if cfg.type_vocab_size:
        names["encoder.embeddings.token_type"] = "embeddings.token_type_embeddings"
    for i in range(cfg.layers):
        for ours, theirs in _layer_names(model_type, i).items():
            if ours.startswith("attn."):
                local = variant.from_dot_name(ours[len("attn."):])
                if local is None:
                    continue
                ours = f"attn.{local}"
            names[f"encoder.blocks.{i}.{ours}"] = theirs
    names["pool"] = "pooler.dense" if model_type == "bert" else "pre_classifier"
    names["classifier"] = "classifier"
    return names


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    try:
        if st.is_file():
            return load_file(str(st))
        if pt.is_file():
            return torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or truncated file: any reader error means the same to the user
        raise UserError(f"cannot read the weights in {folder} ({type(err).__name__}: {err}); "
                        f"re-save or re-download the model") from err
    raise UserError(f"no weights file in {folder}: expected model.safetensors or pytorch_model.bin "
                    f"(sharded checkpoints: re-save with save_pretrained(max_shard_size='10GB'))")


def _strip_prefix(weights: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Drop the 'bert.' / 'distilbert.' prefix that *ForSequenceClassification checkpoints carry."""
    prefix = f"{model_type}."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in weights.items()}


def _fix_legacy(name: str) -> str:
    """Old TF-converted BERT checkpoints name LayerNorm parameters gamma/beta."""
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def load_pretrained(path: str | os.PathLike, attention: str = "dot", num_labels: int | None = None,
                    **overrides: Any) -> SequenceClassifier:
    """A `SequenceClassifier` from a Hugging Face `bert` or `distilbert` folder.

    Encoder weights are copied from the checkpoint for every attention variant: `dot` and `inhibitor`
    take q/k/v/out as they are; `symmetric` initialises its shared projection `qk_lin` from the
    checkpoint's QUERY weights (the key weights are dropped) and its coefficient c to 1.
    The head (pooler / pre_classifier and classifier) is loaded when the checkpoint has it; a
    classifier whose label count differs from `num_labels` is initialised afresh, and so is any missing
    head part. `num_labels` defaults to the checkpoint classifier's, else 2. `overrides` are
    `EncoderConfig` fields (e.g. attention_options=InhibitorOptions(center=False), dropout=0.0). Returns
    the model in eval mode.
    """
    folder = _check_dir(path)
    hf = _read_json(folder / "config.json")
    if "encoder_config" in hf:
        raise UserError(f"{folder} is an inhibitor-hwsim checkpoint, not a Hugging Face folder: "
                        f"use load_checkpoint")
    model_type = hf.get("model_type")
    config_from_hf(hf, attention, 2)  # validates model_type and attention before reading weights
    weights = {_fix_legacy(k): v for k, v in _strip_prefix(_read_weights(folder), model_type).items()}
    ckpt_labels = weights["classifier.weight"].shape[0] if "classifier.weight" in weights else None
    labels = num_labels or ckpt_labels or 2
    cfg = config_from_hf(hf, attention, labels, **overrides)
    model = SequenceClassifier(cfg)
    own = model.state_dict()
    state, missing = {}, []
    for ours, theirs in hf_name_map(cfg, model_type).items():
        for leaf in ("weight", "bias"):
            if f"{ours}.{leaf}" not in own:
                continue  # embeddings have no bias
            src = weights.get(f"{theirs}.{leaf}")
            optional = ours == "pool" or ours == "classifier"
            if src is None:
                if not optional:
                    missing.append(f"{theirs}.{leaf}")
                continue
            if src.shape != own[f"{ours}.{leaf}"].shape:
                if ours == "classifier" and num_labels and ckpt_labels != num_labels:
                    continue  # a new task: fresh classifier
                raise UserError(f"shape mismatch for {theirs}.{leaf}: checkpoint {tuple(src.shape)}, "
                                f"config.json implies {tuple(own[f'{ours}.{leaf}'].shape)}; "
                                f"the weights do not belong to this config.json")
            state[f"{ours}.{leaf}"] = src.to(own[f"{ours}.{leaf}"].dtype)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise UserError(f"{folder} lacks weights the {model_type} config needs: {shown}; "
                        f"is this a {model_type} checkpoint?")
    model.load_state_dict(state, strict=False)
    return model.eval()


def load_tokenizer(path: str | os.PathLike):
    """The Hugging Face tokenizer stored in the model folder (`AutoTokenizer`)."""
    from transformers import AutoTokenizer
    folder = _check_dir(path)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise UserError(f"no usable tokenizer in {folder} ({err}); save one there with "
                        f"tokenizer.save_pretrained") from err


# ------------------------------------------------------------------ our own checkpoints

def save_checkpoint(model: SequenceClassifier, cfg: EncoderConfig, out_dir: str | os.PathLike,
                    tokenizer=None, extra: dict[str, Any] | None = None) -> Path:
    """Write model.safetensors and config.json ({"encoder_config": ..., "extra": ...}) into `out_dir`.

    Every file appears atomically; the tokenizer (if given) is saved to a temporary folder first and
    its files moved in. config.json is written last, so a folder with it is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    if tokenizer is not None:
        with tempfile.TemporaryDirectory(dir=out) as tmp_dir:
            tokenizer.save_pretrained(tmp_dir)
            for f in Path(tmp_dir).iterdir():
                if f.is_file():
                    os.replace(f, out / f.name)
                else:
                    shutil.rmtree(out / f.name, ignore_errors=True)
                    os.replace(f, out / f.name)
    meta = {"format": "inhibitor-hwsim", "encoder_config": cfg.to_dict(), "extra": extra or {}}
    write_text_atomic(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return out


def load_checkpoint(path: str | os.PathLike) -> tuple[SequenceClassifier, EncoderConfig]:
    """(model in eval mode, config) from a folder written by `save_checkpoint`."""
    folder = _check_dir(path)
    meta = _read_json(folder / "config.json")
    if meta.get("format") == QUANT_RUN_FORMAT:
        raise UserError(f"{folder} holds a quantized run (config.json format {QUANT_RUN_FORMAT!r}), not a float "
                        f"checkpoint: load it with quant.train.checkpoint.load_quant_run, or export it with "
                        f"`hwsim export {folder} --out MODEL.onnx`")
    if "encoder_config" not in meta:
        raise UserError(f"{folder}/config.json has no 'encoder_config': not an inhibitor-hwsim checkpoint "
                        f"(for a Hugging Face folder use load_pretrained)")
    cfg = EncoderConfig.from_dict(meta["encoder_config"])
    weights_path = folder / "model.safetensors"
    if not weights_path.is_file():
        raise UserError(f"{weights_path} not found; the checkpoint is incomplete, save it again")
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise UserError(f"cannot read {weights_path} ({type(err).__name__}: {err}); save the checkpoint again") from err
    model = SequenceClassifier(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(f"{weights_path} does not match its config.json ({str(err).splitlines()[0]}...); "
                        f"save the checkpoint again") from err
    return model.eval(), cfg
