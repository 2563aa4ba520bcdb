// Small dense kernels of the hot loops. They are written as axpy-style loops over contiguous
// memory so the compiler vectorises them without -ffast-math, and carry an AVX2/FMA clone
// picked at load time, so the portable -O3 build is fast on modern x86-64.
#pragma once

#include <cstdint>

// The attribute goes on the definitions only (kernels.cpp): callers bind to the ifunc.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TT_MULTIVERSION
#endif

namespace tt {
namespace kernels {

// out[b*n + i] = base[b][i] - 2 * sum_j h[b*r + j] * wt[j*n + i]   for b < nb, i < n
// (base[b] points at the n squared norms of the children of beam b)
void score_children(const float* h, int64_t nb, int64_t r, const float* wt, int64_t n,
                    const float* const* base, float* out);

// y (m) = x (r) ^T A where A is r x m with row stride lda: y[l] = sum_j x[j] * A[j*lda + l]
void vec_mat(const float* x, int64_t r, const float* a, int64_t lda, int64_t m, float* y);

// squared L2 distance between two d-vectors, accumulated in double for an exact-enough result
double l2sqr(const float* a, const float* b, int64_t d);

}  // namespace kernels
}  // namespace tt
