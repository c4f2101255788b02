"""salience: exact fused attention on CPUs.

Three ways in, all on float32, bfloat16 or float16 torch tensors or NumPy
arrays on the CPU (all of one kind in a call), any strides, no copies
(DLPack), the output of the input's kind:

- scaled_dot_product_attention: torch.nn.functional's, same semantics;
- flash_attn_func, flash_attn_varlen_func (and the rest of flash-attn 2's
  entry points in salience.flash_attn_interface): same names, arguments,
  layouts and defaults;
- attention: every option of the C++ library by keyword.

The GIL is released while a kernel runs. docs/python.md is the guide.
"""

from salience._attention import attention, get_num_threads, set_num_threads
from salience._kvcache import merge_attention_states
from salience._salience import MAX_HEAD_DIM
from salience._salience import __version__ as __version__
from salience._sdpa import scaled_dot_product_attention
from salience.flash_attn_interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_with_kvcache,
)

__all__ = [
    "MAX_HEAD_DIM",
    "__version__",
    "attention",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
    "get_num_threads",
    "merge_attention_states",
    "scaled_dot_product_attention",
    "set_num_threads",
]
