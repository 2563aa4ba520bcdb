// The only file that knows about Python: numpy in and out, shape checks, GIL release.
// Dtype conversion and NaN policy live in tt_faiss/_validate.py; here we only insist on
// float32 / int64 C-contiguous arrays of the right shape, so nothing can read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "beam_search.hpp"
#include "tt_cloud.hpp"

namespace py = pybind11;

using F32 = py::array_t<float, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;

namespace {

void check_matrix(const F32& x, int64_t d, const char* name) {
  if (x.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D (n, d), got " + std::to_string(x.ndim()) + "-D");
  if (x.shape(1) != d)
    throw py::value_error(std::string(name) + " must have d=" + std::to_string(d) + " columns, got " +
                          std::to_string(x.shape(1)));
}

void check_vector(const I64& ids, const char* name) {
  if (ids.ndim() != 1)
    throw py::value_error(std::string(name) + " must be 1-D, got " + std::to_string(ids.ndim()) + "-D");
}

std::shared_ptr<tt::TTCloud> make_cloud(int64_t d, std::vector<int64_t> shape,
                                        std::vector<int64_t> ranks, std::vector<F32> cores) {
  std::vector<std::vector<float>> data;
  data.reserve(cores.size());
  for (auto& c : cores) data.emplace_back(c.data(), c.data() + c.size());
  py::gil_scoped_release release;
  return std::make_shared<tt::TTCloud>(d, std::move(shape), std::move(ranks), std::move(data));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tt_faiss C++ core: TT point cloud tables, beam search, reconstruction";
  m.def("set_num_threads", &tt::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &tt::get_num_threads);

  py::class_<tt::TTCloud, std::shared_ptr<tt::TTCloud>>(m, "Cloud")
      .def(py::init(&make_cloud), py::arg("d"), py::arg("shape"), py::arg("ranks"), py::arg("cores"))
      .def_property_readonly("d", &tt::TTCloud::d)
      .def_property_readonly("npoints", &tt::TTCloud::npoints)
      .def_property_readonly("table_bytes", &tt::TTCloud::table_bytes)
      .def("centroid_norms", [](const tt::TTCloud& c, int level) {
        if (level < 1 || level > c.ncores()) throw py::value_error("level out of range");
        const auto& v = c.centroid_norms(level - 1);
        return F32(py::ssize_t(v.size()), v.data());
      })
      .def("centroids", [](const tt::TTCloud& c, int level, I64 ids) {
        check_vector(ids, "ids");
        const int64_t n = ids.shape(0);
        F32 out({n, c.d()});
        {
          py::gil_scoped_release release;
          c.centroids(level, ids.data(), n, out.mutable_data());
        }
        return out;
      }, py::arg("level"), py::arg("ids"))
      .def("search", [](const tt::TTCloud& c, F32 x, int64_t k, int64_t beam, bool exact) {
        check_matrix(x, c.d(), "x");
        const int64_t n = x.shape(0);
        F32 dist({n, k > 0 ? k : int64_t(0)});
        I64 ids({n, k > 0 ? k : int64_t(0)});
        {
          py::gil_scoped_release release;
          tt::beam_search(c, x.data(), n, k, beam, dist.mutable_data(), ids.mutable_data(), exact);
        }
        return py::make_tuple(dist, ids);
      }, py::arg("x"), py::arg("k"), py::arg("beam"), py::arg("exact") = true)
      .def("residuals", [](const tt::TTCloud& c, F32 x, I64 ids) {
        check_matrix(x, c.d(), "x");
        check_vector(ids, "ids");
        if (ids.shape(0) != x.shape(0))
          throw py::value_error("ids must have one entry per row of x: " + std::to_string(x.shape(0)) +
                                " rows, " + std::to_string(ids.shape(0)) + " ids");
        const int64_t n = x.shape(0);
        F32 out({n, c.d()});
        {
          py::gil_scoped_release release;
          tt::compute_residuals(c, x.data(), ids.data(), n, out.mutable_data());
        }
        return out;
      }, py::arg("x"), py::arg("ids"));
}
