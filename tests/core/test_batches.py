import itertools

from xtc_core.batches import train_batches


def test_batches_are_length_bucketed_cover_each_epoch_and_resume_identically():
    sizes = [(i * 37) % 61 + 3 for i in range(1000)]
    stream = train_batches(sizes, 16, seed=7)
    first_epoch = list(itertools.islice(stream, 62))  # 1000 // 16 full batches
    seen = [i for b in first_epoch for i in b]
    assert len(seen) == len(set(seen)) == 62 * 16
    # within a batch lengths are close: far less padding than random batches
    spread = sum(max(sizes[i] for i in b) - min(sizes[i] for i in b) for b in first_epoch) / 62
    assert spread < 5
    # the batch order is shuffled, not sorted by length
    means = [sum(sizes[i] for i in b) / 16 for b in first_epoch]
    assert means != sorted(means)
    # resuming at step k yields exactly the batches the uninterrupted stream yields from step k
    full = list(itertools.islice(train_batches(sizes, 16, seed=7), 100))
    assert list(itertools.islice(train_batches(sizes, 16, seed=7, start_step=40), 60)) == full[40:]
    assert list(itertools.islice(train_batches(sizes, 16, seed=8), 5)) != full[:5]


def test_tiny_sets_smaller_than_a_batch_still_train():
    batches = list(itertools.islice(train_batches([5, 3, 4], 8, seed=0), 3))
    assert all(sorted(b) == [0, 1, 2] for b in batches)
