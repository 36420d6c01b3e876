"""The results ledger on synthetic records with known predictions: hand-counted McNemar pairs, a
bootstrap interval around the known difference, and refusal of malformed or foreign records."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim.app.cli import main
from hwsim.app.ledger import SCHEMA, load_records, pack_labels, recipe, stage_times_from_log, unpack_labels, write_record
from hwsim.app.ledger_stats import bootstrap_diff, effects, markdown, summarise
from models.errors import UserError


def make_record(seed: int, labels: list[int], preds: dict[str, list[int]], created: str,
                teacher: list[int] | None = None) -> dict:
    settings = {"max_length": 12}
    data = {"train": 10, "validation": 5, "test": len(labels), "train_used": {"teacher": 10, "student": 10, "qat": 10}}
    acc = {v: float(np.mean(np.array(p) == np.array(labels))) for v, p in preds.items()}
    return {"schema": SCHEMA, "kind": "demo", "created": created, "commit": "0" * 40,
            "recipe": recipe(settings, "rt", data), "seed": seed, "task": "rt", "data": data, "stage_s": {"total": 1.0}, "machine": {"cpu_count": 1},
            "teacher": {"validation_accuracy": 0.8,
                        "test_accuracy": 0.8 if teacher is None else float(np.mean(np.array(teacher) == np.array(labels))),
                        "test_predictions": None if teacher is None else pack_labels(teacher)},
            "variants": {v: {"float": {"validation_accuracy": a, "test_accuracy": a},
                             "int8": {"validation_accuracy": a, "test_accuracy_qat": a, "test_accuracy_hwsim": a,
                                      "hwsim_equals_qat": True},
                             "test_predictions": pack_labels(preds[v])} for v, a in acc.items()},
            "test_labels": pack_labels(labels)}


def right_on(labels: list[int], idx) -> list[int]:
    return [y if i in idx else 1 - y for i, y in enumerate(labels)]


def two_seeds(tmp_path):
    """Seed 0: 100 labels; dot right on the first 50, inhibitor on the first 40 and on 60..79 (so
    inhibitor only: 20, dot only: 10). Seed 1: dot right on 50..99, inhibitor on 30..99 (inhibitor
    only: 20, dot only: 0). Pooled: 40 vs 10, difference (60 + 70 - 50 - 50) / 200 = +0.15."""
    labels = [i % 2 for i in range(100)]

    def right_on(idx):
        return [y if i in idx else 1 - y for i, y in enumerate(labels)]

    r0 = make_record(0, labels, {"dot": right_on(range(50)), "inhibitor": right_on([*range(40), *range(60, 80)]),
                                 "symmetric": right_on(range(50))}, "2026-01-01T00:00:00Z")
    r1 = make_record(1, labels, {"dot": right_on(range(50, 100)), "inhibitor": right_on(range(30, 100)),
                                 "symmetric": right_on(range(50, 100))}, "2026-01-02T00:00:00Z")
    return [write_record(r, tmp_path) for r in (r0, r1)]


def test_pack_round_trip():
    assert pack_labels([0, 1, 1, 10]) == "011a" and unpack_labels("011a") == [0, 1, 1, 10]
    with pytest.raises(ValueError, match="hex digit"):
        pack_labels([16])


def test_results_pool_seeds(tmp_path):
    two_seeds(tmp_path)
    (s,) = summarise(load_records(tmp_path))
    assert s["seeds"] == [0, 1] and s["variants"]["dot"]["mean"] == 0.5
    assert s["variants"]["inhibitor"]["mean"] == pytest.approx(0.65)
    assert s["variants"]["inhibitor"]["sd"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    inh, sym, teacher = s["comparisons"]
    assert (inh["a"], inh["b"], inh["n"]) == ("inhibitor", "dot", 200)
    assert inh["mcnemar"]["a_right_b_wrong"] == 40 and inh["mcnemar"]["a_wrong_b_right"] == 10
    assert inh["diff"] == pytest.approx(0.15) and inh["low"] < 0.15 < inh["high"] and inh["low"] > 0
    assert sym["mcnemar"]["a_right_b_wrong"] == sym["mcnemar"]["a_wrong_b_right"] == 0 and sym["diff"] == 0
    # no teacher predictions: difference of means over the two seeds with a t interval
    assert teacher["b"] == "teacher" and teacher["unit"] == "seeds" and teacher["diff"] == pytest.approx(-0.15)
    assert teacher["low"] < -0.15 < teacher["high"]
    assert "| int8 inhibitor - int8 dot | 200 pooled test pairs | +15.00 |" in markdown([s])


def test_bootstrap_matches_index_resampling():
    """The multinomial shortcut has the percentiles of resampling indices, and is seeded."""
    rng = np.random.default_rng(1)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    diff, lo, hi = bootstrap_diff(a, b)
    assert bootstrap_diff(a, b) == (diff, lo, hi) and diff == pytest.approx(a.mean() - b.mean())
    idx = rng.integers(0, 300, size=(4000, 300))
    naive = np.percentile(a[idx].mean(1) - b[idx].mean(1), [2.5, 97.5])
    assert lo == pytest.approx(naive[0], abs=0.01) and hi == pytest.approx(naive[1], abs=0.01)


def test_snippet_bootstrap_keeps_a_snippets_seeds_together():
    """Seeds share one test split. Three seeds that predict alike are one seed's evidence three times:
    resampling snippets with all their seeds gives that one seed's interval (bootstrap_mean of its
    per-snippet differences), where resampling the 3 x n pooled pairs one by one (`bootstrap_diff`)
    narrows it by about sqrt(3). It matches resampling snippet indices directly, and one seed is
    `bootstrap_diff` itself."""
    from hwsim.app.ledger_stats import bootstrap_mean, bootstrap_snippets
    rng = np.random.default_rng(2)
    a, b = rng.random(400) < 0.75, rng.random(400) < 0.65
    three_a, three_b = np.tile(a, 3), np.tile(b, 3)
    diff, lo, hi = bootstrap_snippets(three_a, three_b, 3)
    one = bootstrap_mean(a.astype(int) - b)
    assert (diff, lo, hi) == pytest.approx(one, abs=1e-12)
    _, plo, phi = bootstrap_diff(three_a, three_b)
    assert (hi - lo) / (phi - plo) == pytest.approx(3 ** 0.5, rel=0.08)
    assert bootstrap_snippets(a, b, 1) == bootstrap_diff(a, b)
    # independent seeds: against resampling snippet indices, each with its three seeds' pairs
    sa, sb = rng.random((3, 400)) < 0.75, rng.random((3, 400)) < 0.65
    diff, lo, hi = bootstrap_snippets(sa.ravel(), sb.ravel(), 3)
    idx = rng.integers(0, 400, size=(4000, 400))
    naive = np.percentile((sa[:, idx].astype(int) - sb[:, idx]).mean((0, 2)), [2.5, 97.5])
    assert diff == pytest.approx(sa.mean() - sb.mean())
    assert lo == pytest.approx(naive[0], abs=0.01) and hi == pytest.approx(naive[1], abs=0.01)


def test_latest_record_of_a_seed_wins(tmp_path):
    first, _ = two_seeds(tmp_path)
    again = json.loads(first.read_text())
    again["created"] = "2026-03-01T00:00:00Z"
    write_record(again, tmp_path)
    (s,) = summarise(load_records(tmp_path))
    assert s["seeds"] == [0, 1] and s["superseded"] == 1
    with pytest.raises(UserError, match="exists already"):
        write_record(again, tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_cli_prints_and_writes_markdown(tmp_path, capsys):
    two_seeds(tmp_path / "results")
    assert main(["results", str(tmp_path / "results"), "--markdown", str(tmp_path / "acc.md")]) == 0
    printed = capsys.readouterr().out
    assert "int8 inhibitor - int8 dot" in printed and (tmp_path / "acc.md").read_text() in printed


def test_cli_keeps_the_named_recipes_only(tmp_path, capsys):
    two_seeds(tmp_path)
    (fp,) = {r["recipe"]["fingerprint"] for _, r in load_records(tmp_path)}
    assert main(["results", str(tmp_path), "--recipe", fp]) == 0
    assert f"Recipe `{fp}`" in capsys.readouterr().out
    assert main(["results", str(tmp_path), "--recipe", "0123456789ab", "--markdown", str(tmp_path / "a.md")]) == 2
    err = capsys.readouterr().err
    assert "no records of recipe(s) 0123456789ab" in err and fp in err and not (tmp_path / "a.md").exists()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"variants": {}}), "not a results record"),
    (json.dumps([1, 2]), "not a results record"),
])
def test_foreign_or_malformed_file_is_refused_by_name(tmp_path, capsys, content, message):
    two_seeds(tmp_path)
    (tmp_path / "zz-foreign.json").write_text(content)
    with pytest.raises(UserError, match=f"zz-foreign.json: {message}"):
        load_records(tmp_path)
    assert main(["results", str(tmp_path)]) == 2
    assert "zz-foreign.json" in capsys.readouterr().err


def test_truncated_predictions_are_refused(tmp_path):
    path = two_seeds(tmp_path)[0]
    record = json.loads(path.read_text())
    record["variants"]["dot"]["test_predictions"] = record["variants"]["dot"]["test_predictions"][:-1]
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match=f"{path.name}: variant 'dot' needs test_predictions as 100 hex digits"):
        load_records(tmp_path)


def test_stage_times_from_demo_log():
    log = ["[demo 09:16:39] writing to x", "noise", "[demo 09:16:40] training teacher ...",
           "[demo 09:27:47] exporting a -> b", "[demo 09:27:52] simulating 3 RT", "[demo 09:28:51] sweep dot: 1",
           "[demo 09:29:00] scenario table: 21 cells", "[demo 09:29:11] scenario table done in 18.8 s",
           "[demo 09:29:14] done in 755 s: demo_out/summary.md"]
    assert stage_times_from_log(log) == {"train": 668.0, "export": 5.0, "simulate": 59.0, "sweep": 9.0,
                                         "scenarios": 11.0, "report": 3.0, "total": 755.0}


def test_teacher_predictions_give_a_paired_comparison(tmp_path):
    """Seed 0: teacher right on 0..69, inhibitor on 0..39 and 60..79 (inhibitor only 10, teacher only
    20); seed 1: teacher right on 0..89, inhibitor on 30..99 (10 and 30). Pooled 20 vs 50: -0.15."""
    labels = [i % 2 for i in range(100)]
    for seed, teacher, inh in ((0, range(70), [*range(40), *range(60, 80)]), (1, range(90), range(30, 100))):
        write_record(make_record(seed, labels, {"dot": right_on(labels, range(50)), "inhibitor": right_on(labels, inh)},
                                 f"2026-01-0{seed + 1}T00:00:00Z", teacher=right_on(labels, teacher)), tmp_path)
    (s,) = summarise(load_records(tmp_path))
    (c,) = [c for c in s["comparisons"] if c["b"] == "teacher"]
    assert c["unit"] == "pooled test pairs" and c["n"] == 200 and c["diff"] == pytest.approx(-0.15)
    assert (c["mcnemar"]["a_right_b_wrong"], c["mcnemar"]["a_wrong_b_right"]) == (20, 50) and c["high"] < 0


def test_schema_1_records_pool_with_schema_2_records(tmp_path):
    """A record of the demo before the study (schema 1, no teacher predictions) pools with the study's
    of the same recipe; the teacher comparison then falls back to the difference over seeds."""
    old, new = two_seeds(tmp_path)
    first = json.loads(old.read_text())
    old.unlink()
    first["schema"] = "hwsim-ledger/1"
    (tmp_path / old.name).write_text(json.dumps(first))
    labels = unpack_labels(first["test_labels"])
    second = json.loads(new.read_text())
    second["teacher"]["test_predictions"] = pack_labels(right_on(labels, range(80)))
    new.write_text(json.dumps(second))
    (s,) = summarise(load_records(tmp_path))
    assert s["seeds"] == [0, 1] and s["variants"]["inhibitor"]["mean"] == pytest.approx(0.65)
    assert [c["unit"] for c in s["comparisons"] if c["b"] == "teacher"] == ["seeds"]


def test_a_seed_with_fewer_variants(tmp_path):
    """Seed 2 ran the inhibitor alone: the dot's figures and the paired pools keep seeds 0 and 1."""
    two_seeds(tmp_path)
    labels = [i % 2 for i in range(100)]
    write_record(make_record(2, labels, {"inhibitor": right_on(labels, range(80))}, "2026-01-03T00:00:00Z"), tmp_path)
    (s,) = summarise(load_records(tmp_path))
    assert s["seeds"] == [0, 1, 2] and s["variants"]["dot"]["seeds"] == [0, 1]
    assert s["variants"]["inhibitor"]["mean"] == pytest.approx((0.6 + 0.7 + 0.8) / 3)
    inh = s["comparisons"][0]
    assert (inh["a"], inh["b"], inh["n"], inh["diff"]) == ("inhibitor", "dot", 200, pytest.approx(0.15))
    assert "| dot (seed(s) 0, 1) |" in markdown([s]) and "| inhibitor |" in markdown([s])


def test_malformed_teacher_predictions_are_refused(tmp_path):
    path = two_seeds(tmp_path)[0]
    record = json.loads(path.read_text())
    record["teacher"]["test_predictions"] = "01"
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match=f"{path.name}: teacher.test_predictions must be null or 100 hex digits"):
        load_records(tmp_path)


def test_a_run_recorded_before_is_found(tmp_path):
    """A study run again after a kill finds the records of its finished seeds (times aside) instead of
    writing them twice; another commit's record of the same seed is another run."""
    from hwsim.app.ledger import recorded
    path, _ = two_seeds(tmp_path)
    again = json.loads(path.read_text())
    again["created"], again["stage_s"] = "2026-05-01T00:00:00Z", {"total": 9.0}
    assert recorded(again, tmp_path) == path and recorded(again, tmp_path / "none") is None
    assert recorded({**again, "commit": "1" * 40}, tmp_path) is None


def test_recipe_effect_of_one_setting_is_paired_over_common_seeds(tmp_path, capsys):
    """A second recipe differing in one setting (an ablation) on seeds 0 and 1, the first on 0, 1, 2:
    its effect per variant pools the two common seeds' predictions. Seed 0: inhibitor right on 40 ->
    on 60 of 100 (changed only 20, reference only 0); seed 1: 70 -> 60 (0 / 10); pooled +10 / 200."""
    labels = [i % 2 for i in range(100)]
    base = {"max_length": 12}
    data = {"train": 10, "validation": 5, "test": 100, "train_used": {"teacher": 10, "student": 10, "qat": 10}}

    def rec(seed, inhibitor_right, settings, created):
        r = make_record(seed, labels, {"dot": right_on(labels, range(50)),
                                       "inhibitor": right_on(labels, inhibitor_right)}, created)
        r["recipe"] = recipe(settings, "rt", data)
        return write_record(r, tmp_path)

    for seed, right in ((0, range(40)), (1, range(70)), (2, range(50))):
        rec(seed, right, base, f"2026-01-0{seed + 1}T00:00:00Z")
    for seed, right in ((0, range(60)), (1, range(60))):
        rec(seed, right, {**base, "hidden_layers": "last"}, f"2026-02-0{seed + 1}T00:00:00Z")
    rows = effects(load_records(tmp_path))
    inh = next(e for e in rows if e["variant"] == "inhibitor")
    dot = next(e for e in rows if e["variant"] == "dot")
    assert inh["settings"] == {"hidden_layers": (None, "last")} and inh["seeds"] == [0, 1] and inh["n"] == 200
    assert inh["diff"] == pytest.approx(0.05) and inh["per_seed"] == pytest.approx([0.2, -0.1])
    assert inh["mcnemar"]["a_right_b_wrong"] == 20 and inh["mcnemar"]["a_wrong_b_right"] == 10
    assert dot["diff"] == 0 and dot["low"] == dot["high"] == 0
    assert main(["results", str(tmp_path)]) == 0
    assert "| hidden_layers: default -> last" in capsys.readouterr().out


def test_recipes_differing_in_more_settings_are_not_an_effect(tmp_path):
    labels = [i % 2 for i in range(20)]
    data = {"train": 10, "validation": 5, "test": 20, "train_used": {"teacher": 10, "student": 10, "qat": 10}}
    for k, settings in enumerate(({"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 2})):
        r = make_record(0, labels, {"dot": labels}, f"2026-01-0{k + 1}T00:00:00Z")
        r["recipe"] = recipe(settings, "rt", data)
        write_record(r, tmp_path)
    assert effects(load_records(tmp_path)) == []


def test_a_record_that_cannot_name_its_code_is_warned_about(tmp_path):
    """Outside git the commit is 'unknown'; with changed tracked files it ends '+dirty': both warned."""
    import subprocess

    from hwsim.app.ledger import git_commit, replay_warning

    assert git_commit(tmp_path) == "unknown"
    assert "cannot be replayed" in replay_warning(git_commit(tmp_path))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("a\n")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    clean = git_commit(tmp_path)
    assert len(clean) == 40 and replay_warning(clean) is None
    (tmp_path / "f.txt").write_text("b\n")
    assert git_commit(tmp_path) == clean + "+dirty"
    assert "commit first" in replay_warning(git_commit(tmp_path))
