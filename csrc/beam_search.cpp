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

struct Workspace {
  std::vector<float> h, h_next, scores;
  std::vector<const float*> base, base_next;
  std::vector<int64_t> prefix, prefix_next;
  std::vector<int64_t> order;
  std::vector<double> work;
  std::vector<float> point;
  std::vector<std::pair<double, int64_t>> final_;
};

// Indices of the `keep` smallest scores (ties: smaller candidate id first), unordered.
void select_best(const float* scores, const int64_t* ids, int64_t total, int64_t keep,
                 std::vector<int64_t>& order) {
  order.resize(total);
  std::iota(order.begin(), order.end(), int64_t(0));
  if (keep >= total) return;
  auto less = [&](int64_t a, int64_t b) {
    return scores[a] < scores[b] || (scores[a] == scores[b] && ids[a] < ids[b]);
  };
  std::nth_element(order.begin(), order.begin() + keep, order.end(), less);
  order.resize(keep);
}

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
    // candidate ids: prefix * na + i (the flat id of the child centroid)
    std::vector<int64_t>& cand = ws.prefix_next;
    cand.resize(total);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < na; ++i) cand[b * na + i] = ws.prefix[b] * na + i;
    const int64_t keep = std::min(beam, total);
    select_best(ws.scores.data(), cand.data(), total, keep, ws.order);

    if (a + 1 < nc) {
      const int64_t rb = r[a + 1], nn = shape[a + 1];
      const float* g = c.core(a);
      const float* next_norms = c.centroid_norms(a + 1).data();
      std::vector<int64_t> new_prefix(keep);
      for (int64_t s = 0; s < keep; ++s) {
        const int64_t cidx = ws.order[s];
        const int64_t b = cidx / na, i = cidx % na;
        kernels::vec_mat(ws.h.data() + b * ra, ra, g + i * rb, na * rb, rb, ws.h_next.data() + s * rb);
        new_prefix[s] = cand[cidx];
        ws.base_next[s] = next_norms + cand[cidx] * nn;
      }
      std::swap(ws.h, ws.h_next);
      std::swap(ws.base, ws.base_next);
      std::copy(new_prefix.begin(), new_prefix.end(), ws.prefix.begin());
      nb = keep;
    } else {
      // exact distances for the final candidates, then the k best
      ws.final_.resize(keep);
      if (exact) {
        for (int64_t s = 0; s < keep; ++s) {
          const int64_t id = cand[ws.order[s]];
          c.centroid_one(nc, id, ws.work.data(), ws.point.data());
          ws.final_[s] = {kernels::l2sqr(q, ws.point.data(), d), id};
        }
      } else {
        double qn = 0.0;
        for (int64_t j = 0; j < d; ++j) qn += double(q[j]) * double(q[j]);
        for (int64_t s = 0; s < keep; ++s) {
          const int64_t ci = ws.order[s];
          ws.final_[s] = {std::max(0.0, qn + double(ws.scores[ci])), cand[ci]};
        }
      }
      const int64_t kk = std::min(k, keep);
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
  if (beam < k)
    throw std::invalid_argument("beam must be >= k (" + std::to_string(k) + "), got " +
                                std::to_string(beam));
  if (k > c.npoints())
    throw std::invalid_argument("k (" + std::to_string(k) + ") exceeds the number of points (" +
                                std::to_string(c.npoints()) + ")");
  const int nc = c.ncores();
  const auto& shape = c.shape();
  int64_t nmax = 0;
  for (auto s : shape) nmax = std::max(nmax, s);
  const int64_t beam_eff = std::min(beam, c.npoints());
  const int64_t rmax = c.max_rank();
  // the beam never holds more than min(beam, #centroids of the level) entries
  int64_t bmax = 1;
  for (int a = 0; a < nc; ++a) bmax = std::max(bmax, std::min(beam_eff, c.prefix_count(a + 1)));
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
