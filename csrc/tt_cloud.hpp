// TT point cloud: the model and the tables shared by every query.
//
// Core a (0-based, a = 0..k-1) is a row-major float32 array of shape r_a x N_a x r_{a+1}
// with r_0 = d and r_k = 1, so point (i_1..i_k) = G_0[:, i_1, :] G_1[:, i_2, :] ... G_{k-1}[:, i_k, :].
// No Python, no faiss here: errors are std::invalid_argument with a message.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tt {

class TTCloud {
 public:
  // cores[a] holds r_a * N_a * r_{a+1} floats; shape = (N_1..N_k), ranks = (r_1..r_{k-1}).
  TTCloud(int64_t d, std::vector<int64_t> shape, std::vector<int64_t> ranks,
          std::vector<std::vector<float>> cores);

  int64_t d() const { return d_; }
  int ncores() const { return static_cast<int>(shape_.size()); }
  const std::vector<int64_t>& shape() const { return shape_; }
  // r_0 = d, r_1..r_{k-1}, r_k = 1 (k + 1 entries)
  const std::vector<int64_t>& full_ranks() const { return r_; }
  int64_t npoints() const { return prefix_count_.back(); }
  // number of level-`level` centroids, N_1 * ... * N_level (level 0 -> 1)
  int64_t prefix_count(int level) const { return prefix_count_[level]; }
  const float* core(int a) const { return cores_[a].data(); }

  // Suffix-mean vector of cores a..k-1 (length r_a); v(k) = [1].
  const std::vector<float>& suffix_mean(int a) const { return v_[a]; }

  // Centroids of level `level` (1..k) for the given flat prefix ids: out is n x d.
  void centroids(int level, const int64_t* ids, int64_t n, float* out) const;
  // One centroid; work must hold 2 * max_rank() doubles.
  void centroid_one(int level, int64_t id, double* work, float* out) const;
  int64_t max_rank() const { return rmax_; }
  // Points (level k).
  void reconstruct(const int64_t* ids, int64_t n, float* out) const {
    centroids(ncores(), ids, n, out);
  }

  // Derived query-independent tables (built once, lazily, thread-safe by construction in
  // the constructor): WT[a] is r_a x N_a with column i = G_a[:, i, :] v(a+1); norms[a] holds
  // the squared norm of every level-(a+1) centroid, indexed prefix * N_a + i.
  const std::vector<float>& child_table(int a) const { return wt_[a]; }
  const std::vector<float>& centroid_norms(int a) const { return norms_[a]; }
  size_t table_bytes() const;

 private:
  void build_tables();
  void build_norms_from(int a, int64_t prefix, const std::vector<float>& gram);

  int64_t d_;
  std::vector<int64_t> shape_;
  std::vector<int64_t> r_;
  std::vector<int64_t> prefix_count_;
  int64_t rmax_ = 0;
  std::vector<std::vector<float>> cores_;
  std::vector<std::vector<float>> v_;
  std::vector<std::vector<float>> wt_;
  std::vector<std::vector<float>> norms_;
};

// Thread count used by all parallel loops of the core (default: hardware concurrency).
void set_num_threads(int n);
int get_num_threads();

// Runs fn(begin, end) over [0, n) split in contiguous chunks on up to get_num_threads()
// threads; the split never changes results since each item is independent.
template <class Fn>
void parallel_for(int64_t n, int64_t min_chunk, Fn&& fn);

}  // namespace tt

#include "parallel.hpp"
