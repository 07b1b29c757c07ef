"The FP8 attention op's contract with torch.compile, on the CPU (its float32 emulation): the fake output is the real one's layout."
import pytest
import torch

from cosmos_nb.fp8_attention import fp8_sdpa, quantize_per_tensor


@pytest.mark.parametrize('layout', ['contiguous', 'heads_major'])
def test_fp8_sdpa_fake_matches_the_real_output(layout):
    "Inductor checks the strides the fake kernel promised, for a (B, S, h, d) q that is contiguous or a view of (B, h, S, d)."
    torch.manual_seed(0)
    make = (lambda: torch.randn(1, 18, 2, 32)) if layout == 'contiguous' else (lambda: torch.randn(1, 2, 18, 32).transpose(1, 2))
    (q8, dq), (k8, dk), (v8, dv) = (quantize_per_tensor(make()) for _ in range(3))
    o8 = fp8_sdpa(q8, k8, v8, dq, dk, dv, 1 / dv)
    assert (o8.shape, o8.dtype) == (q8.shape, torch.float8_e4m3fn)
    torch.library.opcheck(fp8_sdpa, (q8, k8, v8, dq, dk, dv, 1 / dv), test_utils=('test_faketensor',))   # raises on any mismatch
