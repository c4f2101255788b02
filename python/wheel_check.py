"""Checks an installed salience wheel (python/wheel_test.sh runs it in a
fresh venv): it is imported from that venv, its module loads the shared
libraries the wheel carries rather than the system's, and it agrees with
torch on the three entry points, forward and backward.

    python wheel_check.py VENV_DIR
"""

from __future__ import annotations

import pathlib
import sys

import torch
import torch.nn.functional as F

import salience
from salience import _salience


def check_location(venv: pathlib.Path) -> None:
    module = pathlib.Path(_salience.__file__).resolve()
    assert venv.resolve() in module.parents, f"salience imported from {module}, not {venv}"
    # The dynamic loader's view of this process: Highway and OpenMP come
    # from the wheel's salience.libs, none from the system's library path.
    maps = pathlib.Path("/proc/self/maps").read_text().splitlines()
    loaded = {line.split()[-1] for line in maps if ".so" in line.split()[-1]}
    hwy = [path for path in loaded if "libhwy" in path]
    assert hwy and all("salience.libs" in path for path in hwy), hwy
    print(f"wheel check: salience {salience.__version__} from {module.parent}; "
          f"Highway from {pathlib.Path(hwy[0]).parent.name}/")


def check_parity() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 8, 300, 64, requires_grad=True)
    k = torch.randn(2, 2, 300, 64, requires_grad=True)
    v = torch.randn(2, 2, 300, 64, requires_grad=True)
    mask = torch.rand(2, 1, 300, 300) > 0.2
    for options in ({"is_causal": True}, {"attn_mask": mask}):
        ours = salience.scaled_dot_product_attention(q, k, v, enable_gqa=True, **options)
        theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **options)
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=2e-5)
        grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
        expected = torch.autograd.grad(theirs.square().sum(), (q, k, v))
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    low = [x.detach().to(torch.bfloat16) for x in (q, k, v)]
    torch.testing.assert_close(
        salience.scaled_dot_product_attention(*low, is_causal=True, enable_gqa=True).float(),
        F.scaled_dot_product_attention(*low, is_causal=True, enable_gqa=True).float(),
        atol=2e-2, rtol=2e-2)
    # A decode step against a cache (flash-attn's layout, [batch, seq, heads, dim]).
    cache_k, cache_v = (x.detach().transpose(1, 2).contiguous() for x in (k, v))
    step = q.detach()[:, :, -1:].transpose(1, 2).contiguous()
    out = salience.flash_attn_with_kvcache(step, cache_k, cache_v, causal=True)
    expected = F.scaled_dot_product_attention(q.detach()[:, :, -1:], k.detach(), v.detach(),
                                              enable_gqa=True)
    torch.testing.assert_close(out, expected.transpose(1, 2), atol=2e-5, rtol=2e-5)
    print("wheel check: forward, backward, bf16 and decode agree with torch "
          f"{torch.__version__}")


if __name__ == "__main__":
    check_location(pathlib.Path(sys.argv[1]))
    check_parity()
