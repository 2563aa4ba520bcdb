#include "beam_search.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace tt {

namespace {


struct Cand {
  float score;
  int64_t id;     // flat id of the child centroid: prefix * N_a + i
  int64_t index;  // position in the score array: beam * N_a + i
};

inline bool cand_less(const Cand& a, const Cand& b) {
  return a.score < b.score || (a.score == b.score && a.id < b.id);
}

// The `keep` best children (smallest score, ties by smaller id), unordered. For a small keep a
// bounded max-heap (once full, most children are rejected by one comparison against its top);
// when keep is a large share of the children (long probe lists), one nth_element pass.
void select_best(const float* scores, const int64_t* prefix, int64_t nb, int64_t na, int64_t keep,
                 std::vector<Cand>& heap) {
  heap.clear();
  if (keep * 8 >= nb * na) {
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < na; ++i) heap.push_back(Cand{scores[b * na + i], prefix[b] * na + i, b * na + i});
    if (keep < int64_t(heap.size())) {
      std::nth_element(heap.begin(), heap.begin() + keep, heap.end(), cand_less);
      heap.resize(keep);
    }
    return;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const float* sb = scores + b * na;
    const int64_t base = prefix[b] * na;
    for (int64_t i = 0; i < na; ++i) {
      const Cand c{sb[i], base + i, b * na + i};
      if (int64_t(heap.size()) < keep) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), cand_less);
      } else if (cand_less(c, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), cand_less);
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end(), cand_less);
      }
    }
  }
}

struct Workspace {
  std::vector<float> h, h_next, scores;
  std::vector<const float*> base, base_next;
  std::vector<int64_t> prefix;
  std::vector<Cand> best;
  std::vector<double> work;
  std::vector<float> point;
  std::vector<std::pair<double, int64_t>> final_;
};

void search_one(const TTCloud& c, const float* q, int64_t k, int64_t beam, bool exact,
                Workspace& ws, float* out_d, int64_t* out_i) {
  const int nc = c.ncores();
  const auto& shape = c.shape();
  const auto& r = c.full_ranks();
  const int64_t d = c.d();

  // level 0: one beam, the empty prefix, h = q
  int64_t nb = 1;
  std::copy(q, q + d, ws.h.begin());
  ws.prefix[0] = 0;
  ws.base[0] = c.centroid_norms(0).data();

  for (int a = 0; a < nc; ++a) {
    const int64_t na = shape[a], ra = r[a];
    const int64_t total = nb * na;
    kernels::score_children(ws.h.data(), nb, ra, c.child_table(a).data(), na, ws.base.data(),
                            ws.scores.data());
    // enough prefixes to still reach k points below them, and at least the beam
    const int64_t below = c.npoints() / c.prefix_count(a + 1);
    const int64_t keep = std::min(total, std::max(beam, (k + below - 1) / below));
    select_best(ws.scores.data(), ws.prefix.data(), nb, na, keep, ws.best);

    if (a + 1 < nc) {
      const int64_t rb = r[a + 1], nn = shape[a + 1];
      const float* g = c.core(a);
      const float* next_norms = c.centroid_norms(a + 1).data();
      for (int64_t s = 0; s < keep; ++s) {
        const Cand& cd = ws.best[s];
        const int64_t b = cd.index / na, i = cd.index % na;
        kernels::vec_mat(ws.h.data() + b * ra, ra, g + i * rb, na * rb, rb, ws.h_next.data() + s * rb);
        ws.prefix[s] = cd.id;  // safe: beam b's prefix is no longer read (cd.id already holds it)
        ws.base_next[s] = next_norms + cd.id * nn;
      }
      std::swap(ws.h, ws.h_next);
      std::swap(ws.base, ws.base_next);
      nb = keep;
    } else {
      // exact distances for the best 2k+8 by the cheap form (the float32 expanded form only
      // misorders near-ties, never across a margin of k+8 candidates), then the k best
      const int64_t m = exact ? std::min(keep, 2 * k + 8) : std::min(keep, k);
      std::partial_sort(ws.best.begin(), ws.best.begin() + m, ws.best.begin() + keep, cand_less);
      ws.final_.resize(m);
      double qn = 0.0;
      if (!exact)
        for (int64_t j = 0; j < d; ++j) qn += double(q[j]) * double(q[j]);
      for (int64_t s = 0; s < m; ++s) {
        const int64_t id = ws.best[s].id;
        if (exact) {
          c.centroid_one(nc, id, ws.work.data(), ws.point.data());
          ws.final_[s] = {kernels::l2sqr(q, ws.point.data(), d), id};
        } else {
          ws.final_[s] = {std::max(0.0, qn + double(ws.best[s].score)), id};
        }
      }
      const int64_t kk = std::min(k, m);
      if (exact)  // inexact entries are already in cheap-score order
        std::partial_sort(ws.final_.begin(), ws.final_.begin() + kk, ws.final_.end());
      for (int64_t s = 0; s < k; ++s) {
        if (s < kk) {
          out_d[s] = float(ws.final_[s].first);
          out_i[s] = ws.final_[s].second;
        } else {
          out_d[s] = std::numeric_limits<float>::infinity();
          out_i[s] = -1;
        }
      }
    }
  }
}

}  // namespace

void beam_search(const TTCloud& c, const float* x, int64_t n, int64_t k, int64_t beam,
                 float* out_d, int64_t* out_i, bool exact) {
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
  if (beam < 1) throw std::invalid_argument("beam must be >= 1, got " + std::to_string(beam));
  if (k > c.npoints())
    throw std::invalid_argument("k (" + std::to_string(k) + ") exceeds the number of points (" +
                                std::to_string(c.npoints()) + ")");
  const int nc = c.ncores();
  const auto& shape = c.shape();
  int64_t nmax = 0;
  for (auto s : shape) nmax = std::max(nmax, s);
  // upper levels keep `beam` entries (or enough to reach k points), the last level max(beam, k)
  const int64_t beam_eff = std::min(beam, c.npoints());
  const int64_t widest = std::min(std::max(beam, k), c.npoints());
  const int64_t rmax = c.max_rank();
  // the beam never holds more than min(beam, #centroids of the level) entries
  int64_t bmax = 1;
  for (int a = 0; a < nc; ++a) bmax = std::max(bmax, std::min(widest, c.prefix_count(a + 1)));
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    Workspace ws;
    ws.h.resize(size_t(std::max(bmax * rmax, c.d())));
    ws.h_next.resize(ws.h.size());
    ws.scores.resize(size_t(bmax * nmax));
    ws.base.resize(bmax);
    ws.base_next.resize(bmax);
    ws.prefix.resize(bmax);
    ws.work.resize(size_t(2 * rmax));
    ws.point.resize(size_t(c.d()));
    for (int64_t q = b; q < e; ++q)
      search_one(c, x + q * c.d(), k, beam_eff, exact, ws, out_d + q * k, out_i + q * k);
  });
}

void compute_residuals(const TTCloud& c, const float* x, const int64_t* ids, int64_t n,
                       float* out) {
  const int64_t d = c.d(), np = c.npoints();
  for (int64_t q = 0; q < n; ++q)
    if (ids[q] < 0 || ids[q] >= np)
      throw std::invalid_argument("id " + std::to_string(ids[q]) + " out of range [0, " +
                                  std::to_string(np) + ")");
  parallel_for(n, 256, [&](int64_t b, int64_t e) {
    std::vector<double> work(size_t(2 * c.max_rank()));
    for (int64_t q = b; q < e; ++q) {
      float* o = out + q * d;
      c.centroid_one(c.ncores(), ids[q], work.data(), o);
      const float* xq = x + q * d;
      for (int64_t j = 0; j < d; ++j) o[j] = xq[j] - o[j];
    }
  });
}

}  // namespace tt
