#include "kernels.hpp"

namespace tt {
namespace kernels {

TT_MULTIVERSION
void score_children(const float* h, int64_t nb, int64_t r, const float* wt, int64_t n,
                    const float* const* base, float* out) {
  for (int64_t b = 0; b < nb; ++b) {
    float* o = out + b * n;
    const float* nb_ = base[b];
    for (int64_t i = 0; i < n; ++i) o[i] = nb_[i];
    const float* hb = h + b * r;
    for (int64_t j = 0; j < r; ++j) {
      const float c = -2.0f * hb[j];
      const float* w = wt + j * n;
      for (int64_t i = 0; i < n; ++i) o[i] += c * w[i];
    }
  }
}

TT_MULTIVERSION
void vec_mat(const float* x, int64_t r, const float* a, int64_t lda, int64_t m, float* y) {
  for (int64_t l = 0; l < m; ++l) y[l] = 0.0f;
  for (int64_t j = 0; j < r; ++j) {
    const float c = x[j];
    const float* row = a + j * lda;
    for (int64_t l = 0; l < m; ++l) y[l] += c * row[l];
  }
}

double l2sqr(const float* a, const float* b, int64_t d) {
  double s = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    const double t = double(a[i]) - double(b[i]);
    s += t * t;
  }
  return s;
}

}  // namespace kernels
}  // namespace tt
