"""Quantization-aware training and the integer model, one sub-package per stage.

Dependencies run one way: `data` and `ir` -> `intops` -> `qat` -> `train`.

- `quant.data`: tasks, splits and metrics (torch-free).
- `quant.ir`: the integer IR, `IntProgram`, and the op specification every executor derives its
  tables from (torch-free: `export` and `hwsim` import only this).
- `quant.intops`: the integer op definitions in torch int64 and the reference executor.
- `quant.qat`: Brevitas quantizers, quantized modules and model, straight-through values, lowering.
- `quant.train`: the training loop, student building, distillation, checkpoints and its CLI.
"""
