#include "tt_cloud.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "kernels.hpp"

namespace tt {

namespace {
std::atomic<int> g_num_threads{0};
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  g_num_threads.store(n);
}

int get_num_threads() {
  int n = g_num_threads.load();
  if (n > 0) return n;
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

TTCloud::TTCloud(int64_t d, std::vector<int64_t> shape, std::vector<int64_t> ranks,
                 std::vector<std::vector<float>> cores)
    : d_(d), shape_(std::move(shape)), cores_(std::move(cores)) {
  const int k = static_cast<int>(shape_.size());
  if (d_ < 1) throw std::invalid_argument("d must be >= 1, got " + std::to_string(d_));
  if (k < 1) throw std::invalid_argument("shape must have at least one mode");
  if (static_cast<int>(ranks.size()) != k - 1)
    throw std::invalid_argument("expected " + std::to_string(k - 1) + " ranks for " +
                                std::to_string(k) + " cores, got " + std::to_string(ranks.size()));
  if (static_cast<int>(cores_.size()) != k)
    throw std::invalid_argument("expected " + std::to_string(k) + " cores, got " +
                                std::to_string(cores_.size()));
  r_.assign(k + 1, 1);
  r_[0] = d_;
  for (int a = 1; a < k; ++a) {
    if (ranks[a - 1] < 1)
      throw std::invalid_argument("rank " + std::to_string(a) + " must be >= 1, got " +
                                  std::to_string(ranks[a - 1]));
    r_[a] = ranks[a - 1];
  }
  rmax_ = *std::max_element(r_.begin(), r_.end());
  prefix_count_.assign(k + 1, 1);
  for (int a = 0; a < k; ++a) {
    if (shape_[a] < 1)
      throw std::invalid_argument("shape[" + std::to_string(a) + "] must be >= 1, got " +
                                  std::to_string(shape_[a]));
    if (prefix_count_[a] > (int64_t(1) << 40) / shape_[a])
      throw std::invalid_argument("too many points (product of shape exceeds 2^40)");
    prefix_count_[a + 1] = prefix_count_[a] * shape_[a];
    const size_t expect = size_t(r_[a]) * size_t(shape_[a]) * size_t(r_[a + 1]);
    if (cores_[a].size() != expect)
      throw std::invalid_argument("core " + std::to_string(a) + " has " +
                                  std::to_string(cores_[a].size()) + " values, expected " +
                                  std::to_string(expect));
    for (float x : cores_[a])
      if (!std::isfinite(x))
        throw std::invalid_argument("core " + std::to_string(a) + " contains NaN or Inf");
  }
  build_tables();
}

size_t TTCloud::table_bytes() const {
  size_t s = 0;
  for (auto& t : wt_) s += t.size() * sizeof(float);
  for (auto& t : norms_) s += t.size() * sizeof(float);
  for (auto& t : v_) s += t.size() * sizeof(float);
  return s;
}

void TTCloud::build_tables() {
  const int k = ncores();
  v_.assign(k + 1, {});
  v_[k] = {1.0f};
  wt_.assign(k, {});
  for (int a = k - 1; a >= 0; --a) {
    const int64_t ra = r_[a], n = shape_[a], rb = r_[a + 1];
    const float* g = cores_[a].data();
    const std::vector<float>& vn = v_[a + 1];
    std::vector<float>& wt = wt_[a];
    wt.assign(size_t(ra * n), 0.0f);
    std::vector<float> v(ra, 0.0f);
    for (int64_t j = 0; j < ra; ++j) {
      double acc_v = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const float* row = g + (j * n + i) * rb;
        double acc = 0.0;
        for (int64_t l = 0; l < rb; ++l) acc += double(row[l]) * double(vn[l]);
        wt[j * n + i] = float(acc);
        acc_v += acc;
      }
      v[j] = float(acc_v / double(n));
    }
    v_[a] = std::move(v);
  }

  norms_.assign(k, {});
  for (int a = 0; a < k; ++a) norms_[a].assign(size_t(prefix_count_[a + 1]), 0.0f);
  // level 1: the centroids are the columns of wt_[0] (Gram = identity)
  {
    const int64_t n = shape_[0];
    for (int64_t j = 0; j < d_; ++j)
      for (int64_t i = 0; i < n; ++i) norms_[0][i] += wt_[0][j * n + i] * wt_[0][j * n + i];
  }
  if (k == 1) return;
  const int64_t n0 = shape_[0], r1 = r_[1];
  parallel_for(n0, 1, [&](int64_t b, int64_t e) {
    std::vector<float> gram(size_t(r1 * r1));
    for (int64_t i = b; i < e; ++i) {
      // Gram of G_0[:, i, :]
      std::fill(gram.begin(), gram.end(), 0.0f);
      for (int64_t x = 0; x < d_; ++x) {
        const float* row = cores_[0].data() + (x * n0 + i) * r1;
        for (int64_t j = 0; j < r1; ++j) {
          const float c = row[j];
          for (int64_t l = 0; l < r1; ++l) gram[j * r1 + l] += c * row[l];
        }
      }
      build_norms_from(1, i, gram);
    }
  });
}

// gram is L^T L for the prefix's left product L (d x r_a); fills the squared norms of the
// prefix's children at level a+1, then recurses into each child.
void TTCloud::build_norms_from(int a, int64_t prefix, const std::vector<float>& gram) {
  const int k = ncores();
  const int64_t ra = r_[a], n = shape_[a], rb = r_[a + 1];
  const std::vector<float>& wt = wt_[a];
  std::vector<float> u(size_t(ra * n));
  // U = Gram * WT, norms = colsum(WT .* U)
  for (int64_t j = 0; j < ra; ++j) kernels::vec_mat(gram.data() + j * ra, ra, wt.data(), n, n, u.data() + j * n);
  float* out = norms_[a].data() + prefix * n;
  for (int64_t i = 0; i < n; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < ra; ++j)
    for (int64_t i = 0; i < n; ++i) out[i] += wt[j * n + i] * u[j * n + i];
  if (a + 1 >= k) return;
  const float* g = cores_[a].data();
  std::vector<float> m(size_t(ra * rb)), gi(size_t(ra * rb)), next(size_t(rb * rb));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < ra; ++j)
      std::copy(g + (j * n + i) * rb, g + (j * n + i) * rb + rb, gi.begin() + j * rb);
    // M = Gram * G_i  (ra x rb); next = G_i^T M  (rb x rb)
    for (int64_t j = 0; j < ra; ++j) kernels::vec_mat(gram.data() + j * ra, ra, gi.data(), rb, rb, m.data() + j * rb);
    std::fill(next.begin(), next.end(), 0.0f);
    for (int64_t j = 0; j < ra; ++j) {
      const float* gr = gi.data() + j * rb;
      const float* mr = m.data() + j * rb;
      for (int64_t l = 0; l < rb; ++l) {
        const float c = gr[l];
        float* nr = next.data() + l * rb;
        for (int64_t l2 = 0; l2 < rb; ++l2) nr[l2] += c * mr[l2];
      }
    }
    build_norms_from(a + 1, prefix * n + i, next);
  }
}

void TTCloud::centroids(int level, const int64_t* ids, int64_t n, float* out) const {
  const int k = ncores();
  if (level < 1 || level > k)
    throw std::invalid_argument("level must be in 1.." + std::to_string(k) + ", got " +
                                std::to_string(level));
  const int64_t limit = prefix_count_[level];
  for (int64_t q = 0; q < n; ++q)
    if (ids[q] < 0 || ids[q] >= limit)
      throw std::invalid_argument("id " + std::to_string(ids[q]) + " out of range [0, " +
                                  std::to_string(limit) + ")");
  parallel_for(n, 256, [&](int64_t b, int64_t e) {
    std::vector<double> work(2 * rmax_);
    for (int64_t q = b; q < e; ++q) centroid_one(level, ids[q], work.data(), out + q * d_);
  });
}

void TTCloud::centroid_one(int level, int64_t id, double* work, float* out) const {
  double* t = work;
  double* t2 = work + rmax_;
  const std::vector<float>& v = v_[level];
  for (int64_t j = 0; j < r_[level]; ++j) t[j] = v[j];
  // walk the cores right to left: t <- G_a[:, i_{a+1}, :] t
  for (int a = level - 1; a >= 0; --a) {
    const int64_t ra = r_[a], na = shape_[a], rb = r_[a + 1];
    const int64_t ia = id % na;
    id /= na;
    const float* g = cores_[a].data() + ia * rb;
    for (int64_t j = 0; j < ra; ++j) {
      const float* row = g + j * na * rb;
      double acc = 0.0;
      for (int64_t l = 0; l < rb; ++l) acc += double(row[l]) * t[l];
      t2[j] = acc;
    }
    std::swap(t, t2);
  }
  for (int64_t x = 0; x < d_; ++x) out[x] = float(t[x]);
}

}  // namespace tt
