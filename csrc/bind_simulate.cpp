// Bindings of the simulator's latent-code kernel (simulate.hpp) into pytts._core: converts and
// validates the arrays, then runs the kernel with the GIL released. Every rejected argument
// raises ValueError naming it. Same signatures as pytts/sim/simulate_reference.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "simulate.hpp"

namespace py = pybind11;

namespace {

[[noreturn]] void reject(const std::string& msg) { throw py::value_error(msg); }

std::string dims(const py::array& a) {
    std::string out = "(";
    for (py::ssize_t k = 0; k < a.ndim(); ++k) out += (k ? ", " : "") + std::to_string(a.shape(k));
    return out + (a.ndim() == 1 ? ",)" : ")");
}

// `obj` as a C-contiguous array of exactly dtype T and rank `ndim` (no conversion).
template <class T>
py::array_t<T> arg(py::handle obj, const char* name, int ndim) {
    const std::string want = py::str(py::dtype::of<T>()).cast<std::string>();
    if (!py::isinstance<py::array>(obj))
        reject(std::string(name) + " must be a numpy.ndarray of dtype " + want);
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>()) &&
        !py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(),
                                                         py::dtype::of<T>().ptr()))
        reject(std::string(name) + " must have dtype " + want + ", got " +
               py::str(a.dtype()).cast<std::string>());
    if (a.ndim() != ndim)
        reject(std::string(name) + " must be " + std::to_string(ndim) + "-dimensional, got shape " +
               dims(a));
    if (!(a.flags() & py::array::c_style) ||
        !(py::detail::array_proxy(a.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        reject(std::string(name) + " must be C-contiguous and aligned (numpy.ascontiguousarray)");
    return py::reinterpret_borrow<py::array_t<T>>(a);
}

void expect(const py::array& a, const char* name, std::vector<py::ssize_t> shape,
            const char* symbols) {
    bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t k = 0; same && k < shape.size(); ++k) same = a.shape(k) == shape[k];
    if (!same)
        reject(std::string(name) + " must have shape " + symbols + ", got " + dims(a));
}

// Every value of a threshold array lies in [0, 2**bits] (the kernel runs them in 32-bit lanes).
void check_range(const py::array_t<std::int64_t>& a, const char* name, int bits) {
    const std::int64_t* v = a.data();
    const std::int64_t top = std::int64_t{1} << bits;
    for (py::ssize_t k = 0; k < a.size(); ++k)
        if (v[k] < 0 || v[k] > top)
            reject(std::string(name) + " (flat index " + std::to_string(k) + ") = " +
                   std::to_string(v[k]) + " is outside [0, 2**" + std::to_string(bits) +
                   "]: thresholds come from pytts.sim.latent.Thresholds");
}

std::uint64_t seed_of(py::handle obj) {
    try {
        return py::cast<std::uint64_t>(py::int_(py::reinterpret_borrow<py::object>(obj)));
    } catch (const py::error_already_set&) {
    } catch (const py::cast_error&) {
    }
    reject("seed must be an integer in [0, 2**64)");
}

// The graph arrays, their node keys and vote orders.
struct GraphArgs {
    py::array_t<std::int16_t> model;
    py::array_t<std::int8_t> role;
    py::array_t<std::uint8_t> edges;
    py::ssize_t B, D, W;
};

GraphArgs graphs(py::handle model, py::handle role, py::handle edges) {
    GraphArgs g;
    g.model = arg<std::int16_t>(model, "model", 3);
    g.B = g.model.shape(0);
    g.D = g.model.shape(1);
    g.W = g.model.shape(2);
    if (g.D < 1 || g.D > pytts::kMaxDepth || g.W < 1 || g.W > pytts::kMaxWidth)
        reject("model: the template D x W = " + dims(g.model) + " must have 1 <= D <= " +
               std::to_string(pytts::kMaxDepth) + " and 1 <= W <= " +
               std::to_string(pytts::kMaxWidth));
    g.role = arg<std::int8_t>(role, "role", 3);
    expect(g.role, "role", {g.B, g.D, g.W}, "(B, D, W)");
    g.edges = arg<std::uint8_t>(edges, "edges", 4);
    expect(g.edges, "edges", {g.B, g.D - 1, g.W, g.W}, "(B, D-1, W, W)");
    return g;
}

// Raises the ValueError for a value a kernel refused.
void raise_bad(const pytts::BadValue& bad) {
    const std::string arg = bad.arg;
    const std::string at = arg + " (flat index " + std::to_string(bad.flat) + ") = " +
                           std::to_string(static_cast<long long>(bad.value));
    if (arg == "model") reject(at + " is outside [-1, K) with K = fail.shape[0]");
    if (arg == "role") reject(at + ": role must be 0 (assistant) or 1 (fuser)");
    if (arg == "edges") reject(at + ": edges must be 0 or 1 and join active nodes");
    if (arg == "sinks") reject(at + ": sinks must name active nodes (flat l * W + i) or be -1");
    reject(at + " inputs: a fuser has more inputs than pick covers (max_inputs)");
}

py::array node_keys(py::handle model, py::handle role, py::handle edges) {
    GraphArgs g = graphs(model, role, edges);
    py::array_t<std::uint64_t> keys({g.B, g.D, g.W});
    pytts::BadValue bad;
    {
        std::uint64_t* out = keys.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::sim::node_keys(g.model.data(), g.role.data(), g.edges.data(), g.B,
                                    static_cast<int>(g.D), static_cast<int>(g.W), out);
    }
    if (bad) raise_bad(bad);
    return keys;
}

// Everything a simulation reads, validated, with the views the kernel takes.
struct SimArgs {
    GraphArgs g;
    py::array_t<std::uint64_t> keys, question_keys, samples;
    py::array_t<std::int16_t> sinks;
    py::array_t<std::int64_t> fail, right, pick, cuts, keep;
    pytts::sim::Batch batch;
    pytts::sim::Thresholds t;
    pytts::sim::Runs runs;
};

SimArgs sim_args(py::handle model, py::handle role, py::handle edges, py::handle keys,
                 py::handle sinks, py::handle fail, py::handle right, py::handle pick,
                 py::handle cuts, py::handle keep, py::handle question_keys, py::handle samples,
                 py::handle seed) {
    SimArgs a;
    a.g = graphs(model, role, edges);
    const py::ssize_t B = a.g.B, D = a.g.D, W = a.g.W;
    a.keys = arg<std::uint64_t>(keys, "keys", 3);
    expect(a.keys, "keys", {B, D, W}, "(B, D, W)");
    a.sinks = arg<std::int16_t>(sinks, "sinks", 2);
    expect(a.sinks, "sinks", {B, D * W}, "(B, D * W)");
    a.fail = arg<std::int64_t>(fail, "fail", 1);
    const py::ssize_t K = a.fail.shape(0);
    if (K < 1) reject("fail must hold one threshold per model (K >= 1)");
    a.question_keys = arg<std::uint64_t>(question_keys, "question_keys", 1);
    const py::ssize_t Q = a.question_keys.shape(0);
    a.right = arg<std::int64_t>(right, "right", 3);
    expect(a.right, "right", {K, Q, 4}, "(K, Q, 4)");
    a.pick = arg<std::int64_t>(pick, "pick", 3);
    const py::ssize_t P = a.pick.shape(2);
    py::ssize_t A = 0;
    while ((A + 1) * (A + 2) / 2 <= P) ++A;
    if (A < 1 || A * (A + 1) / 2 != P)
        reject("pick must have shape (K, Q, A (A + 1) / 2) for some A >= 1, got " +
               dims(a.pick));
    expect(a.pick, "pick", {K, Q, P}, "(K, Q, P)");
    a.cuts = arg<std::int64_t>(cuts, "cuts", 2);
    if (a.cuts.shape(1) < 1) reject("cuts must have at least one column (the distractors)");
    expect(a.cuts, "cuts", {Q, a.cuts.shape(1)}, "(Q, n_distractors)");
    a.keep = arg<std::int64_t>(keep, "keep", 1);
    expect(a.keep, "keep", {2}, "(2,)");
    check_range(a.fail, "fail", 24);
    check_range(a.right, "right", 24);
    check_range(a.pick, "pick", 24);
    check_range(a.cuts, "cuts", 16);
    check_range(a.keep, "keep", 16);
    a.samples = arg<std::uint64_t>(samples, "samples", 1);
    if (a.samples.shape(0) < 1) reject("samples must not be empty");
    a.batch = {a.g.model.data(), a.g.role.data(), a.g.edges.data(), a.keys.data(),
               a.sinks.data(), B, static_cast<int>(D), static_cast<int>(W)};
    a.t = {a.fail.data(), a.right.data(), a.pick.data(), a.cuts.data(), a.keep.data()[0],
           a.keep.data()[1], static_cast<int>(K), static_cast<int>(Q), static_cast<int>(P),
           static_cast<int>(a.cuts.shape(1)), static_cast<int>(A)};
    a.runs = {a.question_keys.data(), a.samples.data(), a.samples.shape(0), seed_of(seed)};
    return a;
}

py::tuple sim_runs(py::handle model, py::handle role, py::handle edges, py::handle keys,
                   py::handle sinks, py::handle fail, py::handle right, py::handle pick,
                   py::handle cuts, py::handle keep, py::handle question_keys,
                   py::handle samples, py::handle seed) {
    SimArgs a = sim_args(model, role, edges, keys, sinks, fail, right, pick, cuts, keep,
                         question_keys, samples, seed);
    const py::ssize_t Q = a.t.Q, S = a.runs.S;
    py::array_t<std::int16_t> codes({a.g.B, Q, S, a.g.D, a.g.W});
    py::array_t<std::int16_t> winner({a.g.B, Q, S});
    pytts::BadValue bad;
    {
        std::int16_t* c = codes.mutable_data();
        std::int16_t* w = winner.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::sim::simulate_runs(a.batch, a.t, a.runs, c, w);
    }
    if (bad) raise_bad(bad);
    return py::make_tuple(codes, winner);
}

py::tuple sim_expect(py::handle model, py::handle role, py::handle edges, py::handle keys,
                     py::handle sinks, py::handle fail, py::handle right, py::handle pick,
                     py::handle cuts, py::handle keep, py::handle question_keys,
                     py::handle samples, py::handle seed, bool lone_sink_mean) {
    SimArgs a = sim_args(model, role, edges, keys, sinks, fail, right, pick, cuts, keep,
                         question_keys, samples, seed);
    py::array_t<double> total({a.g.B, static_cast<py::ssize_t>(a.t.Q)});
    py::array_t<double> total_sq({a.g.B, static_cast<py::ssize_t>(a.t.Q)});
    pytts::BadValue bad;
    {
        double* s = total.mutable_data();
        double* s2 = total_sq.mutable_data();
        py::gil_scoped_release nogil;
        bad = pytts::sim::simulate_expect(a.batch, a.t, a.runs, lone_sink_mean, s, s2);
    }
    if (bad) raise_bad(bad);
    return py::make_tuple(total, total_sq);
}

}  // namespace

void bind_simulate(py::module_& m) {
    m.def("sim_node_keys", &node_keys, py::arg("model"), py::arg("role"), py::arg("edges"),
          "uint64[B, D, W]: the simulator's key of each node (0 in empty slots).");
    m.def("sim_runs", &sim_runs, py::arg("model"), py::arg("role"), py::arg("edges"),
          py::arg("keys"), py::arg("sinks"), py::arg("fail"), py::arg("right"), py::arg("pick"),
          py::arg("cuts"), py::arg("keep"), py::arg("question_keys"), py::arg("samples"),
          py::arg("seed"),
          "(codes int16[B, Q, S, D, W], winner int16[B, Q, S]) of simulated runs.");
    m.def("sim_expect", &sim_expect, py::arg("model"), py::arg("role"), py::arg("edges"),
          py::arg("keys"), py::arg("sinks"), py::arg("fail"), py::arg("right"), py::arg("pick"),
          py::arg("cuts"), py::arg("keep"), py::arg("question_keys"), py::arg("samples"),
          py::arg("seed"), py::arg("lone_sink_mean"),
          "(sum[B, Q], sumsq[B, Q]) over samples of each simulated run's score.");
}
