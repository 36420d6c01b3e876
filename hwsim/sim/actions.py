"""The `action@width` key of hwsim's counts and of the energy and area tables: one type writes and reads it.

An action is an arithmetic step (`add`, `mul`, `abs`, `cmp`, `relu`, `shiftc`, ...), a memory
access (`read.<level>`, `write.<level>`: words of the level's width; `hwsim.sim.memory`) or a traffic
volume (`bytes.read.<level>`, `bytes.write.<level>`: bytes moved, counted but never priced). The
width is in bits: one number, or `AxB` (A >= B) for the operand widths of a multiplication
(`mul@8x8`). Counts and tables keep the text form (`format`) as their keys; `parse` reads it back.
"""
from __future__ import annotations

from dataclasses import dataclass

TRAFFIC_PREFIX = "bytes."
MEMORY_PREFIXES = ("read.", "write.")


@dataclass(frozen=True)
class ActionKey:
    """One `action@width` key.

    >>> key = ActionKey.parse("read.dram@64"); key
    ActionKey(action='read.dram', width='64')
    >>> key.is_memory, key.is_priced, key.level, key.bits
    (True, True, 'dram', (64,))
    >>> ActionKey.of("mul", 8, 4).format(), ActionKey.parse("bytes.write.sram@8").is_priced
    ('mul@8x4', False)
    """

    action: str
    width: str

    def __post_init__(self) -> None:
        for part, value in (("action", self.action), ("width", self.width)):
            if not value or "@" in value:
                raise ValueError(f"{part} {value!r} of an action key must be non-empty text without '@'")

    @classmethod
    def parse(cls, text: str) -> "ActionKey":
        """The key written as `action@width`; ValueError for text that is not one."""
        action, sep, width = text.partition("@")
        if not sep:
            raise ValueError(f"{text!r} is not an action@width key")
        return cls(action, width)

    @classmethod
    def of(cls, action: str, *bits: int) -> "ActionKey":
        """`action` at operand widths `bits` (two for a multiplication: `mul@AxB`)."""
        return cls(action, "x".join(str(b) for b in bits))

    def format(self) -> str:
        return f"{self.action}@{self.width}"

    @property
    def is_memory(self) -> bool:
        """A memory access (`read.` / `write.`), priced as data movement."""
        return self.action.startswith(MEMORY_PREFIXES)

    @property
    def is_priced(self) -> bool:
        """Every key but a traffic volume (`bytes.`) has a price."""
        return not self.action.startswith(TRAFFIC_PREFIX)

    @property
    def level(self) -> str | None:
        """The memory level of an access or a traffic volume (`dram`, `sram`, ...); None for arithmetic."""
        action = self.action.removeprefix(TRAFFIC_PREFIX)
        return action.split(".", 1)[1] if action.startswith(MEMORY_PREFIXES) else None

    @property
    def bits(self) -> tuple[int, ...]:
        """The width's numbers, for ordering (`8x4` -> (8, 4))."""
        return tuple(int(p) for p in self.width.split("x") if p.isdigit())
