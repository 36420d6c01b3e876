"""The integer op definitions (pure torch-int64 functions) and the PyTorch integer reference executor.

Import the ops from here (`from quant import intops; intops.linear(...)`); `quant.intops.reference`
runs an `IntProgram` with them and `quant.intops.synth` builds synthetic programs for tests.
"""
from quant.intops.attention import (  # noqa: F401  (re-exported: this package's API)
    dot_attention,
    dot_attention_attrs,
    inhibit,
    inhibitor_attention,
    int_exp,
    l1_scores,
    softmax,
    softmax_constants,
)
from quant.intops.base import (  # noqa: F401
    ACC_BITS,
    Check,
    acc_bits_for,
    as_i64,
    check_acc_bits,
    exact_matmul,
    floor_div,
    int_range,
    isqrt,
    requant,
    requant_channels,
    requant_heads,
    saturate,
)
from quant.intops.ops import (  # noqa: F401
    OPS,
    add,
    embed,
    layernorm,
    linear,
    linear_acc_bits,
    merge_heads,
    scale_channels,
    split_heads,
    take_first,
)
