"""The pool downsampler: standardised 4-frame means over valid frames, independent of padding."""

import pytest
import torch

from c2ser.models.adapter import Downsampler, PoolDownsampler


def test_pool_downsampler_is_the_standardised_mean_of_each_window():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 3) * 5 + 2
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 4.0])
    pool = PoolDownsampler(3)
    with pytest.raises(RuntimeError, match="no statistics"):
        pool(x, torch.tensor([10, 7]))
    pool.set_statistics(mean, std)
    out, lengths = pool(x, torch.tensor([10, 7]))
    z = (x - mean) / std
    assert lengths.tolist() == [3, 2] == Downsampler(3)(x, torch.tensor([10, 7]))[1].tolist()
    torch.testing.assert_close(out[0, 0], z[0, 0:4].mean(0))
    torch.testing.assert_close(out[0, 2], z[0, 8:10].mean(0))  # a short last window
    torch.testing.assert_close(out[1, 1], z[1, 4:7].mean(0))  # padding frames left out
    alone, _ = pool(x[1:, :7], torch.tensor([7]))
    torch.testing.assert_close(out[1, :2], alone[0])


def test_pool_statistics_travel_with_the_state_dict():
    pool = PoolDownsampler(2)
    pool.set_statistics(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]))
    again = PoolDownsampler(2)
    again.load_state_dict(pool.state_dict())
    assert bool(again.ready) and again.std.tolist() == pytest.approx([3.0, 1e-5])
