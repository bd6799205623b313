"""How faithful a head's layout is to its query/key vectors."""

from __future__ import annotations

import copy

import numpy as np
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from ..normalize import HeadSample, sample_pairs
from ..normalize.joint import JointSet
from ..project.knn import SampleRanks

__all__ = ["LayoutTrust", "trust_scores"]


class LayoutTrust:
    """The faithfulness measures of any number of layouts of one head's normalised ``joint`` set (its tokens are the
    ``sample``'s rows), in the layouts' ``metric``; the high-dimensional side (the sampled pairs' dot products, the
    trust sample's neighbour ranks) is computed once, and each layout costs a 2D/3D neighbour search.

    * ``spearman_layout_dot``: Spearman between layout distance ‖x_qi − x_kj‖ and the dot product q_i·k_j over
      same-sentence pairs (causal: j ≤ i; cross-attention: query side → key side; the seeded subsample of
      `sample_pairs`). Negative = faithful (close in the picture ⇔ high attention score).
    * ``trustworthiness``: trustworthiness@k of the layout against the joint set [q'; k'] (``metric`` in the
      high-dimensional space), on a seeded sample of ``sample_size`` points: scikit-learn's `trustworthiness` (a test
      compares them), with the sample's high-dimensional distances sorted once (`SampleRanks`); points at tied
      distances share the smallest rank (scikit-learn ranks them in whatever order its sort leaves them).

    A measure that cannot be computed (too few points or pairs, constant input) is omitted.
    """

    def __init__(self, sample: HeadSample, joint: JointSet, *, metric: str, k: int = 10, sample_size: int = 2000,
                 seed: int = 0):
        q_rows, k_rows = sample.query_rows(), sample.key_rows()
        if joint.m != len(q_rows) or len(joint.key_rows) != len(k_rows):
            raise ValueError(f"the joint set has {joint.m} + {len(joint.key_rows)} points, the sample "
                             f"{len(q_rows)} + {len(k_rows)}")
        self.joint, self.rows = joint, len(q_rows) + len(k_rows)
        rng = np.random.default_rng(seed)
        self.pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        qi, kj = sample_pairs(sample, rng=rng)
        if qi.size >= 3:
            q, kk = np.asarray(sample.q, np.float64), np.asarray(sample.k, np.float64)
            dot = np.einsum("pd,pd->p", q[qi], kk[kj])
            point = np.full(len(sample.q), -1)  # sample row → its query (key) point's index within its half
            point[q_rows] = np.arange(len(q_rows))
            kpoint = point.copy() if sample.side is None else np.full(len(sample.q), -1)
            kpoint[k_rows] = np.arange(len(k_rows))
            if np.ptp(dot) > 0:
                self.pairs = point[qi], kpoint[kj], dot
        m = joint.x.shape[0]
        self.idx = np.sort(rng.choice(m, size=sample_size, replace=False)) if m > sample_size else np.arange(m)
        self.k = min(k, (len(self.idx) - 1) // 2)
        self.ranks = self._ranks(joint, metric)

    def _ranks(self, joint: JointSet, metric: str) -> SampleRanks | None:
        """The trust sample's neighbour ranks in ``joint``'s space."""
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', not {metric!r}")
        if self.k < 1:
            return None
        x = np.asarray(joint.x, np.float64)[self.idx]
        if metric == "cosine":  # unit rows; a zero vector has no direction: it gets the all-ones one
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.where(norm > 0, x, 1.0) / np.where(norm > 0, norm, np.sqrt(x.shape[1]))
        return SampleRanks(x)

    def against(self, joint: JointSet, *, metric: str) -> LayoutTrust:
        """The same measures with trustworthiness against another space of the same points (such as the padded
        space): the sampled pairs and the trust sample are shared, only the sample's neighbour ranks are new."""
        if joint.x.shape[0] != self.joint.x.shape[0] or joint.m != self.joint.m:
            raise ValueError(f"the other space has {joint.x.shape[0]} points ({joint.m} queries), this one "
                             f"{self.joint.x.shape[0]} ({self.joint.m})")
        other = copy.copy(self)
        other.joint, other.ranks = joint, self._ranks(joint, metric)
        return other

    def __call__(self, coords: np.ndarray) -> dict[str, float]:
        """The measures of one layout ``coords`` (rows as the joint set: queries, then keys)."""
        coords = np.asarray(coords, np.float64)
        if coords.shape[0] != self.rows:
            raise ValueError(f"coords must have {self.rows} rows (queries then keys); got {coords.shape[0]}")
        out: dict[str, float] = {}
        if self.pairs is not None:
            at_q, at_k = self.joint.halves(coords)
            qp, kp, dot = self.pairs
            dist = np.linalg.norm(at_q[qp] - at_k[kp], axis=1)
            if np.ptp(dist) > 0:
                out["spearman_layout_dot"] = float(stats.spearmanr(dist, dot).statistic)
        if self.ranks is not None:
            near = NearestNeighbors(n_neighbors=self.k).fit(coords[self.idx]).kneighbors(return_distance=False)
            out["trustworthiness"] = self.ranks.trustworthiness(near)
        return out


def trust_scores(sample: HeadSample, joint: JointSet, coords: np.ndarray, *, metric: str, k: int = 10,
                 sample_size: int = 2000, seed: int = 0) -> dict[str, float]:
    """`LayoutTrust`'s measures of one layout ``coords``."""
    return LayoutTrust(sample, joint, metric=metric, k=k, sample_size=sample_size, seed=seed)(coords)
