"""The teacher-output store (`quant.train.store`): stored outputs equal the teacher's, a student trained
from the store equals one trained online (loss parts and weights, to float rounding), the teacher
never runs in a training step that reads the store, and a foreign or damaged store is refused (a
store folder) or rebuilt (a cache folder).

Tiny setup of tests/test_train.py: a random BERT teacher fine-tuned for one epoch on 64 sentences.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwsim.app.cli import main
from models.errors import UserError
from tests.test_train import cli_args, glue_dir, tiny_teacher  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def fine_tuned(tiny_teacher, glue_dir, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("store_teacher") / "teacher"
    assert main(cli_args(tiny_teacher, glue_dir, out, "--float", "--epochs", 1)) == 0
    return out


def train_data(teacher: Path, glue: Path, limit: int | None = None) -> dict[str, torch.Tensor]:
    from models.loading import load_tokenizer
    from quant.data.tasks import encode, load_split
    return encode(load_split("sst2", "train", glue, limit), load_tokenizer(teacher), 16)


def test_stored_outputs_equal_the_teachers(fine_tuned, glue_dir, tmp_path):  # noqa: F811
    from models.loading import load_checkpoint
    from quant.train.runtime import take
    from quant.train.store import open_store
    teacher = load_checkpoint(fine_tuned)[0].eval()
    data = train_data(fine_tuned, glue_dir)
    store = open_store(tmp_path / "cache", teacher, data, 16, say=lambda *a: None)
    assert store.folder.parent == tmp_path / "cache"
    batch = take(data, [5, 0, 17, 33, 60], torch.device("cpu"))
    mask = batch["attention_mask"]
    assert mask.sum(1).min() < mask.shape[1]  # padded rows
    with torch.no_grad():
        logits, out = teacher.forward_all(batch["input_ids"], mask)
    s_logits, s_out = store.forward_all(batch["input_ids"], mask)
    keep = mask[..., None].bool()
    assert torch.allclose(s_logits, logits, atol=1e-6)
    for ours, theirs in ((s_out.hidden_states, out.hidden_states), (s_out.contexts, out.contexts)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert torch.allclose(torch.where(keep, b, 0.0), a, atol=1e-5)  # zeros at padding
    # a second build (another cache) writes the same bytes: building is deterministic
    again = open_store(tmp_path / "cache2", teacher, data, 16, say=lambda *a: None)
    for name in ("ids", "offsets", "logits", "hidden", "contexts"):
        assert (store.folder / f"{name}.npy").read_bytes() == (again.folder / f"{name}.npy").read_bytes()


def test_a_foreign_or_damaged_store_is_refused_and_a_cached_one_rebuilt(fine_tuned, glue_dir, tmp_path):  # noqa: F811
    from models.loading import load_checkpoint
    from quant.train.store import open_store
    teacher = load_checkpoint(fine_tuned)[0]
    data, fewer = train_data(fine_tuned, glue_dir), train_data(fine_tuned, glue_dir, 40)
    said: list[str] = []
    folder = open_store(tmp_path, teacher, data, 16, say=said.append).folder
    with pytest.raises(UserError, match=rf"teacher store {folder} was built for other training data, another "
                                        rf"number of training examples: delete it"):
        open_store(folder, teacher, fewer, 16)
    with pytest.raises(UserError, match="another --max-length"):
        open_store(folder, teacher, data, 32)
    other = load_checkpoint(fine_tuned)[0]
    with torch.no_grad():
        other.classifier.bias.add_(1e-3)
    with pytest.raises(UserError, match="built for another teacher"):
        open_store(folder, other, data, 16)
    # damaged: truncated, or one flipped byte (same size)
    hidden = folder / "hidden.npy"
    whole = hidden.read_bytes()
    hidden.write_bytes(whole[:-7])
    with pytest.raises(UserError, match=r"hidden.npy of \d+ bytes, not \d+ \(truncated"):
        open_store(folder, teacher, data, 16)
    hidden.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))
    with pytest.raises(UserError, match="damaged hidden.npy.*delete it"):
        open_store(folder, teacher, data, 16)
    said.clear()
    rebuilt = open_store(tmp_path, teacher, data, 16, say=said.append)  # the cache folder: rebuilt
    assert rebuilt.folder == folder and "rebuilding" in said[0] and hidden.read_bytes() == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no temporary left


def loss_parts(out: Path) -> dict[str, float]:
    return json.loads((out / "metrics.json").read_text())["history"][0]["loss"]


def test_student_trained_from_the_store_equals_the_online_one(fine_tuned, glue_dir, tmp_path):  # noqa: F811
    """Float inhibitor student: calibration, layer-by-layer init and 8 distillation steps, online and
    from the store: loss parts and weights agree to float rounding; two runs from the store are equal."""
    from models.loading import load_checkpoint
    args = ("--float", "--attention", "inhibitor", "--distill", "task", "--layer-init-steps", -1)
    store = tmp_path / "store"
    for name, extra in (("online", ()), ("stored", ("--teacher-store", store)), ("again", ("--teacher-store", store))):
        assert main(cli_args(fine_tuned, glue_dir, tmp_path / name, *args, *extra)) == 0
    online, stored = loss_parts(tmp_path / "online"), loss_parts(tmp_path / "stored")
    assert set(online) == {"ce", "kl", "hid", "ctx"} and online.keys() == stored.keys()
    assert all(stored[k] == pytest.approx(online[k], rel=1e-5, abs=1e-7) for k in online), (online, stored)
    a, b, c = (load_checkpoint(tmp_path / n)[0].state_dict() for n in ("online", "stored", "again"))
    # Adam divides each gradient element by its own scale, so an element whose gradient is ~0 moves by
    # up to the learning rate (1e-4 in the init) on rounding noise: measured up to 3e-5
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-4) for k in a)
    assert all(torch.equal(b[k], c[k]) for k in b)  # deterministic
    assert len(list(store.iterdir())) == 1  # one store, reused by the second run


def test_a_training_step_from_the_store_runs_no_teacher_module(fine_tuned, glue_dir, tmp_path):  # noqa: F811
    from torch.nn.modules.module import register_module_forward_pre_hook
    from quant.data.tasks import get_task
    from quant.train.cli import config_from_args
    from quant.train.loop import _prepare, _train_step
    from quant.train.runtime import setup_distributed, take
    from quant.train.state import make_optimizer
    from quant.train.store import TeacherStore
    from hwsim.app.cli import build_parser
    args = build_parser().parse_args(cli_args(fine_tuned, glue_dir, tmp_path / "s", "--float", "--distill", "task",
                                              "--teacher-store", tmp_path / "store"))
    cfg = config_from_args(args)
    run = _prepare(cfg, setup_distributed(), get_task("sst2"), None)
    assert isinstance(run.teacher, TeacherStore)
    ran: list[torch.nn.Module] = []
    handle = register_module_forward_pre_hook(lambda module, inputs: ran.append(module))
    try:
        _train_step(run, take(run.data["train"], range(8), torch.device("cpu")), *make_optimizer(cfg, run.runner, 4))
    finally:
        handle.remove()
    student = set(map(id, run.wrapped.modules()))
    assert ran and all(id(m) in student for m in ran)


def test_store_rows_are_distinct_examples(fine_tuned, glue_dir, tmp_path):  # noqa: F811
    """Repeated examples (a transfer set can repeat a snippet) are stored once and answered alike."""
    from models.loading import load_checkpoint
    from quant.train.store import open_store
    data = train_data(fine_tuned, glue_dir, 10)
    doubled = {k: torch.cat([v, v[:4]]) for k, v in data.items()}
    store = open_store(tmp_path, load_checkpoint(fine_tuned)[0], doubled, 16, say=lambda *a: None)
    offsets = np.load(store.folder / "offsets.npy")
    assert len(offsets) - 1 == len(store.rows) == len({tuple(r[m.bool()].tolist()) for r, m in
                                                       zip(data["input_ids"], data["attention_mask"])})
