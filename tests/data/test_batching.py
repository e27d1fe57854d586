import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from c2ser.data.batching import DynamicBucketSampler, ResumableLoader, pad_batch, plan_batches


def test_pad_batch_masks():
    a, b = torch.ones(3, 2), 2 * torch.ones(5, 2)
    x, mask = pad_batch([a, b])
    assert x.shape == (2, 5, 2)
    assert mask.tolist() == [[False] * 3 + [True] * 2, [False] * 5]
    assert torch.equal(x[0, :3], a) and x[0, 3:].abs().sum() == 0


def test_dynamic_batches_respect_budget_and_cover_everything():
    lengths = [10, 500, 30, 250, 40, 700, 90, 60, 20, 300] * 3
    s = DynamicBucketSampler(lengths, max_frames=1000, window=8, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000
    assert len(s) == len(batches)


def test_epoch_seeded_order_and_sharding():
    lengths = list(range(1, 101))
    s = DynamicBucketSampler(lengths, max_frames=400, seed=1)
    first = list(s)
    assert first == list(s)  # same epoch -> same order (resumable)
    s.set_epoch(1)
    assert first != list(s)
    shards = [
        list(DynamicBucketSampler(lengths, 400, seed=1, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1])
    covered = {i for shard in shards for b in shard for i in b}
    assert covered == set(range(100))


def test_unshuffled_is_sorted_by_length():
    lengths = [5, 1, 4, 2, 3]
    batches = list(DynamicBucketSampler(lengths, max_frames=8, shuffle=False))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)


def _loader(lengths: list[int]) -> ResumableLoader:
    sampler = DynamicBucketSampler(lengths, max_frames=40, window=8, seed=3)
    return ResumableLoader(list(range(len(lengths))), sampler, collate_fn=list)


def test_resumable_loader_continues_mid_epoch_where_it_stopped():
    lengths = [5 + (7 * i) % 13 for i in range(30)]
    full = _loader(lengths)
    full.batch_sampler.set_epoch(2)
    epoch2 = list(full)
    assert len(epoch2) == len(full) > 4

    killed = _loader(lengths)
    killed.batch_sampler.set_epoch(2)
    it = iter(killed)
    for _ in range(3):
        next(it)
    state = killed.state_dict()
    assert state == {"epoch": 2, "served": 3}

    resumed = _loader(lengths)  # a fresh process: epoch 0, position 0
    resumed.load_state_dict(state)
    _set_sampler_epoch(resumed, 2)  # what Lightning does before iterating
    assert list(resumed) == epoch2[3:]
    assert resumed.state_dict()["served"] == len(epoch2)
    _set_sampler_epoch(resumed, 3)  # the skip applies to the resumed epoch only
    assert len(list(resumed)) == len(full)


def test_lightning_reshuffles_the_buckets_every_epoch():
    """Under a real Trainer each epoch gets its own order (Lightning's set_epoch reaches the
    bucket sampler), the one that ``set_epoch`` alone reproduces."""
    import pytorch_lightning as pl

    class Record(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(())), {}

        def training_step(self, batch, i):
            self.seen.setdefault(self.current_epoch, []).append(batch)
            return self.w * 0.0 + self.w.square()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    lengths = [5 + (7 * i) % 13 for i in range(30)]
    module = Record()
    pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    ).fit(module, _loader(lengths))  # fmt: skip
    for epoch in range(3):
        alone = _loader(lengths)
        alone.batch_sampler.inner.set_epoch(epoch)
        assert module.seen[epoch] == list(alone)
    assert module.seen[0] != module.seen[1] != module.seen[2]


def test_resumable_loader_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(_loader([5] * 10))
    assert torch.equal(torch.rand(3), expected)


def test_batches_are_longest_first_and_bounded_in_size_and_padding():
    frames = [int(f) for f in np.random.default_rng(0).uniform(50, 1250, 200)]  # 1-25 s
    batches = plan_batches(frames, max_frames=6000, max_padding=0.1)
    assert sorted(i for b in batches for i in b) == list(range(200))  # each utterance once
    longest = [max(frames[i] for i in b) for b in batches]
    assert longest == sorted(longest, reverse=True)
    for b in batches:
        padded = max(frames[i] for i in b) * len(b)
        assert len(b) == 1 or padded <= 6000
        assert 1 - sum(frames[i] for i in b) / padded <= 0.1
    assert max(len(b) for b in batches) > 1  # dense lengths still share batches
    # sparse lengths: a cap of 1 fills batches, the default keeps 1 s next to 20 s apart
    assert plan_batches([50, 1000], 6000, max_padding=1.0) == [[1, 0]]
    assert plan_batches([50, 1000], 6000, max_padding=0.1) == [[1], [0]]
    assert plan_batches([900, 1000, 7000], 6000) == [[2], [1, 0]]  # too long: alone
    for bad in ({"max_frames": 0}, {"max_padding": 1.5}):
        with pytest.raises(ValueError, match="max_padding"):
            plan_batches([10, 20], **({"max_frames": 100} | bad))
