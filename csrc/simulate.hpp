// The simulator's latent-code kernel: a batch of graphs run on questions x samples directly on
// answer codes, by the latent model of pytts.sim.latent (whose NumPy twin,
// pytts/sim/simulate_reference.py, gives the same bits for the same arrays).
//
// Codes: -1 no answer, 0 right, 1..n distractors, kNoiseBase + l * kMaxWidth + i the fresh
// wrong answer written by node (l, i). Every draw is a pure function of (seed, question key,
// node key, sample): the counter-based hash of pytts/sim/draws.py, so graphs that share a node
// key share its draws. Probabilities arrive as integer thresholds; no floating point decides a
// code, so the twins agree bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "cost.hpp"  // kMaxDepth, kMaxWidth, BadValue

namespace pytts {
namespace sim {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr int kOutcomeShift = 64 - 24;  // the outcome field: the top 24 bits
constexpr int kKeepBits = 16;           // the keep field: the low 16 bits
constexpr std::uint64_t kWrongMask = 0xFFFF;  // the wrong field: 16 bits above the keep field
constexpr double kOutcomeUnit = 1.0 / 16777216.0;  // 2**-24
constexpr int kMissing = -1;
constexpr int kCorrect = 0;
constexpr int kNoiseBase = 9;  // pytts.sim.presets.MAX_DISTRACTORS + 1
constexpr int kAnswer = 0, kRefine = 1, kFuse = 2;
constexpr int kFirst = 0, kKeep = 1, kRefix = 2, kFusefix = 3;  // columns of `right`

// splitmix64's finalizer.
inline std::uint64_t mix64(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

inline std::uint64_t fold(std::uint64_t h, std::uint64_t v) { return mix64(h ^ mix64(v + kGolden)); }

// The model's thresholds (pytts.sim.latent.Thresholds), row-major.
struct Thresholds {
    const std::int64_t* fail;   // [K]
    const std::int64_t* right;  // [K, Q, 4]
    const std::int64_t* pick;   // [K, Q, P], P = A (A + 1) / 2
    const std::int64_t* cuts;   // [Q, C]
    std::int64_t stick, follow;
    int K, Q, P, C, A;
};

// A batch of graphs with their node keys and vote orders.
struct Batch {
    const std::int16_t* model;  // [B, D, W]
    const std::int8_t* role;    // [B, D, W]
    const std::uint8_t* edges;  // [B, D-1, W, W]
    const std::uint64_t* keys;  // [B, D, W]
    const std::int16_t* sinks;  // [B, D*W]: flat node indices in vote order, -1 = none
    std::int64_t B;
    int D, W;
};

// The runs to simulate: question keys [Q] and sample numbers [S].
struct Runs {
    const std::uint64_t* question_keys;
    const std::uint64_t* samples;
    std::int64_t S;
    std::uint64_t seed;
};

// key(l, i) = fold(fold(fold(fold(l, i), model), role), each predecessor's key in slot order).
inline BadValue node_keys(const std::int16_t* model, const std::int8_t* role,
                          const std::uint8_t* edges, std::int64_t B, int D, int W,
                          std::uint64_t* keys) {
    BadValue bad;
    const std::int64_t nodes = static_cast<std::int64_t>(D) * W;
    for (std::int64_t b = 0; b < B; ++b) {
        const std::int16_t* m = model + b * nodes;
        const std::int8_t* r = role + b * nodes;
        const std::uint8_t* e = edges + b * (D - 1) * static_cast<std::int64_t>(W) * W;
        std::uint64_t* k = keys + b * nodes;
        for (int l = 0; l < D; ++l)
            for (int i = 0; i < W; ++i) {
                const int n = l * W + i;
                std::uint64_t h = fold(fold(fold(static_cast<std::uint64_t>(l), i),
                                            static_cast<std::uint64_t>(
                                                static_cast<std::int64_t>(m[n]))),
                                       static_cast<std::uint64_t>(
                                           static_cast<std::int64_t>(r[n])));
                if (l > 0)
                    for (int p = 0; p < W; ++p) {
                        const std::int64_t at = (static_cast<std::int64_t>(l - 1) * W + p) * W + i;
                        if (e[at] > 1) bad.set("edges", b * (D - 1) * W * W + at, e[at]);
                        if (e[at]) h = fold(h, k[(l - 1) * W + p]);
                    }
                k[n] = m[n] >= 0 ? h : 0;
            }
    }
    return bad;
}

namespace detail {

// One graph as the kernel walks it: active nodes in layer order, each with its inputs.
struct Node {
    int flat, model, kind, fresh;
    int n_inputs;
    int inputs[kMaxWidth];  // positions in Plan::nodes
};

struct Plan {
    std::vector<Node> nodes;
    std::vector<int> sinks;  // positions in nodes, in vote order
};

// Reads graph b into `plan`, checking every value it will use as an index.
inline bool make_plan(const Batch& g, const Thresholds& t, std::int64_t b, Plan& plan,
                      BadValue& bad) {
    const std::int64_t nodes = static_cast<std::int64_t>(g.D) * g.W;
    const std::int16_t* m = g.model + b * nodes;
    const std::int8_t* r = g.role + b * nodes;
    const std::uint8_t* e = g.edges + b * (g.D - 1) * static_cast<std::int64_t>(g.W) * g.W;
    int position[kMaxDepth * kMaxWidth];
    plan.nodes.clear();
    plan.sinks.clear();
    for (int n = 0; n < nodes; ++n) {
        position[n] = -1;
        if (m[n] < -1 || m[n] >= t.K) {
            bad.set("model", b * nodes + n, m[n]);
            return false;
        }
        if (r[n] < 0 || r[n] > 1) {
            bad.set("role", b * nodes + n, r[n]);
            return false;
        }
        if (m[n] < 0) continue;
        const int l = n / g.W, i = n % g.W;
        Node node{n, m[n], kAnswer, kNoiseBase + l * kMaxWidth + i, 0, {}};
        if (l > 0)
            for (int p = 0; p < g.W; ++p) {
                const std::int64_t at = (static_cast<std::int64_t>(l - 1) * g.W + p) * g.W + i;
                if (e[at] > 1) {
                    bad.set("edges", b * (g.D - 1) * g.W * g.W + at, e[at]);
                    return false;
                }
                if (!e[at]) continue;
                const int from = position[(l - 1) * g.W + p];
                if (from < 0) {  // an edge from an empty slot
                    bad.set("edges", b * (g.D - 1) * g.W * g.W + at, e[at]);
                    return false;
                }
                node.inputs[node.n_inputs++] = from;
            }
        if (node.n_inputs > 0) node.kind = r[n] == 1 ? kFuse : kRefine;
        if (node.kind == kFuse && node.n_inputs > t.A) {
            bad.set("pick", b * nodes + n, node.n_inputs);
            return false;
        }
        position[n] = static_cast<int>(plan.nodes.size());
        plan.nodes.push_back(node);
    }
    for (int k = 0; k < nodes; ++k) {
        const int s = g.sinks[b * nodes + k];
        if (s < 0) continue;
        if (s >= nodes || position[s] < 0) {
            bad.set("sinks", b * nodes + k, s);
            return false;
        }
        plan.sinks.push_back(position[s]);
    }
    return true;
}

// The most common code among the counted ones (ties: the earliest), else kMissing.
template <class Counted>
inline int plurality(const int* codes, int n, Counted counted) {
    int best = kMissing, best_count = 0;
    for (int i = 0; i < n; ++i) {
        if (!counted(codes[i])) continue;
        int count = 0;
        for (int j = 0; j < n; ++j) count += codes[j] == codes[i];
        if (count > best_count) {
            best = codes[i];
            best_count = count;
        }
    }
    return best;
}

// The right-answer threshold of a node of model k on question q shown `inputs`, and the wrong
// answer it may keep or follow (kMissing: none) with that choice's threshold.
inline std::int64_t right_threshold(const Thresholds& t, const Node& node, int q,
                                    const int* inputs, int& fallback, std::int64_t& keep) {
    const std::int64_t* right = t.right + (static_cast<std::int64_t>(node.model) * t.Q + q) * 4;
    fallback = kMissing;
    keep = 0;
    if (node.kind == kAnswer) return right[kFirst];
    if (node.kind == kRefine) {
        const int x = plurality(inputs, node.n_inputs, [](int c) { return c != kMissing; });
        fallback = x > kCorrect ? x : kMissing;
        keep = t.stick;
        return x == kMissing ? right[kFirst] : x == kCorrect ? right[kKeep] : right[kRefix];
    }
    int answered = 0, n_right = 0;
    for (int j = 0; j < node.n_inputs; ++j) {
        answered += inputs[j] != kMissing;
        n_right += inputs[j] == kCorrect;
    }
    fallback = plurality(inputs, node.n_inputs, [](int c) { return c > kCorrect; });
    keep = t.follow;
    if (answered == 0) return right[kFirst];
    if (n_right == 0) return right[kFusefix];
    const std::int64_t col = static_cast<std::int64_t>(answered) * (answered - 1) / 2 + n_right - 1;
    return t.pick[(static_cast<std::int64_t>(node.model) * t.Q + q) * t.P + col];
}

// The code node draws from `bits` given its inputs' codes.
inline int node_code(const Thresholds& t, const Node& node, int q, const int* inputs,
                     std::uint64_t bits) {
    int fallback;
    std::int64_t keep;
    const std::int64_t t_right = right_threshold(t, node, q, inputs, fallback, keep);
    const std::int64_t outcome = static_cast<std::int64_t>(bits >> kOutcomeShift);
    if (outcome < t.fail[node.model]) return kMissing;
    if (outcome < t_right) return kCorrect;
    if (fallback != kMissing &&
        static_cast<std::int64_t>(bits & ((1u << kKeepBits) - 1)) < keep)
        return fallback;
    const std::int64_t w = static_cast<std::int64_t>((bits >> kKeepBits) & kWrongMask);
    const std::int64_t* cuts = t.cuts + static_cast<std::int64_t>(q) * t.C;
    int wrong = 0;
    for (int j = 0; j < t.C; ++j) wrong += w >= cuts[j];
    return wrong == 0 ? node.fresh : wrong;
}

// Draws the codes of plan.nodes[0 .. stop) for question q and every sample into
// codes[node * S + s].
inline void draw_codes(const Thresholds& t, const Plan& plan, std::size_t stop, int q,
                       const std::uint64_t* node_keys, std::uint64_t question_base,
                       const std::vector<std::uint64_t>& sample_mix, std::int64_t S,
                       std::vector<int>& codes) {
    int inputs[kMaxWidth];
    for (std::size_t n = 0; n < stop; ++n) {
        const Node& node = plan.nodes[n];
        const std::uint64_t base = fold(question_base, node_keys[node.flat]);
        int* out = codes.data() + n * S;
        for (std::int64_t s = 0; s < S; ++s) {
            for (int j = 0; j < node.n_inputs; ++j) inputs[j] = codes[node.inputs[j] * S + s];
            out[s] = node_code(t, node, q, inputs, mix64(base ^ sample_mix[s]));
        }
    }
}

inline int vote(const Plan& plan, const std::vector<int>& codes, std::int64_t S, std::int64_t s) {
    int sink_codes[kMaxDepth * kMaxWidth];
    const int n = static_cast<int>(plan.sinks.size());
    for (int k = 0; k < n; ++k) sink_codes[k] = codes[plan.sinks[k] * S + s];
    return plurality(sink_codes, n, [](int c) { return c != kMissing; });
}

inline std::vector<std::uint64_t> mix_samples(const Runs& runs) {
    std::vector<std::uint64_t> out(static_cast<std::size_t>(runs.S));
    for (std::int64_t s = 0; s < runs.S; ++s) out[s] = mix64(runs.samples[s] + kGolden);
    return out;
}

}  // namespace detail

// Every node's code, codes[B, Q, S, D, W] (kMissing in empty slots), and each run's voted code,
// winner[B, Q, S].
inline BadValue simulate_runs(const Batch& g, const Thresholds& t, const Runs& runs,
                              std::int16_t* codes_out, std::int16_t* winner) {
    BadValue bad;
    detail::Plan plan;
    std::vector<int> codes;
    const std::vector<std::uint64_t> sample_mix = detail::mix_samples(runs);
    const std::int64_t nodes = static_cast<std::int64_t>(g.D) * g.W, S = runs.S;
    for (std::int64_t b = 0; b < g.B; ++b) {
        if (!detail::make_plan(g, t, b, plan, bad)) return bad;
        codes.assign(plan.nodes.size() * S, kMissing);
        for (int q = 0; q < t.Q; ++q) {
            const std::uint64_t qbase = fold(runs.seed, runs.question_keys[q]);
            detail::draw_codes(t, plan, plan.nodes.size(), q, g.keys + b * nodes, qbase,
                               sample_mix, S, codes);
            for (std::int64_t s = 0; s < S; ++s) {
                const std::int64_t run = (b * t.Q + q) * S + s;
                std::int16_t* row = codes_out + run * nodes;
                for (std::int64_t n = 0; n < nodes; ++n) row[n] = kMissing;
                for (std::size_t n = 0; n < plan.nodes.size(); ++n)
                    row[plan.nodes[n].flat] = static_cast<std::int16_t>(codes[n * S + s]);
                winner[run] = static_cast<std::int16_t>(detail::vote(plan, codes, S, s));
            }
        }
    }
    return bad;
}

// Per graph and question, the sum and sum of squares over samples (in sample order) of each
// run's score: 1 for a right vote, 0 otherwise; with lone_sink_mean, a graph with one sink
// scores that sink's probability of answering right given its inputs' codes instead.
inline BadValue simulate_expect(const Batch& g, const Thresholds& t, const Runs& runs,
                                bool lone_sink_mean, double* total, double* total_sq) {
    BadValue bad;
    detail::Plan plan;
    std::vector<int> codes;
    const std::vector<std::uint64_t> sample_mix = detail::mix_samples(runs);
    const std::int64_t nodes = static_cast<std::int64_t>(g.D) * g.W, S = runs.S;
    int inputs[kMaxWidth];
    for (std::int64_t b = 0; b < g.B; ++b) {
        if (!detail::make_plan(g, t, b, plan, bad)) return bad;
        const bool lone = lone_sink_mean && plan.sinks.size() == 1;
        // A lone sink has no successor, so it is the last node: draw everything before it.
        const std::size_t stop = lone ? plan.nodes.size() - 1 : plan.nodes.size();
        codes.assign(plan.nodes.size() * S, kMissing);
        for (int q = 0; q < t.Q; ++q) {
            const std::uint64_t qbase = fold(runs.seed, runs.question_keys[q]);
            detail::draw_codes(t, plan, stop, q, g.keys + b * nodes, qbase, sample_mix, S, codes);
            double sum = 0.0, sum_sq = 0.0;
            if (lone) {
                const detail::Node& sink = plan.nodes.back();
                const std::int64_t fail = t.fail[sink.model];
                int fallback;
                std::int64_t keep;
                for (std::int64_t s = 0; s < S; ++s) {
                    for (int j = 0; j < sink.n_inputs; ++j)
                        inputs[j] = codes[sink.inputs[j] * S + s];
                    const double score =
                        static_cast<double>(detail::right_threshold(t, sink, q, inputs, fallback,
                                                                    keep) - fail) * kOutcomeUnit;
                    sum += score;
                    sum_sq += score * score;
                }
            } else {
                for (std::int64_t s = 0; s < S; ++s) {
                    const double score = detail::vote(plan, codes, S, s) == kCorrect ? 1.0 : 0.0;
                    sum += score;
                    sum_sq += score * score;
                }
            }
            total[b * t.Q + q] = sum;
            total_sq[b * t.Q + q] = sum_sq;
        }
    }
    return bad;
}

}  // namespace sim
}  // namespace pytts
