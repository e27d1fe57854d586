import torch

from c2ser.data.batching import DynamicBucketSampler, pad_batch


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
