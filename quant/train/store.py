"""Offline distillation: the teacher's outputs on the training data, computed once and memory-mapped.

Everything a student's training reads from its teacher is a function of (teacher weights, example):
the logits, the hidden states (embeddings output and every block's output) and every block's
attention context, all in eval mode (no dropout). `TeacherStore` holds them for every distinct
example of the training data (transfer set included) and answers `forward_all(input_ids, mask)` like
the teacher does, so the training step (`quant.train.loop`), the layer-by-layer init and the
inhibitor calibration (`quant.train.distill`) read it instead of running the teacher. Stored outputs
equal online ones up to the float rounding of other batch shapes (tests/test_store.py).

A store is a folder of .npy files, ragged by true length (padding is not stored), float32:
    ids.npy       int32 (T,)           token ids of every stored example, concatenated
    offsets.npy   int64 (N + 1,)       example r is tokens offsets[r]:offsets[r + 1]
    logits.npy    float32 (N, C)
    hidden.npy    float32 (T, L + 1, D) hidden states 0..L at each token
    contexts.npy  float32 (T, L, D)    attention contexts of blocks 0..L-1 at each token
    fingerprint.json                   what it was computed from, and each file's size and CRC-32
(T tokens, N distinct examples, L layers, width D, C labels.) The fingerprint is a digest of the
teacher (`model_digest`: its config and every tensor), of the training data (`data_digest`: every
example's token ids, in order) and the truncation length; the store of a fingerprint lives in the
subfolder named by its key (`fingerprint_key`), built in a temporary folder and renamed into place.

`open_store(path, ...)`: `path` is either a store folder (it holds fingerprint.json), used only if its
fingerprint and files are intact, else refused (UserError naming the folder: delete it); or a parent
cache folder, whose subfolder for the fingerprint is used, built when missing and rebuilt when damaged.
The MiniLM teacher on the RT training split (10,296 snippets, 26.9 tokens on average) makes a
store of about 5.5 GB.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.config import EncoderConfig
from models.encoder import EncoderOutput
from models.errors import UserError
from models.files import process_alive, write_text_atomic

STORE_FORMAT = 1
FINGERPRINT = "fingerprint.json"
ARRAYS = ("ids", "offsets", "logits", "hidden", "contexts")
BUILD_BATCH = 64  # examples per teacher forward while building (shortest first)


class StoreError(Exception):
    """A store folder that cannot be used: `str(err)` says why."""


# ---------------------------------------------------------------- fingerprint

def model_digest(model: nn.Module) -> str:
    """sha256 of a float classifier's config and of every tensor of its state dict (name, dtype,
    shape, bytes): two models with one digest compute the same function."""
    h = hashlib.sha256(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def examples(data: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Each example's token ids without padding (right-padded rows, as `quant.data.tasks.encode` makes)."""
    lengths = data["attention_mask"].sum(1).tolist()
    ids = data["input_ids"].numpy()
    return [ids[i, :n].astype(np.int32) for i, n in enumerate(lengths)]


def data_digest(rows: list[np.ndarray]) -> str:
    """sha256 of every example's length and token ids, in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(np.int64(len(row)).tobytes() + row.tobytes())
    return h.hexdigest()


def store_fingerprint(teacher: nn.Module, rows: list[np.ndarray], max_length: int) -> dict[str, Any]:
    """What a store's content depends on."""
    return {"format": STORE_FORMAT, "teacher": model_digest(teacher), "data": data_digest(rows),
            "examples": len(rows), "max_length": max_length, "dtype": "float32"}


def fingerprint_key(fp: dict[str, Any]) -> str:
    """The store's folder name: 20 hex digits of the fingerprint's sha256."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:20]


def file_crc(path: Path) -> int:
    """CRC-32 of a file, read in blocks of 64 MiB."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 26), b""):
            crc = zlib.crc32(block, crc)
    return crc


# ---------------------------------------------------------------- reading

class TeacherStore:
    """A verified store folder, memory-mapped; `forward_all` answers like the teacher in eval mode."""

    def __init__(self, folder: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.folder, self.meta, self.cfg = folder, meta, EncoderConfig.from_dict(meta["encoder_config"])
        self.arrays = arrays
        offsets = arrays["offsets"]
        ids = np.asarray(arrays["ids"])
        self.rows = {ids[offsets[r]:offsets[r + 1]].tobytes(): r for r in range(len(offsets) - 1)}

    @classmethod
    def open(cls, folder: Path, fp: dict[str, Any]) -> "TeacherStore":
        """Open and verify `folder` as the store of fingerprint `fp`; StoreError if it is not."""
        try:
            meta = json.loads((folder / FINGERPRINT).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StoreError(f"has no readable {FINGERPRINT} ({err})") from err
        key = fingerprint_key(fp)
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("fingerprint") != fp:
            raise StoreError(f"was built for {_difference(meta, fp)}")
        arrays = {}
        for name in ARRAYS:
            path, want = folder / f"{name}.npy", meta["files"][name]
            size = path.stat().st_size if path.is_file() else -1
            if size != want["bytes"]:
                raise StoreError(f"has {path.name} of {size} bytes, not {want['bytes']} (truncated or missing)")
            if file_crc(path) != want["crc32"]:
                raise StoreError(f"has a damaged {path.name} (CRC-32 differs from the one written)")
            arrays[name] = np.load(path, mmap_mode="r")
        return cls(folder, meta, arrays)

    def eval(self) -> "TeacherStore":
        """A store is always the teacher in eval mode."""
        return self

    def forward_all(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, EncoderOutput]:
        """(logits, EncoderOutput) of the stored teacher on a right-padded batch; zeros at padding."""
        hidden, contexts, logits = self.arrays["hidden"], self.arrays["contexts"], self.arrays["logits"]
        offsets = self.arrays["offsets"]
        B, n = input_ids.shape
        lengths = attention_mask.sum(1).tolist()
        ids = input_ids.cpu().numpy()
        out_h = np.zeros((hidden.shape[1], B, n, hidden.shape[2]), np.float32)  # (L + 1, B, n, D)
        out_c = np.zeros((contexts.shape[1], B, n, contexts.shape[2]), np.float32)  # (L, B, n, D)
        out_l = np.empty((B, logits.shape[1]), np.float32)
        for b, length in enumerate(lengths):
            row = self.rows.get(ids[b, :length].astype(np.int32).tobytes())
            if row is None:
                raise UserError(f"teacher store {self.folder} holds no outputs for a training example "
                                f"(ids {ids[b, :length].tolist()[:12]}...); delete the store and rerun")
            start, end = offsets[row], offsets[row + 1]
            out_h[:, b, :length] = hidden[start:end].transpose(1, 0, 2)
            out_c[:, b, :length] = contexts[start:end].transpose(1, 0, 2)
            out_l[b] = logits[row]
        device = input_ids.device
        h = torch.from_numpy(out_h).to(device)
        return torch.from_numpy(out_l).to(device), EncoderOutput(h[-1], list(h), list(torch.from_numpy(out_c).to(device)))


FINGERPRINT_PARTS = {"format": "another store format", "teacher": "another teacher",
                     "data": "other training data", "examples": "another number of training examples",
                     "max_length": "another --max-length", "dtype": "another dtype"}


def _difference(meta: Any, fp: dict[str, Any]) -> str:
    """Which parts of a foreign store's fingerprint differ from `fp` (for the message)."""
    old = meta.get("fingerprint") if isinstance(meta, dict) else None
    if not isinstance(old, dict):
        return "something else (its fingerprint is unreadable)"
    return ", ".join(text for part, text in FINGERPRINT_PARTS.items() if old.get(part) != fp[part]) or "other settings"


# ---------------------------------------------------------------- building

def _remove_stale_builds(parent: Path, key: str) -> None:
    """Temporary folders of builds of `key` whose process has died."""
    for tmp in parent.glob(f".{key}.*.tmp"):
        pid = tmp.name.split(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@torch.no_grad()
def write_arrays(folder: Path, teacher: nn.Module, rows: list[np.ndarray]) -> None:
    """The store's .npy files for `rows` (distinct examples) in `folder`: the teacher in eval mode on
    batches of `BUILD_BATCH` examples of similar length (shortest first)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    T, L, D = int(offsets[-1]), teacher.cfg.layers, teacher.cfg.hidden
    mm = np.lib.format.open_memmap
    ids = mm(folder / "ids.npy", "w+", np.int32, (T,))
    mm(folder / "offsets.npy", "w+", np.int64, (len(rows) + 1,))[:] = offsets
    logits = mm(folder / "logits.npy", "w+", np.float32, (len(rows), teacher.cfg.num_labels))
    hidden = mm(folder / "hidden.npy", "w+", np.float32, (T, L + 1, D))
    contexts = mm(folder / "contexts.npy", "w+", np.float32, (T, L, D))
    was_training = teacher.training
    teacher.eval()
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(rows), BUILD_BATCH):
        chunk = order[start:start + BUILD_BATCH]
        n = int(lengths[chunk].max())
        batch = torch.zeros(len(chunk), n, dtype=torch.long)
        mask = torch.zeros(len(chunk), n, dtype=torch.long)
        for b, r in enumerate(chunk):
            batch[b, :lengths[r]] = torch.from_numpy(rows[r].astype(np.int64))
            mask[b, :lengths[r]] = 1
        device = next(teacher.parameters()).device
        out_logits, out = teacher.forward_all(batch.to(device), mask.to(device))
        h = torch.stack(out.hidden_states, 2).float().cpu().numpy()  # (B, n, L + 1, D)
        c = torch.stack(out.contexts, 2).float().cpu().numpy()  # (B, n, L, D)
        for b, r in enumerate(chunk):
            s, e = offsets[r], offsets[r + 1]
            ids[s:e] = rows[r]
            hidden[s:e], contexts[s:e] = h[b, :e - s], c[b, :e - s]
            logits[r] = out_logits[b].float().cpu().numpy()
    teacher.train(was_training)
    for array in (ids, logits, hidden, contexts):
        array.flush()


def build_store(folder: Path, key: str, fp: dict[str, Any], teacher: nn.Module, rows: list[np.ndarray]) -> None:
    """Build the store of `rows` in a temporary folder beside `folder`, then rename it to `folder`
    (a damaged store already there is replaced; one another process finished first is kept)."""
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(parent, key)
    tmp = parent / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        distinct = list({r.tobytes(): r for r in rows}.values())  # first occurrences, in data order
        write_arrays(tmp, teacher, distinct)
        files = {name: {"bytes": (tmp / f"{name}.npy").stat().st_size, "crc32": file_crc(tmp / f"{name}.npy")}
                 for name in ARRAYS}
        meta = {"key": key, "fingerprint": fp, "encoder_config": teacher.cfg.to_dict(),
                "distinct_examples": len(distinct), "files": files}
        write_text_atomic(tmp / FINGERPRINT, json.dumps(meta, indent=1) + "\n")
        if folder.exists():  # damaged (the caller checked): move it aside, then out of the way
            old = parent / f".{key}.{os.getpid()}.old.tmp"
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_store(path: str | os.PathLike, teacher: nn.Module, data: dict[str, torch.Tensor], max_length: int,
               say=print, build: bool = True) -> TeacherStore:
    """The teacher store for `teacher` on `data` under `path` (module docstring): a store folder is
    used only if intact and built for these inputs (else UserError); a cache folder gets the store's
    subfolder, built when missing or damaged (`build=False`: only opened, for ranks > 0 of a
    distributed run, after rank 0 built it)."""
    path = Path(path)
    rows = examples(data)
    fp = store_fingerprint(teacher, rows, max_length)
    key = fingerprint_key(fp)
    if (path / FINGERPRINT).is_file():
        try:
            return TeacherStore.open(path, fp)
        except StoreError as err:
            raise UserError(f"teacher store {path} {err}: delete it (rm -r {path}) and rerun, or pass its "
                            f"parent folder {path.parent} (a cache of stores by fingerprint) as --teacher-store"
                            ) from err
    folder = path / key
    if folder.is_dir() or not build:
        try:
            return TeacherStore.open(folder, fp)
        except StoreError as err:
            if not build:
                raise UserError(f"teacher store {folder} {err}: delete it and rerun") from err
            say(f"teacher store {folder} {err}: rebuilding it")
    say(f"teacher store: computing the teacher's outputs on {len(rows)} training examples into {folder}")
    build_store(folder, key, fp, teacher, rows)
    return TeacherStore.open(folder, fp)
