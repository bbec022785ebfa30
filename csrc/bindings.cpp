// pybind11 module pytts._core: converts and validates arguments, then runs the kernels of the
// headers beside it with the GIL released. Every rejected argument raises ValueError naming it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cost.hpp"
#include "canon.hpp"
#include "intern.hpp"
#include "py_text.hpp"
#include "sample.hpp"
#include "vote.hpp"

#ifndef PYTTS_BUILD_FLAGS  // setup.py defines it; a build by other means records nothing
#define PYTTS_BUILD_FLAGS "unknown"
#endif

namespace py = pybind11;
using pytts::BadValue;

namespace {

// What int16 model indices and int8 roles can hold (pytts.constants.MAX_MODELS, MAX_ROLES).
constexpr int kMaxModels = 32767;
constexpr int kMaxRoles = 127;

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

std::string shape_str(const std::vector<py::ssize_t>& s) {
    std::ostringstream o;
    o << "(";
    for (std::size_t k = 0; k < s.size(); ++k) o << (k ? ", " : "") << s[k];
    if (s.size() == 1) o << ",";
    o << ")";
    return o.str();
}

// A validated read-only view of an ndarray argument: right type, dtype, rank, C order, aligned.
template <class T>
struct In {
    py::array arr;
    const T* data = nullptr;
    std::vector<py::ssize_t> shape;
    const char* name = "";

    py::ssize_t size() const {
        py::ssize_t n = 1;
        for (auto s : shape) n *= s;
        return n;
    }
    // Requires the exact shape `want` (whose entries are described by `symbols`, e.g. "(B, D, W)").
    void expect_shape(const std::vector<py::ssize_t>& want, const char* symbols) const {
        if (shape != want)
            fail(std::string(name) + " must have shape " + symbols + " = " + shape_str(want) +
                 ", got " + shape_str(shape));
    }
};

template <class T>
In<T> take(py::handle obj, const char* name, int ndim) {
    const auto dt = py::dtype::of<T>();
    // The dtype's name only for the messages (making it costs more than the checks).
    auto dtname = [&dt] { return py::str(dt).cast<std::string>(); };
    if (!py::isinstance<py::array>(obj))
        fail(std::string(name) + " must be a numpy.ndarray of dtype " + dtname() + ", got " +
             py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    In<T> in;
    in.arr = py::reinterpret_borrow<py::array>(obj);
    in.name = name;
    auto& api = py::detail::npy_api::get();
    if (!api.PyArray_EquivTypes_(in.arr.dtype().ptr(), dt.ptr()))
        fail(std::string(name) + " must have dtype " + dtname() +
             " (no implicit conversion), got " + py::str(in.arr.dtype()).cast<std::string>());
    if (in.arr.ndim() != ndim)
        fail(std::string(name) + " must be " + std::to_string(ndim) + "-dimensional, got " +
             std::to_string(in.arr.ndim()) + " dimensions");
    const int flags = py::detail::array_proxy(in.arr.ptr())->flags;
    if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
        fail(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        fail(std::string(name) + " must be aligned for its dtype (use numpy.ascontiguousarray)");
    in.shape.assign(in.arr.shape(), in.arr.shape() + ndim);
    in.data = static_cast<const T*>(in.arr.data());
    return in;
}

double take_float(py::handle obj, const char* name) {
    if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()))
        fail(std::string(name) + " must be a real number, got a string");
    const double v = PyFloat_AsDouble(obj.ptr());
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        fail(std::string(name) + " must be a real number, got " +
             py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    }
    return v;
}

// A Python integer (or an object with __index__) in [lo, hi].
long long take_int(py::handle obj, const char* name, long long lo, long long hi) {
    PyObject* idx = PyNumber_Index(obj.ptr());
    if (!idx) {
        PyErr_Clear();
        fail(std::string(name) + " must be an integer");
    }
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (overflow || v < lo || v > hi)
        fail(std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    return v;
}

std::uint64_t take_seed(py::handle obj) {
    PyObject* idx = PyNumber_Index(obj.ptr());
    if (!idx) {
        PyErr_Clear();
        fail("seed must be an integer in [0, 2**64)");
    }
    const unsigned long long v = PyLong_AsUnsignedLongLong(idx);
    Py_DECREF(idx);
    if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        fail("seed must be an integer in [0, 2**64)");
    }
    return v;
}

// "name[i, j, k] = value": the position of a flat index in an array of the given shape.
std::string where(const char* name, std::int64_t flat, const std::vector<py::ssize_t>& shape) {
    std::vector<std::int64_t> idx(shape.size());
    for (std::size_t k = shape.size(); k-- > 0;) {
        const std::int64_t s = shape[k] > 0 ? shape[k] : 1;
        idx[k] = flat % s;
        flat /= s;
    }
    std::ostringstream o;
    o << name << "[";
    for (std::size_t k = 0; k < idx.size(); ++k) o << (k ? ", " : "") << idx[k];
    o << "]";
    return o.str();
}

std::string num(double v) {
    std::ostringstream o;
    o.precision(17);
    o << v;
    return o.str();
}

void check_limit(long long v, long long lo, long long hi, const char* what, const char* arg) {
    if (v < lo || v > hi)
        fail(std::string(arg) + ": " + what + " = " + std::to_string(v) + " is outside [" +
             std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// The graph batch (model, role, edges) with its dimensions taken from model.
struct Graphs {
    In<std::int16_t> model;
    In<std::int8_t> role;
    In<std::uint8_t> edges;
    py::ssize_t B, D, W;
};

Graphs take_graphs(py::handle model, py::handle role, py::handle edges) {
    Graphs g;
    g.model = take<std::int16_t>(model, "model", 3);
    g.B = g.model.shape[0];
    g.D = g.model.shape[1];
    g.W = g.model.shape[2];
    check_limit(g.D, 1, pytts::kMaxDepth, "depth D (model.shape[1])", "model");
    check_limit(g.W, 1, pytts::kMaxWidth, "width W (model.shape[2])", "model");
    g.role = take<std::int8_t>(role, "role", 3);
    g.role.expect_shape({g.B, g.D, g.W}, "(B, D, W)");
    g.edges = take<std::uint8_t>(edges, "edges", 4);
    g.edges.expect_shape({g.B, g.D - 1, g.W, g.W}, "(B, D-1, W, W)");
    return g;
}

pytts::ModelCosts take_model_costs(py::handle obj) {
    auto mc = take<double>(obj, "model_costs", 2);
    check_limit(mc.shape[0], 1, kMaxModels, "number of models K (model_costs.shape[0])",
                "model_costs");
    if (mc.shape[1] != 5)
        fail("model_costs must have shape (K, 5) with columns flops_per_token, out_tokens, "
             "prefill_tps, decode_tps, overhead_s; got " + shape_str(mc.shape));
    pytts::ModelCosts costs;
    const BadValue bad = costs.load(mc.data, static_cast<int>(mc.shape[0]));
    if (bad)
        fail(where("model_costs", bad.flat, mc.shape) + " = " + num(bad.value) +
             " is invalid: flops_per_token, out_tokens and overhead_s must be finite and >= 0, "
             "prefill_tps and decode_tps finite and > 0");
    return costs;
}

// Raises the ValueError for a bad value found by a kernel in one of the named arrays.
void raise_bad(const BadValue& bad, std::initializer_list<std::pair<const char*, const std::vector<py::ssize_t>*>> arrays,
               const std::string& rule) {
    for (const auto& a : arrays)
        if (std::string(a.first) == bad.arg)
            fail(where(bad.arg, bad.flat, *a.second) + " = " + num(bad.value) + " is invalid: " +
                 rule);
    fail(std::string(bad.arg) + " has an invalid value " + num(bad.value) + ": " + rule);
}

// The ProbGraph logits with their dimensions; all finite.
struct LogitArgs {
    In<double> depth, width, model, role, edge;
    pytts::Logits view() const {
        return {static_cast<int>(depth.shape[0]), static_cast<int>(width.shape[2]),
                static_cast<int>(model.shape[2]), static_cast<int>(role.shape[2]),
                depth.data, width.data, model.data, role.data, edge.data};
    }
};

LogitArgs take_logits(py::handle depth, py::handle width, py::handle model, py::handle role,
                      py::handle edge) {
    LogitArgs a;
    a.depth = take<double>(depth, "depth_logits", 1);
    const py::ssize_t D = a.depth.shape[0];
    check_limit(D, 1, pytts::kMaxDepth, "depth D (depth_logits.shape[0])", "depth_logits");
    a.width = take<double>(width, "width_logits", 3);
    const py::ssize_t W = a.width.shape[2];
    check_limit(W, 1, pytts::kMaxWidth, "width W (width_logits.shape[2])", "width_logits");
    a.width.expect_shape({D, D, W}, "(D, D, W)");
    a.model = take<double>(model, "model_logits", 3);
    const py::ssize_t K = a.model.shape[2];
    check_limit(K, 1, kMaxModels, "number of models K (model_logits.shape[2])", "model_logits");
    a.model.expect_shape({D, W, K}, "(D, W, K)");
    a.role = take<double>(role, "role_logits", 3);
    const py::ssize_t R = a.role.shape[2];
    check_limit(R, 1, kMaxRoles, "number of roles R (role_logits.shape[2])", "role_logits");
    a.role.expect_shape({D, W, R}, "(D, W, R)");
    a.edge = take<double>(edge, "edge_logits", 3);
    a.edge.expect_shape({D - 1, W, W}, "(D-1, W, W)");

    for (const In<double>* x : {&a.depth, &a.width, &a.model, &a.role, &a.edge}) {
        std::int64_t bad = -1;
        {
            py::gil_scoped_release nogil;
            const std::int64_t n = x->size();
            for (std::int64_t k = 0; k < n; ++k)
                if (!std::isfinite(x->data[k])) { bad = k; break; }
        }
        if (bad >= 0)
            fail(where(x->name, bad, x->shape) + " = " + num(x->data[bad]) +
                 ": logits must be finite");
    }
    return a;
}

void check_graphs_match(const Graphs& g, const pytts::Logits& p) {
    if (g.D != p.D || g.W != p.W)
        fail("model has shape " + shape_str(g.model.shape) + " but the logits describe D = " +
             std::to_string(p.D) + ", W = " + std::to_string(p.W));
}

const char* kGraphRule =
    "model must be in [-1, K), role in [0, R), edges in {0, 1}";

template <class T>
py::array_t<T> empty(std::vector<py::ssize_t> shape) {
    return py::array_t<T>(shape);
}

py::tuple graph_cost(py::handle model, py::handle role, py::handle edges, py::handle model_costs,
                     py::handle base_prompt_tokens) {
    Graphs g = take_graphs(model, role, edges);
    pytts::ModelCosts mc = take_model_costs(model_costs);
    const double base = take_float(base_prompt_tokens, "base_prompt_tokens");
    if (!(std::isfinite(base) && base >= 0.0))
        fail("base_prompt_tokens must be finite and >= 0, got " + num(base));
    auto flops = empty<double>({g.B});
    auto lat = empty<double>({g.B});
    BadValue bad;
    {
        double* f = flops.mutable_data();
        double* l = lat.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::graph_cost(g.model.data, g.edges.data, g.B, static_cast<int>(g.D),
                                static_cast<int>(g.W), mc, base, f, l);
    }
    if (bad)
        raise_bad(bad, {{"model", &g.model.shape}, {"edges", &g.edges.shape}},
                  "model must be in [-1, K) with K = model_costs.shape[0], edges in {0, 1}");
    return py::make_tuple(flops, lat);
}

py::array feasible(py::handle model, py::handle role, py::handle edges, py::handle model_costs,
                   py::handle base_prompt_tokens, py::handle budget_obj) {
    Graphs g = take_graphs(model, role, edges);
    pytts::ModelCosts mc = take_model_costs(model_costs);
    const double base = take_float(base_prompt_tokens, "base_prompt_tokens");
    if (!(std::isfinite(base) && base >= 0.0))
        fail("base_prompt_tokens must be finite and >= 0, got " + num(base));
    const double budget = take_float(budget_obj, "budget");
    if (std::isnan(budget)) fail("budget must be a number (inf for no budget), got nan");
    auto out = empty<bool>({g.B});
    BadValue bad;
    {
        bool* o = out.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::feasible(g.model.data, g.edges.data, g.B, static_cast<int>(g.D),
                              static_cast<int>(g.W), mc, base, budget, o);
    }
    if (bad)
        raise_bad(bad, {{"model", &g.model.shape}, {"edges", &g.edges.shape}},
                  "model must be in [-1, K) with K = model_costs.shape[0], edges in {0, 1}");
    return out;
}

py::array log_prob(py::handle depth, py::handle width, py::handle model_l, py::handle role_l,
                   py::handle edge_l, py::handle model, py::handle role, py::handle edges) {
    LogitArgs a = take_logits(depth, width, model_l, role_l, edge_l);
    const pytts::Logits p = a.view();
    Graphs g = take_graphs(model, role, edges);
    check_graphs_match(g, p);
    auto out = empty<double>({g.B});
    BadValue bad;
    {
        double* o = out.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::log_prob(p, g.model.data, g.role.data, g.edges.data, g.B, o);
    }
    if (bad)
        raise_bad(bad, {{"model", &g.model.shape}, {"role", &g.role.shape},
                        {"edges", &g.edges.shape}}, kGraphRule);
    return out;
}

py::tuple grad_log_prob(py::handle depth, py::handle width, py::handle model_l,
                        py::handle role_l, py::handle edge_l, py::handle model, py::handle role,
                        py::handle edges, py::handle weights_obj) {
    LogitArgs a = take_logits(depth, width, model_l, role_l, edge_l);
    const pytts::Logits p = a.view();
    Graphs g = take_graphs(model, role, edges);
    check_graphs_match(g, p);
    auto weights = take<double>(weights_obj, "weights", 1);
    weights.expect_shape({g.B}, "(B,)");
    auto zeros = [](const In<double>& like) {
        py::array_t<double> z(like.shape);
        std::fill(z.mutable_data(), z.mutable_data() + z.size(), 0.0);
        return z;
    };
    auto gd = zeros(a.depth), gw = zeros(a.width), gm = zeros(a.model), gr = zeros(a.role),
         ge = zeros(a.edge);
    BadValue bad;
    std::int64_t zero_graph = -1;
    {
        pytts::LogitGrads out{gd.mutable_data(), gw.mutable_data(), gm.mutable_data(),
                              gr.mutable_data(), ge.mutable_data()};
        py::gil_scoped_release nogil;
        bad = pytts::grad_log_prob(p, g.model.data, g.role.data, g.edges.data, weights.data, g.B,
                                   out, zero_graph);
    }
    if (bad) {
        if (std::string(bad.arg) == "weights")
            fail(where("weights", bad.flat, weights.shape) + " = " + num(bad.value) +
                 " is invalid: weights must be finite");
        raise_bad(bad, {{"model", &g.model.shape}, {"role", &g.role.shape},
                        {"edges", &g.edges.shape}}, kGraphRule);
    }
    if (zero_graph >= 0)
        fail("model/role/edges: graph " + std::to_string(zero_graph) +
             " has probability 0 under these logits (log_prob = -inf), so its score is "
             "undefined; pass only graphs the distribution can produce");
    return py::make_tuple(gd, gw, gm, gr, ge);
}

// The code the sampler may use, from the environment: PYTTS_SAMPLER_ISA=baseline keeps it on
// portable code (the tests compare the two; the graphs are the same), unset or "best" lets it
// use what the CPU runs. Read per call, so a process can switch.
pytts::SamplerIsa sampler_isa() {
    const char* v = std::getenv("PYTTS_SAMPLER_ISA");
    if (v == nullptr || *v == '\0' || std::string(v) == "best") return pytts::SamplerIsa::best;
    if (std::string(v) == "baseline") return pytts::SamplerIsa::baseline;
    fail("environment variable PYTTS_SAMPLER_ISA must be 'best' or 'baseline', got '" +
         std::string(v) + "'");
}

// The sampling tables of one set of logits, built once: every `sample` call then only draws.
// The logits are copied in, so the object owns everything its tables point into and the caller
// may change its arrays afterwards.
class Sampler {
public:
    Sampler(py::handle depth, py::handle width, py::handle model, py::handle role,
            py::handle edge) {
        const LogitArgs a = take_logits(depth, width, model, role, edge);
        const pytts::Logits view = a.view();
        const In<double>* in[] = {&a.depth, &a.width, &a.model, &a.role, &a.edge};
        for (int k = 0; k < 5; ++k) copies_[k].assign(in[k]->data, in[k]->data + in[k]->size());
        p_ = {view.D, view.W, view.K, view.R, copies_[0].data(), copies_[1].data(),
              copies_[2].data(), copies_[3].data(), copies_[4].data()};
        py::gil_scoped_release nogil;
        tables_ = std::make_unique<const pytts::ProbTables>(p_, true);
    }

    py::tuple sample(py::handle model_costs, py::handle base_prompt_tokens, py::handle n_obj,
                     py::handle seed_obj, py::handle budget_obj, py::handle max_draws_obj) const {
        const double base = take_float(base_prompt_tokens, "base_prompt_tokens");
        if (!(std::isfinite(base) && base >= 0.0))
            fail("base_prompt_tokens must be finite and >= 0, got " + num(base));
        const std::int64_t n = take_int(n_obj, "n", 0, std::numeric_limits<std::int64_t>::max());
        const std::uint64_t seed = take_seed(seed_obj);
        const double budget = take_float(budget_obj, "budget");
        if (std::isnan(budget)) fail("budget must be a number (inf for no budget), got nan");
        const std::int64_t max_draws =
            take_int(max_draws_obj, "max_draws", 0, std::numeric_limits<std::int64_t>::max());
        const bool conditioned = budget != std::numeric_limits<double>::infinity();
        // Without a budget the costs are never read, so they are not validated either (callers
        // may pass a placeholder table).
        pytts::ModelCosts mc;
        if (conditioned) {
            if (model_costs.is_none()) fail("model_costs is required when budget is finite");
            mc = take_model_costs(model_costs);
            if (mc.K < p_.K)
                fail("model_costs has " + std::to_string(mc.K) + " rows but model_logits has K = " +
                     std::to_string(p_.K) + " models");
        }

        const pytts::SamplerIsa isa = sampler_isa();
        const py::ssize_t D = p_.D, W = p_.W;
        auto om = empty<std::int16_t>({n, D, W});
        auto orl = empty<std::int8_t>({n, D, W});
        auto oe = empty<std::uint8_t>({n, D - 1, W, W});
        auto ol = empty<double>({n});
        pytts::SampleStats st;
        {
            pytts::SampleOut out{om.mutable_data(), orl.mutable_data(), oe.mutable_data(),
                                 ol.mutable_data()};
            py::gil_scoped_release nogil;
            st = conditioned ? pytts::sample_graphs<true>(*tables_, &mc, base, n, seed, budget,
                                                          max_draws, out, isa)
                             : pytts::sample_graphs<false>(*tables_, nullptr, base, n, seed,
                                                           budget, max_draws, out, isa);
        }
        py::object m = om, r = orl, e = oe, l = ol;
        if (st.accepted < n) {
            const py::slice rows(0, st.accepted, 1);
            m = m[rows];
            r = r[rows];
            e = e[rows];
            l = l[rows];
        }
        return py::make_tuple(m, r, e, l, st.drawn);
    }

private:
    std::vector<double> copies_[5];
    pytts::Logits p_{};
    std::unique_ptr<const pytts::ProbTables> tables_;
};

py::tuple sample_graphs(py::handle depth, py::handle width, py::handle model_l,
                        py::handle role_l, py::handle edge_l, py::handle model_costs,
                        py::handle base_prompt_tokens, py::handle n_obj, py::handle seed_obj,
                        py::handle budget_obj, py::handle max_draws_obj) {
    return Sampler(depth, width, model_l, role_l, edge_l)
        .sample(model_costs, base_prompt_tokens, n_obj, seed_obj, budget_obj, max_draws_obj);
}

py::tuple vote(py::handle ids_obj, py::handle weights_obj) {
    auto ids = take<std::int64_t>(ids_obj, "ids", 2);
    const py::ssize_t Q = ids.shape[0], B = ids.shape[1];
    In<double> weights;
    const bool weighted = !weights_obj.is_none();
    if (weighted) {
        weights = take<double>(weights_obj, "weights", 2);
        weights.expect_shape(ids.shape, "ids.shape");
    }
    auto winner = empty<std::int64_t>({Q});
    auto support = empty<double>({Q});
    BadValue bad;
    {
        std::int64_t* w = winner.mutable_data();
        double* s = support.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::vote(ids.data, weighted ? weights.data : nullptr, Q, B, w, s);
    }
    if (bad) {
        if (std::string(bad.arg) == "ids")
            fail(where("ids", bad.flat, ids.shape) + " = " +
                 std::to_string(static_cast<long long>(bad.value)) +
                 " is invalid: ids must be >= 0, or -1 for a missing answer");
        fail(where("weights", bad.flat, ids.shape) + " = " + num(bad.value) +
             " is invalid: weights must be finite and >= 0");
    }
    return py::make_tuple(winner, support);
}

py::array intern_answers(py::handle answers) {
    PyObject* obj = answers.ptr();
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || !PySequence_Check(obj))
        fail("answers must be a list of str or None");
    // A tuple holds its own references, so the strings stay alive (and their UTF-8 buffers
    // valid) while the GIL is released, whatever other threads do to the caller's list.
    py::tuple items = py::reinterpret_steal<py::tuple>(PySequence_Tuple(obj));
    if (!items) throw py::error_already_set();
    const std::size_t n = static_cast<std::size_t>(PyTuple_GET_SIZE(items.ptr()));
    std::vector<const char*> ptrs(n);
    std::vector<std::size_t> lens(n);
    std::vector<py::object> encoded;
    for (std::size_t k = 0; k < n; ++k) {
        PyObject* s = PyTuple_GET_ITEM(items.ptr(), k);
        if (s == Py_None) {
            ptrs[k] = nullptr;
            lens[k] = 0;
            continue;
        }
        if (!PyUnicode_Check(s))
            fail("answers[" + std::to_string(k) + "] must be str or None, got " +
                 std::string(Py_TYPE(s)->tp_name));
        Py_ssize_t len = 0;
        const char* u = PyUnicode_AsUTF8AndSize(s, &len);
        if (!u) {
            // Lone surrogates have no UTF-8 form; like the reference, hash their "surrogatepass"
            // encoding (rare, so the copy is kept alive in `encoded`).
            PyErr_Clear();
            PyObject* bytes = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
            if (!bytes) {
                PyErr_Clear();
                fail("answers[" + std::to_string(k) + "] cannot be encoded as UTF-8");
            }
            encoded.push_back(py::reinterpret_steal<py::object>(bytes));
            u = PyBytes_AS_STRING(bytes);
            len = PyBytes_GET_SIZE(bytes);
        }
        ptrs[k] = u;
        lens[k] = static_cast<std::size_t>(len);
    }
    auto ids = empty<std::int64_t>({static_cast<py::ssize_t>(n)});
    {
        std::int64_t* out = ids.mutable_data();
        py::gil_scoped_release nogil;
        pytts::intern_many(ptrs.data(), lens.data(), n, out);
    }
    return ids;
}

// Canonical slot orders; the kernel reads any int16/int8/uint8 values safely (a slot is a node
// where model >= 0, an edge is any nonzero byte), so only shapes are checked here.
py::array canonical_order(py::handle model, py::handle role, py::handle edges) {
    const Graphs g = take_graphs(model, role, edges);
    auto out = empty<std::int32_t>({g.B, g.D, g.W});
    {
        std::int32_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        pytts::CanonicalForm form;
        const py::ssize_t dw = g.D * g.W;
        for (py::ssize_t b = 0; b < g.B; ++b)
            form.run(g.model.data + b * dw, g.role.data + b * dw,
                     g.edges.data + b * (g.D - 1) * g.W * g.W, static_cast<int>(g.D),
                     static_cast<int>(g.W), o + b * dw);
    }
    return out;
}

// The final-answer scanners of extract.hpp on a str's code points, read in place at their width.
template <class F>
auto with_code_points(py::handle text, F&& scan) {
    PyObject* s = text.ptr();
    if (!PyUnicode_Check(s))
        fail(std::string("text must be a str, got ") + Py_TYPE(s)->tp_name);
    const auto n = static_cast<std::size_t>(PyUnicode_GET_LENGTH(s));
    switch (PyUnicode_KIND(s)) {
        case PyUnicode_1BYTE_KIND: return scan(PyUnicode_1BYTE_DATA(s), n);
        case PyUnicode_2BYTE_KIND: return scan(PyUnicode_2BYTE_DATA(s), n);
        default: return scan(PyUnicode_4BYTE_DATA(s), n);
    }
}

py::object extract_final_answer(py::handle text) {
    std::vector<std::uint32_t> out;
    const bool found = with_code_points(text, [&](const auto* s, std::size_t n) {
        return pytts::final_answer(s, n, pytts::kPythonText, out);
    });
    if (!found) return py::none();
    return py::reinterpret_steal<py::object>(
        PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out.data(), static_cast<Py_ssize_t>(out.size())));
}

py::object extract_number(py::handle text) {
    std::string out;
    const int found = with_code_points(text, [&](const auto* s, std::size_t n) {
        return pytts::number_answer(s, n, pytts::kPythonText, out);
    });
    if (found == pytts::kNoNumber) return py::none();
    if (found == pytts::kIntegerNumber) return py::str(out);
    // Rare: a decimal point. Python's float, int and repr say how it reads, as in the reference.
    py::object value = py::reinterpret_steal<py::object>(PyFloat_FromString(py::str(out).ptr()));
    if (!value) throw py::error_already_set();
    const double v = PyFloat_AS_DOUBLE(value.ptr());
    if (std::isfinite(v) && std::floor(v) == v)
        return py::str(py::reinterpret_steal<py::object>(PyLong_FromDouble(v)));
    return py::repr(value);
}

}  // namespace

void bind_simulate(py::module_& m);  // bind_simulate.cpp

PYBIND11_MODULE(_core, m) {
    m.doc() = "Compiled kernels of pytts (sampling, cost, voting, interning); same signatures as "
              "pytts._reference.";
    // The compiler flags setup.py chose (e.g. -march=native), for `pytts doctor`.
    m.attr("BUILD_FLAGS") = PYTTS_BUILD_FLAGS;
    m.def("graph_cost", &graph_cost, py::arg("model"), py::arg("role"), py::arg("edges"),
          py::arg("model_costs"), py::arg("base_prompt_tokens"),
          "(flops[B], latency[B]) of a batch of graphs.");
    m.def("feasible", &feasible, py::arg("model"), py::arg("role"), py::arg("edges"),
          py::arg("model_costs"), py::arg("base_prompt_tokens"), py::arg("budget"),
          "bool[B]: flops <= budget.");
    m.def("log_prob", &log_prob, py::arg("depth_logits"), py::arg("width_logits"),
          py::arg("model_logits"), py::arg("role_logits"), py::arg("edge_logits"),
          py::arg("model"), py::arg("role"), py::arg("edges"),
          "logp[B] of each graph (-inf outside the support).");
    m.def("grad_log_prob", &grad_log_prob, py::arg("depth_logits"), py::arg("width_logits"),
          py::arg("model_logits"), py::arg("role_logits"), py::arg("edge_logits"),
          py::arg("model"), py::arg("role"), py::arg("edges"), py::arg("weights"),
          "Weighted sum of the graphs' score functions, shaped like the logits.");
    m.def("sample_graphs", &sample_graphs, py::arg("depth_logits"), py::arg("width_logits"),
          py::arg("model_logits"), py::arg("role_logits"), py::arg("edge_logits"),
          py::arg("model_costs"), py::arg("base_prompt_tokens"), py::arg("n"), py::arg("seed"),
          py::arg("budget"), py::arg("max_draws"),
          "(model, role, edges, logp, n_drawn): up to n graphs, rejection-conditioned on "
          "flops <= budget.");
    // Local to this module, so that two builds of it can be loaded side by side (benchmarks).
    py::class_<Sampler>(m, "Sampler", py::module_local(),
                        "The sampling tables of one set of logits, built once; sample() draws.")
        .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle>(),
             py::arg("depth_logits"), py::arg("width_logits"), py::arg("model_logits"),
             py::arg("role_logits"), py::arg("edge_logits"))
        .def("sample", &Sampler::sample, py::arg("model_costs"), py::arg("base_prompt_tokens"),
             py::arg("n"), py::arg("seed"), py::arg("budget"), py::arg("max_draws"),
             "(model, role, edges, logp, n_drawn), as sample_graphs.");
    m.def("vote", &vote, py::arg("ids"), py::arg("weights") = py::none(),
          "(winner[Q], support[Q]) of a weighted vote per row; -1 ids are missing.");
    m.def("intern_answers", &intern_answers, py::arg("answers"),
          "int64 ids (FNV-1a 64 of the UTF-8, top bit cleared; None -> -1).");
    m.def("extract_final_answer", &extract_final_answer, py::arg("text"),
          "The X of the last \"The answer is X\" (letters upper-cased), else None.");
    m.def("extract_number", &extract_number, py::arg("text"),
          "The number after the last \"answer is\", else the last number, canonically; or None.");
    m.def("canonical_order", &canonical_order, py::arg("model"), py::arg("role"),
          py::arg("edges"),
          "int32[B, D, W]: each layer's slots in canonical order (then -1), equal for graphs "
          "that differ by slot permutations within layers.");
    bind_simulate(m);
    // Compile-time constants, exported so that a test can check them against pytts.constants.
    m.attr("MAX_DEPTH") = pytts::kMaxDepth;
    m.attr("MAX_WIDTH") = pytts::kMaxWidth;
    m.attr("MAX_MODELS") = kMaxModels;
    m.attr("MAX_ROLES") = kMaxRoles;
    auto unsigned_int = [](std::uint64_t v) {
        return py::reinterpret_steal<py::int_>(PyLong_FromUnsignedLongLong(v));
    };
    m.attr("FNV_OFFSET") = unsigned_int(pytts::kFnvOffset);
    m.attr("FNV_PRIME") = unsigned_int(pytts::kFnvPrime);
}
