"""Training: float fine-tuning and QAT loop, student building, distillation, checkpoints, CLI."""
