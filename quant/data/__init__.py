"""Tasks, splits, tokenised batches and metrics of the classification tasks (torch-free)."""
