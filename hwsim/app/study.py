"""`hwsim study`: the whole recipe over seeds, every stage cached by fingerprint and resumable.

    hwsim study --task rt --seeds 0,1,2 --variants dot,inhibitor,symmetric [--out DIR] [--results DIR]
                [--limit N] [recipe options]

Per seed, in DIR/seed<s>/ (the demo's layout: `runs/`, `models/`, `reports/`, `stages/`):
1. `teacher`: fine-tune the float MiniLM teacher (dot attention);
2. `predict-teacher`: its predictions on the test split (the ledger pairs them with the variants');
3. `float-<v>`: distil a float ReLU student of each variant from it (docs/QUANT.md "Student recipe":
   the inhibitor calibrated, inhibitor and symmetric fitted layer by layer to the teacher's contexts);
4. `int<bits>-<v>`: quantization-aware-train W<bits>A<bits> students from them, distilled from the teacher;
5. `export-<v>`: integer-only ONNX;
6. `simulate-<v>`: hwsim over the whole test split, truncated like training, so that its accuracy is the
   QAT evaluation's (the record's `hwsim_equals_qat`);
then one record per seed in the results ledger (`hwsim.app.ledger`, kind "study"). `hwsim demo` is one
seed of this at its 20-minute cut (`StudyConfig.cut`), followed by the energy steps.

Caching and resuming (`hwsim.app.stages`): each stage's marker holds the fingerprint of its settings and
of the stages it reads; a stage is skipped only when its fingerprint matches, and a changed setting
reruns it and what follows. Training stages write a training checkpoint every `--save-every` steps:
after a kill, the same command resumes the killed stage bit-exactly (`quant.train`, `--resume`) and
skips the finished ones, so the record equals an uninterrupted run's (times aside). A training stage's
checkpoints go when it finishes (its model and metrics stay): nothing resumes a finished stage, and on
the whole split they were ~3.6 GB per seed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

from hwsim.app.stages import Progress, Step
from models import variants as registry
from models.errors import UserError
from models.settings import LATER, hashed

TASKS = ("rt",)  # the ledger and the simulation read rt's labelled test split
# TrainConfig fields that cannot change a result; the teacher store's folder is one (a store is keyed by
# the teacher's fingerprint, the data and max_length, `quant.train.store`), whether a store is used is not
NOT_SETTINGS = ("out", "resume", "save_every", "teacher_store")


def _opt(default, help: str, later: bool = False):
    """A recipe field with its `--help` text (the command line is generated from the fields); `later`:
    added after ledger records existed, its default the recipe before, so the recipe fingerprint leaves
    it out at its default (`models.settings.hashed`)."""
    return field(default=default, metadata={"help": help, **({LATER: True} if later else {})})


@dataclass(frozen=True)
class StudyConfig:
    """The recipe: every setting that decides a seed's accuracies (hashed into the ledger's recipe
    fingerprint, `hwsim.app.ledger.recipe_of`). The defaults are the whole recipe; `cut` is the demo's."""
    task: str = _opt("rt", "the task")
    bits: int = _opt(8, "weight and activation bits of the QAT students")
    max_length: int = _opt(64, "tokens per snippet in training and evaluation (and in hwsim's simulation)")
    teacher_epochs: int = _opt(2, "epochs of the teacher's fine-tuning")
    teacher_train_limit: int | None = _opt(None, "first N training snippets for the teacher (evaluation splits stay whole)")
    student_epochs: int = _opt(2, "epochs of the float students")
    student_batch_size: int = _opt(16, "float students' batch (16: twice the updates of 32 at the same compute)")
    student_lr: float = _opt(2e-4, "float students' learning rate")
    student_train_limit: int | None = _opt(None, "first N training snippets for the float students")
    qat_epochs: int = _opt(1, "epochs of the QAT students")
    qat_train_limit: int | None = _opt(None, "first N training snippets for the QAT students")
    qat_batch_size: int = _opt(16, "QAT students' batch")
    layer_init_steps: int = _opt(-1, "batches fitting inhibitor and symmetric students layer by layer to the "
                                     "teacher's contexts (-1: one pass over their training snippets)")
    transfer_copies: int = _opt(0, "teacher-labelled augmented copies per snippet for the float students")
    transfer_plots: bool = _opt(False, "add the plot chunks of training movies to the float students' transfer set")
    dot_student: bool = _opt(True, "int8 dot from a float ReLU dot student (else from the teacher)")
    teacher: str = _opt("minilm", "checkpoint the teacher is fine-tuned from")
    widths: str | None = _opt(None, "a named width setting of the QAT students instead of --bits "
                                    "(quant.qat.widths, e.g. w4a8, w8a8-att4)", later=True)
    hidden_layers: str = _opt("all", "hidden states the float and QAT students align with the teacher's: all "
                                     "aligned layers or the last only", later=True)
    inhibitor_scalars: str = _opt("linear", "the float inhibitor student's gamma and beta trained as they are "
                                            "(linear) or as logarithms (log; its QAT student's log2 scalars then "
                                            "train at a rate that can cross a rounding boundary)", later=True)
    inhibitor_per_head: bool = _opt(False, "one gamma, alpha and beta per head of the inhibitor students, "
                                           "calibrated per head (the integer node then takes per-head z_shift, "
                                           "alpha and out_shift)", later=True)
    score_distill: float = _opt(0.0, "W of score distillation of the float inhibitor student (layer-by-layer init "
                                     "and training): KL of the teacher's attention probabilities and its "
                                     "softmax(-Z/tau) per head (0: off)", later=True)
    score_temperature: float = _opt(1.0, "tau of score distillation", later=True)
    block_init_steps: int = _opt(0, "batches of the whole-block stage after the layer-by-layer init of inhibitor "
                                    "and symmetric students: every block fitted to map the teacher's hidden state "
                                    "l to its state l+1 (-1: one pass; 0: none)", later=True)
    limit: int | None = _opt(None, "first N examples of every split (tests)")

    def __post_init__(self) -> None:
        from quant.qat.widths import width_setting
        from quant.train.config import HIDDEN_LAYERS
        if self.widths is not None:
            width_setting(self.widths)  # UserError naming the settings
            if self.bits != 8:
                raise UserError(f"give --widths {self.widths} or --bits {self.bits}, not both")
        if self.inhibitor_scalars not in registry.SCALARS:
            raise UserError(f"--inhibitor-scalars must be one of {', '.join(registry.SCALARS)}, got "
                            f"{self.inhibitor_scalars!r}")
        if self.layer_init_steps < -1 or self.block_init_steps < -1:
            raise UserError(f"need --layer-init-steps and --block-init-steps >= -1 (-1: one pass), got "
                            f"{self.layer_init_steps}, {self.block_init_steps}")
        if self.score_distill < 0 or self.score_temperature <= 0:
            raise UserError(f"need --score-distill >= 0 and --score-temperature > 0, got {self.score_distill}, "
                            f"{self.score_temperature}")
        if self.hidden_layers not in HIDDEN_LAYERS:
            raise UserError(f"--hidden-layers must be one of {', '.join(HIDDEN_LAYERS)}, got {self.hidden_layers!r}")
        if self.task not in TASKS:
            raise UserError(f"the study runs task {' or '.join(TASKS)} (its ledger reads the labelled test split), "
                            f"not {self.task!r}; train other tasks with `hwsim train`")

    @classmethod
    def cut(cls, **changes) -> "StudyConfig":
        """The demo's cut, to finish within about 20 minutes on 2 cores: 48 tokens, 3,000 / 2,000 /
        1,000 training snippets for teacher / students / QAT, one epoch each."""
        return replace(cls(max_length=48, teacher_epochs=1, teacher_train_limit=3000, student_epochs=1,
                           student_train_limit=2000, qat_epochs=1, qat_train_limit=1000), **changes)

    @property
    def quant_tag(self) -> str:
        """The quantized students' tag: their training runs are `<tag>-<variant>`: `int<bits>` (`int8-dot`),
        or the width setting's name (`w8a8-att4-dot`)."""
        return f"int{self.bits}" if self.widths is None else self.widths

    def quant_options(self) -> dict:
        """The QAT students' TrainConfig width fields."""
        return {"bits": self.bits} if self.widths is None else {"widths": self.widths}

    def quant_stage(self, stage: str, variant: str) -> str:
        """A per-variant stage after training (`export`, `simulate`): `<stage>-<variant>` at W8A8, the
        names the study had before widths were swept, `<stage>-<tag>-<variant>` otherwise, so that
        several widths' stages share one seed folder without overwriting each other."""
        return f"{stage}-{variant}" if self.quant_tag == "int8" else f"{stage}-{self.quant_tag}-{variant}"

    def student_options(self, variant: str) -> dict:
        """The float student's TrainConfig fields of the ablations of the inhibitor (the log scalars, score
        distillation) for `variant`: set only for a variant that has them (the inhibitor's options, an
        inhibition Z), so that the other students' stages keep their fingerprints."""
        from quant.train.distill import DistillConfig
        out = {}
        if (self.inhibitor_scalars != "linear" or self.inhibitor_per_head) and \
                registry.get(variant).options is registry.InhibitorOptions:
            out["inhibitor"] = registry.InhibitorOptions(scalars=self.inhibitor_scalars, per_head=self.inhibitor_per_head)
        if self.score_distill and callable(getattr(registry.get(variant).facet("float_module"), "inhibition", None)):
            out["distill"] = DistillConfig(mode="task", hidden_layers=self.hidden_layers, score_weight=self.score_distill,
                                           score_temperature=self.score_temperature)
        return out

    def students(self, variants) -> list[str]:
        """The variants that get a float student (the teacher's, the baseline dot, only with `dot_student`)."""
        return [v for v in variants if v != registry.baseline() or self.dot_student]


@dataclass(frozen=True)
class StudyRun:
    """How a study runs (none of it changes a result): seeds, variants, folders, checkpoints."""
    out: str = "study_out"
    seeds: tuple[int, ...] = (0,)
    variants: tuple[str, ...] = field(default_factory=registry.names)  # every registered one
    save_every: int = 100         # training steps between training checkpoints (resume after a kill)
    ort_check: int = 16           # first N test samples also run in onnxruntime
    force: bool = False           # recompute every stage

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in registry.VARIANTS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            raise UserError(f"--variants must name distinct variants among {', '.join(registry.names())}, got "
                            f"{','.join(self.variants)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise UserError(f"--seeds must be distinct integers >= 0, got {','.join(map(str, self.seeds))}")
        if self.save_every < 1 or self.ort_check < 0:
            raise UserError(f"need --save-every >= 1 and --ort-check >= 0, got {self.save_every}, {self.ort_check}")


@dataclass(frozen=True)
class SeedResult:
    """What one seed's stages left: run metrics by run name, ONNX models and hwsim run reports by
    variant, the teacher's test predictions, and the seconds of every stage (as recorded when it ran)."""
    metrics: dict
    models: dict
    reports: dict
    teacher_predictions: list
    stage_s: dict


def model_file(recipe: StudyConfig, variant: str) -> str:
    """A seed folder's exported model of `variant` at the recipe's widths, relative to the folder."""
    return f"models/{variant}-{'w' + str(recipe.bits) if recipe.widths is None else recipe.widths}.onnx"


def stage_names(recipe: StudyConfig, variants) -> list[str]:
    """Every stage of one seed, in the order they run."""
    tag = recipe.quant_tag
    return ["teacher", "predict-teacher", *(f"float-{v}" for v in recipe.students(variants)),
            *(f"{tag}-{v}" for v in variants), *(recipe.quant_stage("export", v) for v in variants),
            *(recipe.quant_stage("simulate", v) for v in variants)]


# ---------------------------------------------------------------- one seed

class SeedStages:
    """Runs one seed's stages in `folder`, numbered, timed and cached."""

    def __init__(self, recipe: StudyConfig, seed: int, folder: Path, run: StudyRun, progress: Progress):
        self.recipe, self.seed, self.folder, self.run, self.progress = recipe, seed, folder, run, progress
        self.names = stage_names(recipe, run.variants)
        self.fps: dict[str, str] = {}
        self.stage_s: dict[str, float | None] = {}

    def _do(self, name: str, output: Path, clear: Path, settings: dict, compute: Callable[[bool], None]) -> None:
        """Skip stage `name` when cached, else run `compute(resuming)`; record its fingerprint and seconds."""
        step = Step(name, self.folder / "stages" / f"{name}.json", output, clear, settings)
        self.fps[name] = step.fingerprint
        k = self.names.index(name)
        if step.cached() and not self.run.force:
            seconds = step.stored().get("seconds")
            self.progress.cached(self.seed, k, seconds)
        else:
            self.progress.start(self.seed, k)
            resuming = step.begin(self.run.force)
            t0 = time.perf_counter()
            compute(resuming)
            seconds = time.perf_counter() - t0
            step.finish(seconds)
            self.progress.done(name, seconds)
        self.stage_s[name] = None if seconds is None else round(seconds, 1)

    def train(self, name: str, reads: dict[str, str], **kw) -> dict:
        """Training stage `name` in runs/<name>; `reads` = {TrainConfig field: stage whose folder it names}."""
        from quant.train.checkpoint import checkpoint_dir, latest_checkpoint
        from quant.train.loop import TrainConfig, train
        out = self.folder / "runs" / name
        r = self.recipe
        paths = {f: str(self.folder / "runs" / stage) for f, stage in reads.items()}
        cfg = TrainConfig(out=str(out), task=r.task, max_length=r.max_length, seed=self.seed, limit=r.limit,
                          save_every=self.run.save_every, **paths, **kw)
        settings = {k: v for k, v in hashed(cfg).items() if k not in NOT_SETTINGS}
        settings["teacher_outputs"] = "stored" if cfg.teacher_store else "online"
        settings.update({f: {"stage": stage, "fingerprint": self.fps[stage]} for f, stage in reads.items()})

        def compute(resuming: bool) -> None:
            checkpoint = latest_checkpoint(out) if resuming else None
            if checkpoint is not None:  # continue with the checkpoint interval it was written with
                from quant.train.checkpoint import load_state
                saved = json.loads(load_state(checkpoint)["meta"])["config"]["save_every"]
                train(replace(cfg, resume=True, save_every=saved))
            else:
                shutil.rmtree(out, ignore_errors=True)  # killed before its first checkpoint: start afresh
                train(cfg)
            shutil.rmtree(checkpoint_dir(out), ignore_errors=True)  # finished: only a killed stage resumes

        self._do(name, out / "metrics.json", out, {"train": settings}, compute)
        return json.loads((out / "metrics.json").read_text())

    def teacher_test(self) -> list[int]:
        """The teacher's test-split predictions, in the split's order (reports/teacher-predictions.json)."""
        r = self.recipe
        path = self.folder / "reports" / "teacher-predictions.json"
        settings = {"predict": self.fps["teacher"], "task": r.task, "split": "test", "limit": r.limit,
                    "max_length": r.max_length}
        self._do("predict-teacher", path, path, settings,
                 lambda _: predict_split(self.folder / "runs" / "teacher", r, path))
        return json.loads(path.read_text())["predictions"]

    def export(self, v: str) -> Path:
        from export.pipeline import export_run
        run = f"{self.recipe.quant_tag}-{v}"
        path = self.folder / model_file(self.recipe, v)
        self._do(self.recipe.quant_stage("export", v), path, path, {"export": self.fps[run]},
                 lambda _: export_run(self.folder / "runs" / run, path))
        return path

    def simulate(self, v: str, model: Path) -> Path:
        r = self.recipe
        name = r.quant_stage("simulate", v)
        path = self.folder / "reports" / f"{name.removeprefix('simulate-')}.json"  # <variant> at W8A8, else <tag>-<variant>
        settings = {"simulate": self.fps[r.quant_stage("export", v)], "task": r.task, "split": "test", "limit": r.limit,
                    "max_length": r.max_length, "ort_check": self.run.ort_check}
        self._do(name, path, path, settings,
                 lambda _: simulate_split(model, r, self.run.ort_check, path, self.progress.say))
        return path


def train_teacher(st: SeedStages) -> dict:
    """The teacher's metrics."""
    from quant.train.distill import DistillConfig
    r = st.recipe
    return st.train("teacher", {}, attention=registry.baseline(), teacher=r.teacher, float_model=True,
                    distill=DistillConfig(mode="none"), epochs=r.teacher_epochs, train_limit=r.teacher_train_limit)


def train_students(st: SeedStages) -> dict[str, dict]:
    """Float students, QAT students: {run name: metrics}."""
    from quant.train.distill import DistillConfig
    r, variants = st.recipe, st.run.variants
    metrics = {}
    students = r.students(variants)
    distill = DistillConfig(mode="task", hidden_layers=r.hidden_layers)
    student = dict(float_model=True, distill=distill, transfer_copies=r.transfer_copies,
                   transfer_plots=r.transfer_plots, epochs=r.student_epochs, train_limit=r.student_train_limit,
                   batch_size=r.student_batch_size, lr=r.student_lr, teacher_store=str(st.folder / "teacher_store"))
    for v in students:
        metrics[f"float-{v}"] = st.train(f"float-{v}", {"teacher": "teacher"}, attention=v,
                                         layer_init_steps=0 if v == registry.baseline() else r.layer_init_steps,
                                         block_init_steps=0 if v == registry.baseline() else r.block_init_steps,
                                         **{**student, **r.student_options(v)})
    for v in variants:
        reads = {"teacher": "teacher", **({"init_student": f"float-{v}"} if v in students else {})}
        metrics[f"{r.quant_tag}-{v}"] = st.train(f"{r.quant_tag}-{v}", reads, attention=v, **r.quant_options(),
                                               distill=distill, epochs=r.qat_epochs,
                                               teacher_store=str(st.folder / "teacher_store"),
                                               train_limit=r.qat_train_limit, batch_size=r.qat_batch_size)
    return metrics


def run_seed(recipe: StudyConfig, seed: int, folder: Path, run: StudyRun, progress: Progress) -> SeedResult:
    """Every stage of one seed in `folder` (cached ones skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    st = SeedStages(recipe, seed, folder, run, progress)
    metrics = {"teacher": train_teacher(st)}
    teacher = st.teacher_test()
    metrics.update(train_students(st))
    models = {v: st.export(v) for v in run.variants}
    reports = {v: st.simulate(v, models[v]) for v in run.variants}
    return SeedResult(metrics, models, reports, teacher, dict(st.stage_s))


def predict_split(run_dir: Path, recipe: StudyConfig, path: Path) -> None:
    """Write the test-split predictions (argmax) and accuracy of the float model in `run_dir`, batched
    and on the device as its training run evaluated it (so the accuracy is its metrics.json's)."""
    from models.files import write_text_atomic
    from models.loading import load_checkpoint, load_tokenizer
    from quant.data.metrics import compute_metrics, predictions_to_labels
    from quant.data.tasks import encode, get_task, load_split
    from quant.train.runtime import predict, setup_distributed

    split = load_split(recipe.task, "test", limit=recipe.limit)
    data = encode(split, load_tokenizer(run_dir), recipe.max_length)
    batch = json.loads((run_dir / "metrics.json").read_text())["config"]["eval_batch_size"]
    device = setup_distributed().device
    logits = predict(load_checkpoint(run_dir)[0].to(device), data, batch, device)
    preds = predictions_to_labels(get_task(recipe.task), logits)
    accuracy = compute_metrics(recipe.task, logits, data["labels"])["accuracy"]  # as the training run's evaluation
    write_text_atomic(path, json.dumps({"predictions": [int(p) for p in preds], "accuracy": accuracy}) + "\n")


def simulate_split(model: Path, recipe: StudyConfig, ort_check: int, path: Path, say) -> None:
    """hwsim's run report of the test split (`hwsim.app.texts.simulate_texts`, truncated like training)."""
    from hwsim.sim.graph import load_plan
    from hwsim.app.texts import resolve_tokenizer, simulate_texts
    from models.files import write_text_atomic
    from quant.data.tasks import load_split

    split = load_split(recipe.task, "test", limit=recipe.limit)
    say(f"simulating {len(split)} test snippets with {model.name} (onnxruntime check on {ort_check})")
    plan = load_plan(model)
    report = simulate_texts(plan, model, [t[0] for t in split.texts], list(split.labels),
                            resolve_tokenizer(None, plan.meta), ort_check, max_length=recipe.max_length)
    write_text_atomic(path, json.dumps(report, indent=1))


# ---------------------------------------------------------------- the study

def _say(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_study(recipe: StudyConfig, run: StudyRun, results: str | Path | None = "results",
              say: Callable[[str], None] = _say) -> list[Path]:
    """Every seed in turn; one ledger record per finished seed in `results` (None: none), unless the
    ledger holds it already (`hwsim.app.ledger.recorded`). Returns the records' paths."""
    from hwsim.app.ledger import git_commit, recorded, replay_warning, seed_record, write_record

    progress = Progress(list(run.seeds), stage_names(recipe, run.variants), say)
    out, written = Path(run.out), []
    say(f"study of {len(run.seeds)} seed(s) x {', '.join(run.variants)} in {out.resolve()}")
    warning = replay_warning(git_commit()) if results is not None else None
    if warning:  # said before hours of training, not after
        say(f"warning: {warning}")
    for seed in run.seeds:
        t0 = time.perf_counter()
        result = run_seed(recipe, seed, out / f"seed{seed}", run, progress)
        record = seed_record("study", recipe, seed, result.metrics, result.reports, result.teacher_predictions,
                             {**result.stage_s, "total": round(time.perf_counter() - t0, 1)})
        for v, row in record["variants"].items():
            say(f"seed {seed} {v}: {recipe.quant_tag} test {100 * row['int8']['test_accuracy_hwsim']:.2f} % (hwsim), "
                f"hwsim == QAT evaluation: {'yes' if row['int8']['hwsim_equals_qat'] else 'NO'}")
        if results is None:
            continue
        known = recorded(record, Path(results))  # a rerun after a kill: the finished seeds' records exist
        written.append(known or write_record(record, Path(results)))
        say(f"seed {seed} record: {written[-1]}{' (recorded before)' if known else ''}")
    return written


# ---------------------------------------------------------------- command line

def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _optional_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "all") else int(text)


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The study's options; `skip`: recipe fields a sibling command sets itself (`hwsim widths`)."""
    parser.add_argument("--task", default="rt", choices=TASKS, help="the task")
    parser.add_argument("--seeds", type=_int_list, default="0", help="comma-separated seeds, run in turn")
    parser.add_argument("--variants", type=_names, default=",".join(registry.names()),
                        help="comma-separated attention variants")
    parser.add_argument("--out", default=StudyRun.out, help="study folder (one sub-folder per seed)")
    parser.add_argument("--results", default="results", help="folder the seeds' ledger records are written to")
    parser.add_argument("--no-record", action="store_true", help="write no ledger record")
    parser.add_argument("--save-every", type=int, default=StudyRun.save_every,
                        help="training steps between training checkpoints (a killed stage resumes from the last)")
    parser.add_argument("--ort-check", type=int, default=StudyRun.ort_check,
                        help="first N test samples also run in onnxruntime")
    parser.add_argument("--force", action="store_true", help="recompute every stage even when cached")
    recipe = parser.add_argument_group("recipe (defaults: the whole recipe; hashed into the record's fingerprint)")
    for f in fields(StudyConfig):
        if f.name == "task" or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            recipe.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float, "str": str, "str | None": _optional_str}.get(f.type, _optional_int)
            recipe.add_argument(flag, type=kind, default=f.default,
                                help=f.metadata["help"] + (" (none: all)" if kind is _optional_int else ""))


def config_from_args(args: argparse.Namespace) -> tuple[StudyConfig, StudyRun]:
    recipe = StudyConfig(**{f.name: getattr(args, f.name) for f in fields(StudyConfig) if hasattr(args, f.name)})
    run = StudyRun(out=args.out, seeds=args.seeds, variants=args.variants, save_every=args.save_every,
                   ort_check=args.ort_check, force=args.force)
    return recipe, run


def run(args: argparse.Namespace) -> int:
    recipe, study = config_from_args(args)
    run_study(recipe, study, None if args.no_record else args.results)
    return 0

