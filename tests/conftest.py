import faiss
import numpy as np
import pytest


def brute_force(points: np.ndarray, x: np.ndarray, k: int):
    """Exact k nearest points in float64: D (n, k), I (n, k) with ties broken by id."""
    d2 = ((x[:, None, :].astype(np.float64) - points[None, :, :].astype(np.float64)) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(points.shape[0]), d2.shape), d2), axis=1)[:, :k]
    return np.take_along_axis(d2, order, 1), order


def tt_reference(cores):
    """All points of a TT cloud by einsum (reference for reconstruct): (N1*...*Nk, d)."""
    if len(cores) == 1:
        return np.ascontiguousarray(cores[0].T.astype(np.float64))
    t = cores[0].astype(np.float64)  # d, N1, r1
    for g in cores[1:-1]:
        t = np.einsum("dpr,rns->dpns", t, g.astype(np.float64)).reshape(t.shape[0], -1, g.shape[2])
    t = np.einsum("dpr,rn->dpn", t, cores[-1].astype(np.float64)).reshape(t.shape[0], -1)
    return np.ascontiguousarray(t.T)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def one_faiss_thread():
    """faiss on 1 thread for a module: on tiny problems OpenMP spin-waits only slow a shared machine."""
    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(n)
