"""Length-grouped batches: the data order of training, the layer-by-layer init and the inhibitor calibration.

`take` trims a batch to its longest example, so a batch costs `size * longest` token positions. Random
batches of RT snippets (MiniLM tokenizer, batch 16, truncation 64) cost 1.79x their real tokens;
batches of similar lengths cost 1.02x (REFERENCE.md section 6). The order of epoch e:

1. a permutation of all indices from a generator seeded with `seed + epoch` (that of
   `torch.utils.data.DistributedSampler`), padded to a multiple of the process count by repeating its
   first indices (as DistributedSampler does);
2. cut into windows of `window` global batches (`batch_size` per process, times the process count);
   each window sorted by length (stable) and cut into global batches, so one batch holds
   neighbouring lengths but the window is still a random draw of the data;
3. the global batches shuffled with the same generator, so lengths do not rise and fall with the steps;
4. process r takes the r-th of `world` equal slices of every global batch: at each step every process
   runs a batch of about the same length (no process waits on a longer one under DDP), and every
   process has the same number of steps.

`window=0` leaves out steps 2 and 3: random batches, and in one process exactly the batches of the
DistributedSampler order the loop used before. The order is a function of (seed, epoch) alone; a
resumed run finds its position as the step within the epoch.
"""
from __future__ import annotations

import torch


class LengthGroupedSampler:
    """Batches of indices into a split whose examples have `lengths` (valid tokens per example)."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, seed: int = 0, window: int = 50,
                 world: int = 1, rank: int = 0):
        if batch_size < 1 or window < 0 or not 0 <= rank < world:
            raise ValueError(f"need batch_size >= 1, window >= 0 and 0 <= rank < world, got "
                             f"{batch_size}, {window}, {rank}, {world}")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size, self.seed, self.window, self.world, self.rank = batch_size, seed, window, world, rank

    def __len__(self) -> int:
        """Batches per epoch (the same on every process)."""
        per_rank = -(-len(self.lengths) // self.world)
        return -(-per_rank // self.batch_size)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every process's batches of `epoch`, concatenated in rank order (a step's whole batch)."""
        gen = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=gen).tolist()
        padded = -(-n // self.world) * self.world
        order += (order * (-(-padded // max(n, 1))))[:padded - n]  # repeat from the start
        size = self.batch_size * self.world
        if self.window == 0:
            return [order[i:i + size] for i in range(0, len(order), size)]
        span = self.window * size
        batches = []
        for start in range(0, len(order), span):
            chunk = torch.tensor(order[start:start + span], dtype=torch.long)
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)].tolist()  # (window * size,)
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`: its slice of every global batch."""
        mine = []
        for batch in self.global_batches(epoch):
            share = len(batch) // self.world  # a multiple of world: the order was padded to one
            mine.append(batch[self.rank * share:(self.rank + 1) * share])
        return mine


def padding_ratio(lengths: torch.Tensor, batches: list[list[int]]) -> float:
    """Token positions that batches trimmed to their longest member process, over the real tokens."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    processed = sum(len(b) * int(lengths[b].max()) for b in batches if b)
    return processed / max(1, int(sum(int(lengths[b].sum()) for b in batches if b)))
