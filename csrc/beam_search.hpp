// Batched beam search over the TT hierarchy (paper Algorithm 1) and what is built on it.
#pragma once

#include <cstdint>

#include "tt_cloud.hpp"

namespace tt {

// For each of the n queries in x (n x d, row-major), the k nearest TT points found by a beam
// of width `beam` (upper levels keep max(beam, enough prefixes to reach k points), the last
// level max(beam, k)): out_i (n x k) flat point ids, out_d (n x k) their exact squared L2
// distances, ascending (ties by id). Per level the beam keeps the `beam` best centroids by the
// cheap form ||c||^2 - 2 q.c, with q.c = h.w where h = L^T q is carried per beam and ||c||^2
// comes from the cloud's precomputed tables; the final candidates get exact distances.
// A beam >= the number of centroids of every level gives the brute-force answer.
// exact=false skips the final reconstruction: the k best by the cheap form are returned with
// distances ||q||^2 + cheap score (float32 rounding of the expanded form; for probe lists).
void beam_search(const TTCloud& cloud, const float* x, int64_t n, int64_t k, int64_t beam,
                 float* out_d, int64_t* out_i, bool exact = true);

// out (n x d) = x - point(ids)
void compute_residuals(const TTCloud& cloud, const float* x, const int64_t* ids, int64_t n,
                       float* out);

}  // namespace tt
