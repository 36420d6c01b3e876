"""The package layout as a contract: stages import one way (docs/DESIGN.md, "Layout").

Every module's imports are read from its source (ast, nothing is executed), so a new import that
runs against the direction fails here with the module and the import named.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "quant", "export", "hwsim")

# importer prefix -> project packages it may import (longest prefix wins)
ALLOWED: dict[str, tuple[str, ...]] = {
    "models": ("models",),
    "quant.data": ("models", "quant.data"),
    "quant.ir": ("quant.ir",),
    # a synthetic program's variant is found through the (torch-free) registry
    "quant.intops": ("models.variants", "quant.ir", "quant.intops"),
    "quant.qat": ("models", "quant.ir", "quant.intops", "quant.qat"),
    "quant.train": ("models", "quant.data", "quant.ir", "quant.intops", "quant.qat", "quant.train"),
    "quant": ("quant",),
    # export's library speaks the IR only; its pipeline glue and CLI lower trained models
    "export": ("models", "quant.ir", "export"),
    "export.pipeline": ("models", "quant.ir", "quant.qat", "quant.train", "export"),
    "export.cli": ("models", "quant.ir", "quant.qat", "quant.train", "export"),
    "export.qonnx": ("models", "quant.ir", "quant.qat", "export"),
    # the simulator speaks the IR; runs over labelled data read quant.data; the demo drives every stage
    "hwsim": ("models", "quant.ir", "export", "hwsim"),
    "hwsim.run_cli": ("models", "quant.ir", "quant.data", "export", "hwsim"),
    "hwsim.texts": ("models", "quant.ir", "quant.data", "export", "hwsim"),
    "hwsim.demo": ("models", "quant", "export", "hwsim"),
    "hwsim.study": ("models", "quant", "export", "hwsim"),
    "hwsim.demo_report": ("models", "quant.ir", "quant.data", "export", "hwsim"),
    # the results ledger packs the labelled test split with each record and tests pairs (quant.data, torch-free)
    "hwsim.ledger": ("models", "quant.ir", "quant.data", "export", "hwsim"),
    "hwsim.ledger_stats": ("models", "quant.ir", "quant.data", "export", "hwsim"),
    "hwsim.results_cli": ("models", "quant.ir", "quant.data", "export", "hwsim"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path) -> list[str]:
    """Absolute names of the project modules `path` imports (top level and inside functions)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n.split(".")[0] in PACKAGES]


def _rule(module: str) -> tuple[str, ...]:
    best = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)
    return ALLOWED[best]


def _allowed(target: str, rule: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in rule)


MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    module = _module_name(path)
    rule = _rule(module)
    against = [t for t in _project_imports(path) if not _allowed(t, rule)]
    assert not against, f"{module} imports {against}; it may import only {rule} (docs/DESIGN.md, Layout)"


def test_every_stage_package_says_what_it_holds():
    for pkg in ("quant", "quant/data", "quant/ir", "quant/intops", "quant/qat", "quant/train"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()[0]) > 20, f"{pkg}/__init__.py needs a docstring saying what it holds"
