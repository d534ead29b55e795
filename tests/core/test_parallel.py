from bmbench.core import parallel


def test_chunks_balance_the_workers():
    assert parallel.chunk_size(10_000, 1, 32) == 32
    assert parallel.chunk_size(10_000, 2, 32) == 32
    size = parallel.chunk_size(300, 2, 32)
    n_chunks = -(-300 // size)
    assert n_chunks >= 2 * parallel.CHUNKS_PER_WORKER and size <= 32
    assert parallel.chunk_size(3, 2, 32) == 1 and parallel.chunk_size(0, 2, 32) == 1


def test_chunked_keeps_every_item_in_order():
    items = list(range(300))
    chunks = parallel.chunked(items, 2, 32)
    assert [i for c in chunks for i in c] == items
    assert len(chunks) == 16 and max(map(len, chunks)) == 19
    assert parallel.chunked(items, 1, 32)[0] == items[:32]
    assert parallel.chunked([], 2, 32) == []
