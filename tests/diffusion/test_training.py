"""The shared denoising objective: noising statistics, clamped known entries, masked loss."""
import pytest
import torch

from radiorl.diffusion import NoiseSchedule, denoising_loss, noisy_inputs

torch.set_num_threads(1)


def test_noisy_inputs_follow_q_sample_and_keep_known_entries_clean():
    s = NoiseSchedule.make("cosine", 50)
    x0 = torch.randn(4000, 3, 2)
    known = torch.zeros(1, 3, 2, dtype=torch.bool)
    known[:, 0] = True
    g = torch.Generator().manual_seed(0)
    k, noise, xk = noisy_inputs(s, x0, known=known, generator=g)
    assert k.min() >= 1 and k.max() <= 50 and k.dtype == torch.int64
    assert torch.equal(xk[:, 0], x0[:, 0])
    assert torch.allclose(xk[:, 1:], s.q_sample(x0, k, noise)[:, 1:])
    # k is uniform on 1..K: mean (K + 1) / 2 within 4 standard errors
    se = (((50 ** 2 - 1) / 12) / 4000) ** 0.5
    assert abs(k.float().mean().item() - 25.5) < 4 * se
    # same generator state, same draws
    k2, n2, _ = noisy_inputs(s, x0, known=known, generator=torch.Generator().manual_seed(0))
    assert torch.equal(k, k2) and torch.equal(noise, n2)


def test_denoising_loss_ignores_known_entries_and_matches_hand_values():
    x0 = torch.zeros(2, 3, 1)
    noise = torch.ones(2, 3, 1)
    out = torch.full((2, 3, 1), 3.0)
    known = torch.zeros(1, 3, 1, dtype=torch.bool)
    known[:, 0] = True
    out_k = out.clone()
    out_k[:, 0] = 100.0                                   # error on known entries is not counted
    assert denoising_loss(out_k, x0, noise, prediction="epsilon", known=known).item() == 4.0
    assert denoising_loss(out_k, x0, noise, prediction="x0", known=known).item() == 9.0
    assert denoising_loss(out, x0, noise, prediction="epsilon").item() == 4.0
    with pytest.raises(ValueError, match="prediction"):
        denoising_loss(out, x0, noise, prediction="v")
