import tracemalloc

import numpy as np
import pytest
import torch
from conftest import DEVICES

from esl.ops.ranks import BUCKETS, StreamingRank, rank_index
from esl.ops.thresholds import ascending_ranks, class_thresholds, class_thresholds_sorted


def chunked(values, classes, n_chunks):
    """A pass factory over `n_chunks` uneven pieces of the data."""
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.integers(0, values.size + 1, size=n_chunks - 1))
    bounds = np.concatenate([[0], cuts, [values.size]])

    def passes():
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield values[a:b], classes[a:b]

    return passes


def check(values, classes, num_classes, q=0.5, descending=False, n_chunks=13):
    got, counts = class_thresholds(chunked(values, classes, n_chunks), num_classes, q, descending)
    want, want_counts = class_thresholds_sorted(values, classes, num_classes, q, descending)
    np.testing.assert_array_equal(counts, want_counts)
    # exact, bit for bit
    np.testing.assert_array_equal(got.astype(np.float32).view(np.uint32), want.astype(np.float32).view(np.uint32))
    return got, counts


def test_rank_index_reference_rule():
    assert rank_index(0, 0.5) == -1
    assert rank_index(1, 0.5) == 0  # round(0.5) = 0
    assert rank_index(2, 0.5) == 1
    assert rank_index(3, 0.5) == 2  # round(1.5) = 2
    assert rank_index(5, 0.5) == 2  # round(2.5) = 2, half to even
    assert rank_index(7, 0.5) == 4  # round(3.5) = 4
    assert rank_index(4, 1.0) == 3  # clipped to n - 1
    assert rank_index(4, 0.0) == 0
    for n in range(1, 200):
        assert rank_index(n, 0.5) == min(int(np.round(n / 2)), n - 1)
    with pytest.raises(ValueError):
        rank_index(3, 1.5)


def test_random_float32_many_chunks():
    rng = np.random.default_rng(0)
    num_classes = 7
    n = 50_001  # odd total
    values = rng.random(n, dtype=np.float32)
    classes = rng.integers(0, num_classes - 1, size=n).astype(np.uint8)  # last class empty
    classes[:3] = 5
    got, counts = check(values, classes, num_classes, n_chunks=37)
    assert counts[-1] == 0 and got[-1] == 0.0
    assert (counts[:-1] % 2 == 0).any() and (counts[:-1] % 2 == 1).any()  # odd and even n exercised


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint64])
@pytest.mark.parametrize("n_chunks", [1, 3])
def test_chunks_larger_than_a_block_and_class_dtypes(dtype, n_chunks):
    # 200k values per pass: chunks span several of the 65536-value blocks the NumPy path works in
    rng = np.random.default_rng(3)
    values = (rng.random(200_003, dtype=np.float32) ** 3).astype(np.float32)
    values[::1001] = 0.0
    classes = rng.integers(0, 6, size=values.size).astype(dtype)
    check(values, classes, 6, n_chunks=n_chunks)


def test_negative_class_ids_rejected():
    sr = StreamingRank(3)
    with pytest.raises(ValueError, match="class ids"):
        sr.add(np.float32([0.1, 0.2]), np.array([0, -1], dtype=np.int8))


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("descending", [False, True])
def test_quantiles_and_descending(q, descending):
    rng = np.random.default_rng(1)
    values = rng.exponential(size=5000).astype(np.float32)
    classes = rng.integers(0, 4, size=5000)
    check(values, classes, 4, q=q, descending=descending, n_chunks=5)


def test_descending_maps_to_ascending_rank():
    values = np.arange(10, dtype=np.float32)
    classes = np.zeros(10, dtype=np.int64)
    up, _ = class_thresholds(chunked(values, classes, 3), 1, q=0.2)
    down, _ = class_thresholds(chunked(values, classes, 3), 1, q=0.2, descending=True)
    assert up[0] == 2.0 and down[0] == 7.0


def test_small_counts_and_empty_classes():
    values = np.array([0.3, 0.7, 0.2, 0.9, 0.1], dtype=np.float32)
    classes = np.array([1, 2, 2, 3, 3], dtype=np.uint8)
    # class 0: n = 0 -> 0; class 1: n = 1 -> x[0]; class 2: n = 2 -> x[1]; class 3: n = 2 -> x[1]
    got, counts = check(values, classes, 4, n_chunks=3)
    np.testing.assert_array_equal(counts, [0, 1, 2, 2])
    np.testing.assert_array_equal(got, np.float32([0.0, 0.3, 0.7, 0.9]))


def test_heavy_ties():
    rng = np.random.default_rng(2)
    values = rng.choice(np.float32([0.0, 0.25, 0.5, 1.0]), size=10_000, p=[0.1, 0.6, 0.2, 0.1]).astype(np.float32)
    classes = rng.integers(0, 3, size=values.size)
    check(values, classes, 3, n_chunks=11)
    # all values equal
    check(np.full(1001, 0.4, np.float32), np.zeros(1001, np.int64), 2, n_chunks=4)


def test_bucket_boundaries_and_special_values():
    # values sharing their high 16 bits, straddling bucket edges, near 0 and 1, denormals, exact 0
    base = np.float32(0.5).view(np.uint32)
    same_hi = (base + np.arange(0, 300, dtype=np.uint32)).view(np.float32)
    edge_bits = np.array([0x3F00FFFF, 0x3F010000, 0x3F00FFFE, 0x3F010001], dtype=np.uint32)
    denormals = np.array([1, 2, 0xFFFF, 0x10000, 0x7FFFFF], dtype=np.uint32).view(np.float32)
    near_one = np.nextafter(np.float32(1.0), np.float32(0.0)) - np.arange(5, dtype=np.float32) * np.float32(6e-8)
    specials = np.concatenate(
        [
            same_hi,
            edge_bits.view(np.float32),
            denormals,
            near_one.astype(np.float32),
            np.float32([0.0, 0.0, 1.0, 1.0, np.finfo(np.float32).tiny, np.finfo(np.float32).max]),
        ]
    )
    rng = np.random.default_rng(3)
    for trial in range(20):
        values = rng.permutation(specials)[: rng.integers(1, specials.size + 1)]
        classes = rng.integers(0, 3, size=values.size)
        for q in (0.0, 0.5, 0.9, 1.0):
            check(values, classes, 3, q=q, n_chunks=1 + trial % 5)


def test_negative_zero_is_zero():
    values = np.float32([-0.0, -0.0, 0.0, 1e-40, 0.5])
    classes = np.zeros(5, np.int64)
    got, counts = check(values, classes, 1, q=0.0, n_chunks=2)
    assert counts[0] == 5 and got[0] == 0.0 and not np.signbit(got[0])
    got, _ = class_thresholds(chunked(values, classes, 2), 1, q=0.5)  # index 2 of [0, 0, 0, 1e-40, 0.5]
    assert got[0] == 0.0 and not np.signbit(got[0])


@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf, -1e-30, -1.0])
def test_invalid_values_rejected(bad):
    sr = StreamingRank(2)
    with pytest.raises(ValueError):
        sr.add(np.float32([0.1, bad]), np.array([0, 1]))
    sr.add(np.float32([0.1, 0.2]), np.array([0, 1]))
    sr.plan([0, 0])
    with pytest.raises(ValueError):
        sr.add_second(np.float32([bad]), np.array([0]))


def test_invalid_classes_and_misuse():
    sr = StreamingRank(2)
    with pytest.raises(ValueError):
        sr.add(np.float32([0.1]), np.array([2]))
    with pytest.raises(ValueError):
        sr.add(np.float32([0.1, 0.2]), np.array([0]))
    with pytest.raises(RuntimeError):
        sr.add_second(np.float32([0.1]), np.array([0]))
    sr.add(np.float32([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError):
        sr.plan([2, -1])  # rank beyond n
    sr.plan([1, -1])
    sr.add_second(np.float32([0.1]), np.array([0]))
    with pytest.raises(RuntimeError):
        sr.result()  # pass 2 saw fewer values than pass 1


def streamed(n, chunk=10_000, num_classes=3):
    """A pass factory generating `n` random values in chunks of `chunk`, the same ones on every pass, never all
    held at once (uint8 class ids, as entropy files store them)."""

    def passes():
        rng = np.random.default_rng(n)
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            yield rng.random(k, dtype=np.float32), rng.integers(0, num_classes, size=k).astype(np.uint8)

    return passes


def peak_bytes(fn):
    """Peak bytes traced by tracemalloc (NumPy registers its buffers with it) while `fn()` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_independent_of_data_size():
    """The streaming NumPy path's peak memory: the (C, 65536) int64 histograms and per-chunk temporaries, whatever
    the number of values. Measured (3 classes, chunks of 1e4): about 4.25 MB for 1e4 values and for 1e6 values alike
    (difference under 1 kB). Holding the 1e6 values (float32 + uint8 ids: 5 MB) would break the bound of 512 KiB."""
    peak_bytes(lambda: class_thresholds(streamed(10_000), 3))  # one-time allocations (imports, caches) out of the way
    small = peak_bytes(lambda: class_thresholds(streamed(10_000), 3))
    large = peak_bytes(lambda: class_thresholds(streamed(1_000_000), 3))
    histograms = 2 * 3 * BUCKETS * 8
    assert histograms <= small < 2 * histograms  # tracemalloc sees the histograms (3.1 MB) and little else
    assert large < small + 512 * 1024, (small, large)
    assert 1_000_000 * (4 + 1) > 8 * 512 * 1024  # the data itself is ten times the allowance


def test_class_thresholds_counts_on_the_given_device(monkeypatch):
    """`device` reaches `StreamingRank`: the torch counting path runs once per chunk and pass (NumPy for None)."""
    import esl.ops.ranks_torch as ranks_torch

    calls = []
    for name in ("add", "add_second"):
        original = getattr(ranks_torch.TorchCounts, name)

        def spy(self, values, classes, _original=original, _name=name):
            calls.append((_name, str(self.device)))
            return _original(self, values, classes)

        monkeypatch.setattr(ranks_torch.TorchCounts, name, spy)
    rng = np.random.default_rng(5)
    values = rng.random(3000, dtype=np.float32)
    classes = rng.integers(0, 4, size=values.size)
    want, _ = class_thresholds_sorted(values, classes, 4, 0.3)
    for device in [None, "cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        calls.clear()
        got, _ = class_thresholds(chunked(values, classes, 5), 4, 0.3, device=device)
        np.testing.assert_array_equal(got, want)
        if device is None:
            assert calls == []
        else:
            assert calls == [("add", device)] * 5 + [("add_second", device)] * 5


def test_streaming_rank_direct_api():
    sr = StreamingRank(3)
    values = np.float32([0.5, 0.25, 0.75, 0.125, 0.9])
    classes = np.array([0, 0, 0, 2, 2])
    sr.add(values[:2], classes[:2])
    sr.add(values[2:], classes[2:])
    np.testing.assert_array_equal(sr.counts(), [3, 0, 2])
    sr.plan([1, -1, 0])
    sr.add_second(values, classes)
    res = sr.result()
    assert res[0] == np.float32(0.5) and np.isnan(res[1]) and res[2] == np.float32(0.125)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_histograms_equal_numpy_histograms(device):
    """The torch.bincount path (GPU when present; on the CPU here) counts exactly what the NumPy path counts."""
    rng = np.random.default_rng(11)
    base = np.float32(0.5).view(np.uint32)
    values = np.concatenate(
        [
            rng.random(30_000, dtype=np.float32),
            (base + np.arange(0, 500, dtype=np.uint32)).view(np.float32),  # one shared bucket
            np.float32([-0.0, 0.0, 1.0, np.finfo(np.float32).max]),
        ]
    )
    values = rng.permutation(values)
    classes = rng.integers(0, 5, size=values.size).astype(np.uint8)
    for q, descending in ((0.5, False), (0.2, True), (1.0, False)):
        sr_np, sr_t = StreamingRank(5), StreamingRank(5, device=device)
        passes = chunked(values, classes, 7)
        for v, c in passes():
            sr_np.add(v, c)
            sr_t.add(torch.from_numpy(v), torch.from_numpy(c))
        np.testing.assert_array_equal(sr_t.hist_hi, sr_np.hist_hi)
        ranks = ascending_ranks(sr_np.counts(), q, descending)
        sr_np.plan(ranks)
        sr_t.plan(ranks)
        for v, c in passes():
            sr_np.add_second(v, c)
            sr_t.add_second(v, c)  # NumPy chunks are moved to the device
        np.testing.assert_array_equal(sr_t.hist_lo, sr_np.hist_lo)
        got, want = sr_t.result(), sr_np.result()
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        t_dev, _ = class_thresholds(passes, 5, q, descending, device=device)
        t_ref, _ = class_thresholds_sorted(values, classes, 5, q, descending)
        np.testing.assert_array_equal(t_dev, t_ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e-30])
def test_torch_path_rejects_invalid_values(device, bad):
    sr = StreamingRank(2, device=device)
    with pytest.raises(ValueError, match="finite and >= 0"):
        sr.add(np.float32([0.1, bad]), np.array([0, 1]))
    with pytest.raises(ValueError, match="class ids"):
        sr.add(np.float32([0.1]), np.array([2]))
