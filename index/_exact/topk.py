"""The k smallest scores per query over a stream of GEMM blocks, kept with running thresholds.

Every query keeps its k best (score, row) pairs as uint64 keys (order-preserving float32 bits << 32
| row), so one integer sort ranks by score, then row: equal scores go to the lower row.

A block is one sgemm of database rows [x, |x|^2, 1] (l2) or [x, 1] (ip) against query rows
[-2q, 1, -t] or [-q, -t], where t is the query's current k-th best score. The block comes out
shifted by -t, so the candidates are its negative entries, found by one compare with the scalar 0
(numpy's fast path; comparing with a row of per-query thresholds measured ~3x slower, and was the
largest cost after the sgemm). A candidate's score is its shifted value + t: one more float32
rounding of the same score. Until a query has k scores, t = 0 and every finite score is a candidate.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.uint64(0xFF800000_FFFFFFFF)  # key of (+inf, no row): after every real score
ROW_MASK = np.uint64(0xFFFFFFFF)
MAX_ROWS = 0xFFFFFFFF  # rows a key can hold (the all-ones row marks EMPTY)
_SIGN = np.uint32(0x80000000)
_SHIFT = np.uint64(32)
_INF = np.float32(np.inf)
_ZERO = np.float32(0.0)
_MERGE_WIDTH = 32  # pending candidates merged per query and round, at least (bounds the padded table)
_TABLE_ENTRIES = 1 << 22  # keys per padded merge table (32 MiB)


class RunningTopK:
    """k best keys of each query (m, k), in no order, over the blocks added so far.

    Candidates wait in a pending list; `merge` (due once `merge_at` are pending) folds them in
    and lowers the thresholds. Until then a stale threshold only lets a few more candidates
    through. Large k merges less often, since each merge partitions k keys per query.
    """

    def __init__(self, q_aug: np.ndarray, k: int, block_scores: int) -> None:
        m, width = q_aug.shape
        self.k = k
        self.best = np.full((m, k), EMPTY, dtype=np.uint64)
        self.threshold = np.full(m, _INF, dtype=np.float32)  # k-th best score so far
        self.queries = np.zeros((m, width + 1), dtype=np.float32)  # [q_aug, -t]
        self.queries[:, :width] = q_aug
        self._offset = np.zeros(m, dtype=np.float32)  # t: the threshold once finite, else 0
        self._folded = np.zeros(m, dtype=bool)  # t is the (finite) threshold
        self._scores = np.empty(block_scores, dtype=np.float32)
        self._mask = np.zeros(block_scores + 8, dtype=bool)
        self._words = np.empty(block_scores // 8 + 1, dtype=bool)
        self._pending: list[tuple[np.ndarray, np.ndarray, int, int, int, bool]] = []
        self.pending = 0
        self.merge_at = m * max(1, k // 8)

    def add(self, block: np.ndarray, start: int, stop: int, first_row: int, first: bool) -> None:
        """Score database rows `block` (c, K + 1), the first being row `first_row`, against
        queries [start, stop); `first`: no block has been added for these queries yet."""
        c, r, k = block.shape[0], stop - start, self.k
        scores = self._scores[:c * r].reshape(c, r)
        np.matmul(block, self.queries[start:stop].T, out=scores)
        folded = self._folded[start:stop]
        if first and c >= k:  # t = 0: start from this block's own k-th best (about k candidates each)
            limit = np.nextafter(np.fmin(_INF, _kth_per_column(scores, k)), _INF)  # fmin: NaN -> inf
        elif folded.all():
            limit = _ZERO
        else:
            limit = np.where(folded, _ZERO, _INF)
        hits = self._below(scores, limit)
        shifted = True
        if hits.size > max(r * k, c * r // 16) and c >= k:  # thresholds far too loose (rows sorted far to near)
            np.add(scores, self._offset[start:stop], out=scores)  # the scores themselves, then their k-th best
            limit = np.where(folded, self.threshold[start:stop], _INF)
            hits = self._below(scores, np.nextafter(np.fmin(limit, _kth_per_column(scores, k)), _INF))
            shifted = False
        if hits.size:  # keys are built at merge time, in one go for many blocks
            self._pending.append((scores.reshape(-1)[hits], hits, r, start, first_row, shifted))
            self.pending += hits.size

    def _below(self, scores: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """Flat positions of scores below their column's limit, ascending.

        One compare writes a byte mask; its 8-byte words are tested as integers, so only the rare
        words holding a hit are looked at byte by byte (np.nonzero on the whole mask is ~3x slower).
        """
        size = scores.size
        padded = -(-size // 8) * 8
        mask = self._mask[:padded]
        mask[size:] = False
        np.less(scores, limit, out=mask[:size].reshape(scores.shape))
        words = self._words[:padded // 8]
        np.not_equal(mask.view(np.uint64), 0, out=words)
        hit_words = np.flatnonzero(words)
        if hit_words.size == 0:
            return hit_words
        word, byte = np.nonzero(mask.reshape(-1, 8)[hit_words])
        return hit_words[word] * 8 + byte

    def merge(self) -> None:
        """Fold the pending candidates into `best`, then lower and fold in the thresholds."""
        if not self.pending:
            return
        pending, self._pending, self.pending = self._pending, [], 0
        sizes = [p[1].size for p in pending]
        block_queries, start, first_row, shifted = (np.repeat([p[i] for p in pending], sizes) for i in (2, 3, 4, 5))
        positions = np.concatenate([p[1] for p in pending])
        row = positions // block_queries
        queries = positions - row * block_queries + start
        scores = np.concatenate([p[0] for p in pending]) + np.where(shifted, self._offset[queries], _ZERO)
        keys = _keys(scores, row + first_row)
        m = self.best.shape[0]
        order = np.argsort(queries.astype(np.uint16) if m <= 1 << 16 else queries, kind="stable")  # radix sort
        queries, keys = queries[order], keys[order]
        counts = np.bincount(queries, minlength=m)
        rank = np.arange(queries.size) - (np.cumsum(counts) - counts)[queries]
        width = max(_MERGE_WIDTH, self.k)  # candidates per query and round
        most = int(counts.max())
        for first_rank in range(0, most, width):
            take = slice(None) if most <= width else (rank >= first_rank) & (rank < first_rank + width)
            q, key, slot = queries[take], keys[take], rank[take] - first_rank
            starts = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1])))
            per_table = max(1, _TABLE_ENTRIES // (self.k + int(slot.max()) + 1))
            edges = np.append(starts[::per_table], q.size)
            for a, b in zip(edges[:-1], edges[1:]):
                self._merge_table(q[a:b], key[a:b], slot[a:b])

    def _merge_table(self, queries: np.ndarray, keys: np.ndarray, slot: np.ndarray) -> None:
        """Candidates grouped by query (ascending), at most one per (query, slot): one padded
        table of old best + candidates per query, partitioned at k."""
        k = self.k
        new_query = np.empty(queries.size, dtype=bool)
        new_query[0], new_query[1:] = True, queries[1:] != queries[:-1]
        rows = queries[new_query]
        table = np.full((rows.size, k + int(slot.max()) + 1), EMPTY, dtype=np.uint64)
        table[:, :k] = self.best[rows]
        table[np.cumsum(new_query) - 1, k + slot] = keys
        table.partition(k - 1, axis=1)
        self.best[rows] = table[:, :k]
        threshold = key_scores(table[:, k - 1])
        finite = np.isfinite(threshold)
        rows, threshold = rows[finite], threshold[finite]
        self.threshold[rows] = threshold
        self._offset[rows] = threshold
        self.queries[rows, -1] = -threshold
        self._folded[rows] = True


def _kth_per_column(scores: np.ndarray, k: int) -> np.ndarray:
    """k-th smallest score of each column of (c, r) scores (NaN sorts last)."""
    return np.partition(np.ascontiguousarray(scores.T), k - 1, axis=1)[:, k - 1]


def _keys(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    bits = (scores + _ZERO).view(np.uint32)  # + 0 turns -0 into +0: equal scores, equal keys
    ordered = np.where(bits >= _SIGN, ~bits, bits | _SIGN).astype(np.uint64)
    return (ordered << _SHIFT) | rows.astype(np.uint64)


def key_scores(keys: np.ndarray) -> np.ndarray:
    """float32 scores of uint64 keys (+inf for EMPTY)."""
    ordered = (keys >> _SHIFT).astype(np.uint32)
    return np.where(ordered >= _SIGN, ordered ^ _SIGN, ~ordered).view(np.float32)
