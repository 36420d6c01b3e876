"""The inhibitor's ablation options: log-domain scalars (`--inhibitor-scalars log`), score
distillation (`--score-distill W`) and the whole-block stage (`--block-init-steps N`). Their defaults
keep every fingerprint (tests/test_settings.py); here: the log parametrisation computes what the
linear one does at the same gamma and beta, float and quantized; the score loss; what the whole-block
stage trains and that it fits; and tiny training runs with each option, twice, identical."""
from __future__ import annotations

import json
import math

import pytest
import torch

from hwsim.app.cli import main
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from models.variants import InhibitorOptions
from tests.test_train import cli_args, glue_dir, tiny_teacher  # noqa: F401 (fixtures)


def tiny_pair(gamma: float | None = None, beta: float | None = None):
    """A linear and a log-domain inhibitor classifier with the same weights (same seed; the scalars
    draw nothing) and dropout off; with `gamma`, `beta`: the log model set to them and the linear one
    to the log model's values exp(log_gamma), exp(log_beta)."""
    models = []
    for scalars in ("linear", "log"):
        torch.manual_seed(0)
        cfg = EncoderConfig(vocab_size=30, hidden=16, layers=2, heads=2, ffn=24, max_position=16, dropout=0.0,
                            attention_dropout=0.0, activation="relu", attention="inhibitor",
                            attention_options=InhibitorOptions(scalars=scalars))
        models.append(SequenceClassifier(cfg).eval())
    lin, log = models
    if gamma is not None:
        for a, b in zip(lin.encoder.blocks, log.encoder.blocks):
            b.attn.set_scalars(gamma, beta)
            a.attn.set_scalars(b.attn.gamma.item(), b.attn.beta.item())
    return lin, log


def batch():
    ids = torch.tensor([[2, 5, 9, 11, 3, 0], [2, 7, 3, 0, 0, 0]])
    return ids, (ids != 0).long()


def test_log_scalars_at_init_compute_the_linear_model_exactly():
    """gamma = beta = 1 at init: exp(log 1) = exp(0) = 1 exactly, so the outputs are equal."""
    lin, log = tiny_pair()
    assert {k for k in log.state_dict() if "log_" in k} == {f"encoder.blocks.{i}.attn.log_{s}"
                                                            for i in range(2) for s in ("gamma", "beta")}
    assert all(b.attn.gamma.item() == b.attn.beta.item() == 1.0 for b in log.encoder.blocks)
    ids, mask = batch()
    assert torch.equal(lin(ids, mask), log(ids, mask))


def test_log_scalars_hold_calibrated_values_to_float32_rounding_and_quantize_alike():
    """At calibrated-like values (gamma/sqrt(d) = 2**-2, beta = 0.043): exp(log x) is x to within
    (|ln x| + 2) float32 ulps relative (ln x rounded to float32 errs by |ln x| * 2**-24 relative in x,
    exp and the float32 value of x by one ulp each); the linear model at the log model's values gives
    the same outputs exactly, and both quantize to the same QAT state exactly."""
    from quant.qat.config import QuantConfig
    from quant.qat.model import quantize_model
    gamma, beta = 2.0 ** -2 * math.sqrt(8), 0.043
    lin, log = tiny_pair(gamma, beta)
    for x, value in ((gamma, log.encoder.blocks[0].attn.gamma), (beta, log.encoder.blocks[0].attn.beta)):
        assert abs(value.item() - x) <= (abs(math.log(x)) + 2) * 2.0 ** -24 * x
    ids, mask = batch()
    assert torch.equal(lin(ids, mask), log(ids, mask))
    ql, qg = (quantize_model(m, QuantConfig()).state_dict() for m in (lin, log))
    assert ql.keys() == qg.keys() and all(torch.equal(ql[k], qg[k]) for k in ql)


def test_log_scalars_stay_positive_and_scalar_parameters_are_the_logs():
    lin, log = tiny_pair()
    attn = log.encoder.blocks[0].attn
    assert attn.scalar_parameters() == [attn.log_gamma, attn.log_beta, attn.alpha]
    with torch.no_grad():
        attn.log_beta.fill_(-40.0)  # a linear beta would have gone through zero long before
    assert attn.beta.item() > 0
    attn.beta.backward()
    assert attn.log_beta.grad is not None and attn.log_beta.grad.item() == attn.beta.item()  # d exp(u)/du


def test_quantized_log2_scalars_get_a_rate_that_crosses_a_boundary_in_an_epoch():
    """Under the log parametrisation the QAT student's log2 scalars train at max(scalar_lr, 2 / steps
    of an epoch) (`quant.train.state.rounded_lr`); under the linear one at scalar_lr, as before."""
    from quant.qat.config import QuantConfig
    from quant.qat.model import quantize_model
    from quant.train.config import TrainConfig
    from quant.train.state import make_optimizer, rounded_lr
    cfg = TrainConfig(out="unused", attention="inhibitor", epochs=2)
    lin, log = (quantize_model(m, QuantConfig()) for m in tiny_pair())
    rates = {}
    for name, model in (("linear", lin), ("log", log)):
        opt, _ = make_optimizer(cfg, model, 16)  # 8 steps an epoch
        log2 = {id(b.attn.core.log2_gamma) for b in model.encoder.blocks}
        rates[name] = {g["lr"] for g in opt.param_groups if any(id(p) in log2 for p in g["params"])}
    assert rates == {"linear": {1e-3}, "log": {0.25}}
    assert rounded_lr(1e-3, 63) == 2 / 63 and rounded_lr(1e-3, 10_000) == 1e-3


# ---------------------------------------------------------------- the score loss

def test_score_kl_is_zero_on_equal_probabilities_and_positive_otherwise():
    from quant.train.distill import score_kl
    torch.manual_seed(0)
    ids, mask = batch()
    t = torch.randn(2, 3, 6, 6)
    assert score_kl(t, t, mask) == 0
    assert score_kl(t + torch.randn(2, 3, 6, 1), t, mask).abs() < 1e-6  # row constants: the same probabilities
    assert score_kl(torch.randn(2, 3, 6, 6), t, mask) > 0.1
    padded = t.clone()
    padded[..., 3:] += 100 * (1 - mask[:, None, None, 3:])  # logits of padded keys count for nothing
    assert score_kl(padded, t, mask) == 0


def test_score_kl_of_a_padded_batch_is_the_mean_over_its_examples_real_rows():
    from quant.train.distill import score_kl
    torch.manual_seed(1)
    ids, mask = batch()
    s, t = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    rows = []
    for b, n in enumerate(mask.sum(1).tolist()):
        p = t[b, :, :n, :n].softmax(-1)
        rows.append((p * (p.log() - s[b, :, :n, :n].log_softmax(-1))).sum(-1).flatten())  # (H * n,)
    assert torch.allclose(score_kl(s, t, mask), torch.cat(rows).mean(), rtol=1e-6, atol=0)


def test_layerwise_init_adds_the_weighted_score_kl_of_each_layer(tiny_teacher):
    """The first step's per-layer loss with score distillation is the context MSE plus W times the KL
    of the teacher's probabilities and softmax(-Z/tau), Z from the teacher's hidden state."""
    import copy
    from models.loading import load_pretrained
    from quant.train.distill import TeacherScores, layerwise_init, score_kl
    teacher = load_pretrained(tiny_teacher, "dot", 2, dropout=0.0, attention_dropout=0.0)
    student = load_pretrained(tiny_teacher, "inhibitor", 2, dropout=0.0, attention_dropout=0.0,
                              activation="relu")
    for block in student.encoder.blocks:
        block.attn.set_scalars(0.5, 0.05, 0.5)
    ids, mask = batch()
    b = {"input_ids": ids, "attention_mask": mask}
    scores = TeacherScores(teacher, 2, 4)
    with torch.no_grad():
        hidden = teacher.forward_all(ids, mask)[1].hidden_states
        kls = [score_kl(-blk.attn.inhibition(hidden[i], mask) / 2.0, t, mask)
               for i, (blk, t) in enumerate(zip(student.encoder.blocks, scores(hidden)))]
    plain = layerwise_init(copy.deepcopy(student), teacher, [b])
    scored = layerwise_init(copy.deepcopy(student), teacher, [b], scores=(0.3, 2.0, scores))
    assert all(k > 0 for k in kls)
    assert scored == pytest.approx([p + 0.3 * float(k) for p, k in zip(plain, kls)], rel=1e-6)


def test_teacher_scores_need_a_softmax_teacher_with_the_students_heads(tiny_teacher):
    from models.errors import UserError
    from models.loading import load_pretrained
    from quant.train.distill import TeacherScores
    with pytest.raises(UserError, match="dot-product teacher"):
        TeacherScores(load_pretrained(tiny_teacher, "inhibitor", 2), 2, 4)
    with pytest.raises(UserError, match="the teacher has 4, the student 2"):
        TeacherScores(load_pretrained(tiny_teacher, "dot", 2), 2, 2)


def test_whole_block_stage_fits_each_block_to_the_teachers_next_hidden_state(tiny_teacher):
    """Teacher forcing: the first step's per-block loss is the MSE of the block applied to the teacher's
    hidden state l against its state l + 1; repeated steps on one batch lower every block's loss; only
    the blocks' parameters move (embeddings and head do not) and the rate decays to 0 over the steps."""
    import copy
    from models.loading import load_pretrained
    from quant.train.distill import blockwise_init, token_loss
    teacher = load_pretrained(tiny_teacher, "dot", 2, dropout=0.0, attention_dropout=0.0)
    student = load_pretrained(tiny_teacher, "inhibitor", 2, dropout=0.0, attention_dropout=0.0, activation="relu")
    for block in student.encoder.blocks:
        block.attn.set_scalars(0.5, 0.05, 0.5)
    ids, mask = batch()
    b = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        hidden = teacher.forward_all(ids, mask)[1].hidden_states
        first = [float(token_loss(blk(hidden[i], mask)[0], hidden[i + 1], mask, "mse"))
                 for i, blk in enumerate(student.encoder.blocks)]
    assert blockwise_init(copy.deepcopy(student), teacher, [b], 1) == pytest.approx(first, rel=1e-6)
    fitted = copy.deepcopy(student)
    blockwise_init(fitted, teacher, [b] * 40, 40, lr=1e-3)
    with torch.no_grad():
        after = [float(token_loss(blk(hidden[i], mask)[0], hidden[i + 1], mask, "mse"))
                 for i, blk in enumerate(fitted.encoder.blocks)]
    assert all(a < 0.5 * f for a, f in zip(after, first)), (first, after)
    before, now = student.state_dict(), fitted.state_dict()
    moved = {k for k in before if not torch.equal(before[k], now[k])}
    assert moved and all(k.startswith("encoder.blocks.") for k in moved)
    assert any(".ffn." in k for k in moved) and any("_norm." in k for k in moved) and any(".attn." in k for k in moved)
    # 0 steps: the stage is off, whatever the batches
    frozen = copy.deepcopy(student)
    blockwise_init(frozen, teacher, [b] * 3, 0)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


# ---------------------------------------------------------------- tiny training runs

@pytest.fixture(scope="module")
def fine_tuned(tiny_teacher, glue_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    assert main(cli_args(tiny_teacher, glue_dir, out, "--float", "--epochs", 1)) == 0
    return out


@pytest.mark.parametrize("option", [("--inhibitor-scalars", "log"), ("--score-distill", 0.5, "--score-temperature", 2),
                                    ("--block-init-steps", 3)])
def test_a_float_student_with_each_option_trains_deterministically(fine_tuned, glue_dir, tmp_path, option, capsys):
    """Two runs give identical losses and weights; a log student's checkpoint holds log_gamma/log_beta,
    loads, and quantization-aware training starts from it and exports. Score distillation reads the
    teacher from a store (built by the first run, read by the second): its probabilities come from the
    stored hidden states."""
    from models.loading import load_checkpoint
    histories, weights = [], []
    store = ("--teacher-store", tmp_path / "store") if option[0] == "--score-distill" else ()
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(cli_args(fine_tuned, glue_dir, out, "--float", "--attention", "inhibitor", "--distill", "task",
                             "--layer-init-steps", 2, *option, *store)) == 0
        histories.append(json.loads((out / "metrics.json").read_text())["history"])
        weights.append(load_checkpoint(out)[0].state_dict())
    assert histories[0] == histories[1] and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    parts = set(histories[0][0]["loss"])
    if option[0] == "--block-init-steps":
        said = capsys.readouterr()
        assert (said.out + said.err).count("whole-block init (3 batches): hidden-state MSE per block") == 2
        return
    if option[0] == "--score-distill":
        assert parts == {"ce", "kl", "hid", "ctx", "att"} and histories[0][0]["loss"]["att"] > 0
        return
    assert parts == {"ce", "kl", "hid", "ctx"} and any(k.endswith(".attn.log_beta") for k in weights[0])
    assert main(cli_args(fine_tuned, glue_dir, tmp_path / "qat", "--attention", "inhibitor", "--distill", "task",
                         "--init-student", tmp_path / "a")) == 0
    assert main(["export", str(tmp_path / "qat"), "--out", str(tmp_path / "log.onnx")]) == 0


def test_score_distillation_of_a_softmax_student_is_refused(fine_tuned, glue_dir, tmp_path, capsys):
    for attention in ("dot", "symmetric"):
        assert main(cli_args(fine_tuned, glue_dir, tmp_path / attention, "--float", "--attention", attention,
                             "--distill", "task", "--score-distill", 0.5)) == 2
        assert "has no inhibition Z" in capsys.readouterr().err and not (tmp_path / attention).exists()


# ---------------------------------------------------------------- per-head scalars (--inhibitor-per-head)

def tiny_heads(per_head: bool, heads: int = 2):
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=30, hidden=16, layers=2, heads=heads, ffn=24, max_position=16, dropout=0.0,
                        attention_dropout=0.0, activation="relu", attention="inhibitor",
                        attention_options=InhibitorOptions(per_head=per_head))
    return SequenceClassifier(cfg).eval()


def test_per_head_scalars_are_one_per_head_and_at_equal_values_compute_the_per_layer_model_exactly():
    shared, per_head = tiny_heads(False), tiny_heads(True)
    attn = per_head.encoder.blocks[0].attn
    assert [tuple(p.shape) for p in attn.scalar_parameters()] == [(2, 1, 1)] * 3
    for a, b in zip(shared.encoder.blocks, per_head.encoder.blocks):
        a.attn.set_scalars(0.7, 0.05, 0.25)
        b.attn.set_scalars([0.7, 0.7], [0.05, 0.05], [0.25, 0.25])
    ids, mask = batch()
    assert torch.equal(shared(ids, mask), per_head(ids, mask))


def test_per_head_scalars_give_each_head_the_context_of_its_own_values():
    """Head h of a per-head module equals head h of a per-layer module set to head h's values."""
    from models.attention import split_heads
    shared, per_head = tiny_heads(False), tiny_heads(True)
    gamma, beta, alpha = [0.4, 1.3], [0.02, 0.09], [0.125, 1.0]
    per_head.encoder.blocks[0].attn.set_scalars(gamma, beta, alpha)
    x = torch.randn(2, 6, 16)
    _, mask = batch()
    with torch.no_grad():
        got = split_heads(per_head.encoder.blocks[0].attn.context(x, mask), 2)
        for h in range(2):
            shared.encoder.blocks[0].attn.set_scalars(gamma[h], beta[h], alpha[h])
            want = split_heads(shared.encoder.blocks[0].attn.context(x, mask), 2)
            torch.testing.assert_close(got[:, h], want[:, h], rtol=0, atol=1e-6)


def test_per_head_calibration_fits_each_head_at_least_as_well_as_one_fit_per_layer(tiny_teacher):
    """On a tiny teacher (4 heads): every head gets the candidate that fits its own context best (the
    brute force over the grid per head agrees), and the layer's residual is at most the per-layer fit's."""
    import itertools
    from models.attention import split_heads
    from models.loading import load_pretrained
    from quant.train.distill import calibrate_inhibitor
    from quant.train.loop import student_from
    teacher = load_pretrained(tiny_teacher, "dot", 2, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    ids = torch.randint(5, 23, (8, 7))
    mask = torch.ones_like(ids)
    mask[:3, 5:] = 0
    batch_ = {"input_ids": ids, "attention_mask": mask}
    grid, alphas = range(-6, 3), (0.25, 0.5, 1.0)
    fits = {}
    for per_head in (False, True):
        student, _ = student_from(teacher, "inhibitor", attention_options=InhibitorOptions(per_head=per_head))
        fits[per_head] = calibrate_inhibitor(student, teacher, [batch_], exponents=grid, alphas=alphas)
    with torch.no_grad():
        out = teacher.forward_all(ids, mask)[1]
    heads = teacher.cfg.heads
    for layer, (one, each) in enumerate(zip(fits[False], fits[True])):
        assert each["residual"] <= one["residual"] + 1e-9
        assert len(each["exponent"]) == len(each["alpha"]) == len(each["beta"]) == heads
        block = student.encoder.blocks[layer]
        d = block.attn.head_dim
        torch.testing.assert_close(block.attn.gamma.flatten(),
                                   torch.tensor([2.0 ** e * math.sqrt(d) for e in each["exponent"]]))
        t = split_heads(out.contexts[layer], heads)
        keep = mask[:, None, :, None]
        for h in range(heads):
            scores = {}
            for e, a in itertools.product(grid, alphas):
                block.attn.set_scalars(2.0 ** e * math.sqrt(d), 1.0, a)
                with torch.no_grad():
                    x = split_heads(block.attn.context(out.hidden_states[layer], mask), heads)[:, h]
                ht, hh, tt = (float((u * w * keep[:, 0]).sum()) for u, w in ((x, t[:, h]), (x, x), (t[:, h], t[:, h])))
                if ht > 0:
                    scores[(e, a)] = 1 - ht * ht / hh / tt
            assert (each["exponent"][h], each["alpha"][h]) == min(scores, key=scores.get)


def test_per_head_quant_state_makes_each_head_a_power_of_two_without_changing_the_context():
    """quant_state folds head h's remainders into head h's rows of q/k (gamma) and q/k/v and alpha (beta):
    the context from the folded projections with 2**g_h, 2**b_h equals the float module's (float32
    rounding), and the powers differ between heads as the scalars do."""
    import torch.nn.functional as F
    from models.attention import inhibit_fast, merge_heads, split_heads
    from quant.qat.attention import QInhibitorAttention
    model = tiny_heads(True)
    attn = model.encoder.blocks[0].attn
    attn.set_scalars([0.3, 2.9], [0.021, 0.4], [0.125, 1.5])
    cfg = model.cfg
    state = QInhibitorAttention.quant_state("attn", dict(attn.state_dict()), cfg)
    g, b = state["core.log2_gamma"], state["core.log2_beta"]
    assert g.shape == b.shape == (2, 1, 1) and torch.equal(g, g.round()) and torch.equal(b, b.round())
    assert g[0] != g[1] and b[0] != b[1]
    x = torch.randn(2, 6, 16)
    _, mask = batch()
    q, k, v = (split_heads(F.linear(x, state[f"{n}_lin.weight"], state[f"{n}_lin.bias"]), 2) for n in "qkv")
    with torch.no_grad():
        got = merge_heads(inhibit_fast(q, k, v, mask, 2.0 ** g * math.sqrt(cfg.head_dim), state["core.alpha"],
                                       2.0 ** b, attn.center, attn.signed))
        want = attn.context(x, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_per_head_student_quantizes_to_per_head_node_attributes():
    """Its QAT model gives the InhibitorAttention node one z_shift, alpha and out_shift per head; a per-layer
    student's node keeps plain ints."""
    from quant.qat.config import QuantConfig
    from quant.qat.model import quantize_model
    for per_head in (False, True):
        core = quantize_model(tiny_heads(per_head), QuantConfig()).encoder.blocks[0].attn.core
        attrs = core.inhibitor_attrs(exp_qk=4, exp_v=4, exp_out=5, bits=8)
        for name in ("z_shift", "alpha", "out_shift"):
            assert isinstance(attrs[name], list) == per_head and (not per_head or len(attrs[name]) == 2)
