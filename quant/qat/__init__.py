"""Quantization-aware model: config, Brevitas quantizers, quantized modules and model, straight-through values, lowering to an IntProgram."""
