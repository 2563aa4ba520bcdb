// std::thread parallel loop (no OpenMP: faiss ships its own OpenMP runtime and two runtimes
// in one process is a known source of trouble).
#pragma once

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tt {

template <class Fn>
void parallel_for(int64_t n, int64_t min_chunk, Fn&& fn) {
  if (n <= 0) return;
  int64_t nt = std::min<int64_t>(get_num_threads(), (n + min_chunk - 1) / std::max<int64_t>(min_chunk, 1));
  if (nt <= 1) {
    fn(int64_t(0), n);
    return;
  }
  std::exception_ptr err;
  std::mutex err_mu;
  std::vector<std::thread> pool;
  pool.reserve(nt);
  const int64_t chunk = (n + nt - 1) / nt;
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!err) err = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace tt
