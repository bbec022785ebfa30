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
#include <cstring>
#include <vector>

#include "cost.hpp"  // kMaxDepth, kMaxWidth, BadValue

namespace pytts {
namespace sim {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr int kOutcomeShift = 64 - 24;  // the outcome field: the top 24 bits
constexpr int kKeepBits = 16;  // the keep field: the low 16 bits; the wrong field: the next 16
constexpr double kOutcomeUnit = 1.0 / 16777216.0;  // 2**-24
constexpr int kMissing = -1;
constexpr int kCorrect = 0;
constexpr int kNoiseBase = 9;  // pytts.sim.presets.MAX_DISTRACTORS + 1
constexpr int kAnswer = 0, kRefine = 1, kFuse = 2;
constexpr std::uint64_t kCallDomain = 0x63616C6CULL;  // "call": the first word of a node key
constexpr int kFirst = 0, kKeep = 1, kRefix = 2, kFusefix = 3;  // columns of `right`

// splitmix64's finalizer.
inline std::uint64_t mix64(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

inline std::uint64_t fold(std::uint64_t h, std::uint64_t v) {
    return mix64(h ^ mix64(v + kGolden));
}

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

// A node's key is the identity of its call, as the text path's bank sees one: its model, its
// role, each predecessor's key in slot order, then how many earlier slots of its layer make the
// same call (the text path's occurrence number). Position plays no part, so a permuted graph
// (equal canonical key) draws exactly what the original draws, and two graphs that make the
// same call share its draws wherever they put it.
inline BadValue node_keys(const std::int16_t* model, const std::int8_t* role,
                          const std::uint8_t* edges, std::int64_t B, int D, int W,
                          std::uint64_t* keys) {
    BadValue bad;
    const std::int64_t nodes = static_cast<std::int64_t>(D) * W;
    std::uint64_t call[kMaxWidth];
    for (std::int64_t b = 0; b < B; ++b) {
        const std::int16_t* m = model + b * nodes;
        const std::int8_t* r = role + b * nodes;
        const std::uint8_t* e = edges + b * (D - 1) * static_cast<std::int64_t>(W) * W;
        std::uint64_t* k = keys + b * nodes;
        for (int l = 0; l < D; ++l)
            for (int i = 0; i < W; ++i) {
                const int n = l * W + i;
                std::uint64_t h = fold(fold(kCallDomain, static_cast<std::uint64_t>(
                                                             static_cast<std::int64_t>(m[n]))),
                                       static_cast<std::uint64_t>(
                                           static_cast<std::int64_t>(r[n])));
                if (l > 0)
                    for (int p = 0; p < W; ++p) {
                        const std::int64_t at = (static_cast<std::int64_t>(l - 1) * W + p) * W + i;
                        if (e[at] > 1) bad.set("edges", b * (D - 1) * W * W + at, e[at]);
                        if (e[at]) h = fold(h, k[(l - 1) * W + p]);
                    }
                call[i] = h;
                std::uint64_t occurrence = 0;
                for (int j = 0; j < i; ++j)
                    occurrence += (m[l * W + j] >= 0 && call[j] == h) ? 1 : 0;
                k[n] = m[n] >= 0 ? fold(h, occurrence) : 0;
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
    // Whether a consumer reads which code the node wrote, not only its class (missing, right or
    // wrong): see mark_exact.
    bool exact;
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
        Node node{n, m[n], kAnswer, kNoiseBase + l * kMaxWidth + i, 0, {}, true};
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

// Marks the nodes whose exact codes the result depends on. A fuser's right-answer threshold
// reads only how many inputs answered and how many are right, and a one-input refiner's only
// whether its input is missing, right or wrong; their fallback (the wrong answer they keep)
// reads exact codes, but whether they answer wrong does not depend on which wrong answer they
// give. So when a lone sink is scored by its threshold (never drawn), the nodes that feed only
// counts need their class alone, which a draw decides from its outcome field without the
// distractor and keep fields. Every other mode reads every code.
inline void mark_exact(Plan& plan, bool lone_sink) {
    for (Node& node : plan.nodes) node.exact = !lone_sink;
    if (!lone_sink) return;
    for (std::size_t n = plan.nodes.size(); n-- > 0;) {
        const Node& node = plan.nodes[n];
        const bool drawn = n + 1 < plan.nodes.size();  // the lone sink is the last node
        const bool fallback = drawn && node.exact && node.kind != kAnswer;
        const bool vote = node.kind == kRefine && node.n_inputs > 1;  // a plurality of codes
        if (fallback || vote)
            for (int j = 0; j < node.n_inputs; ++j) plan.nodes[node.inputs[j]].exact = true;
    }
}

// The engine works on blocks of samples, one elementwise pass at a time over plain arrays, so
// that the compiler vectorizes every pass; it is compiled for AVX-512, AVX2 and baseline x86-64
// and the loader picks the best the CPU runs (all integer arithmetic: every clone gives the same
// bits). Scores are summed as integers in units of 2**-24, so their order does not matter.
constexpr int kBlock = 512;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define PYTTS_SIM_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define PYTTS_SIM_CLONES
#endif

#define PYTTS_RESTRICT __restrict__
// The passes are inlined into the cloned entry points, so that each clone vectorizes them all.
#define PYTTS_SIM_PASS inline __attribute__((always_inline))

// A run's draws and thresholds fit 32-bit lanes (twice as many per vector as 64-bit ones):
// thresholds are at most 2**24 (the binding checks), the outcome field is 24 bits, and the
// wrong and keep fields are the low 32 bits.
struct Scratch {
    std::vector<std::int32_t> codes;  // [node][kBlock]
    std::int32_t outcome[kBlock];
    std::uint32_t low[kBlock];
    std::int32_t threshold[kBlock];
    std::int32_t fallback[kBlock], x[kBlock], count[kBlock], best_count[kBlock];
    std::int32_t index[kBlock];  // a fuser's (answered, right) pair, as a row of `table`
    std::int32_t table[(kMaxWidth + 1) * (kMaxWidth + 1)] = {};  // a fuser's thresholds
};

// best[i] = the most common of in[0..k)[i] among counted codes (ties: the earliest), else
// kMissing; counted(c) is c != kMissing (wrong_only = false) or c > kCorrect (true).
PYTTS_SIM_PASS void plurality(const std::int32_t* const* in, int k, bool wrong_only, int m,
                              std::int32_t* PYTTS_RESTRICT best, Scratch& w) {
    std::int32_t* PYTTS_RESTRICT count = w.count;
    std::int32_t* PYTTS_RESTRICT best_count = w.best_count;
    const std::int32_t floor = wrong_only ? kCorrect : kMissing;
    for (int i = 0; i < m; ++i) {
        best[i] = kMissing;
        best_count[i] = 0;
    }
    // Counting only the occurrences at or after a gives each code's full count at its first
    // occurrence and less at later ones, which then never win: the same winner, half the work.
    for (int a = 0; a < k; ++a) {
        const std::int32_t* PYTTS_RESTRICT ca = in[a];
        for (int i = 0; i < m; ++i) count[i] = 0;
        for (int b = a; b < k; ++b) {
            const std::int32_t* PYTTS_RESTRICT cb = in[b];
            for (int i = 0; i < m; ++i) count[i] += cb[i] == ca[i];
        }
        for (int i = 0; i < m; ++i) {
            const bool better = (ca[i] > floor) & (count[i] > best_count[i]);
            best[i] = better ? ca[i] : best[i];
            best_count[i] = better ? count[i] : best_count[i];
        }
    }
}

// out[i] = table[index[i]]. GCC's cost model rarely emits gathers, so tables of up to 32
// entries are held in two vectors and permuted (one instruction on AVX-512, lowered per clone).
PYTTS_SIM_PASS void lookup(const std::int32_t* table, int size, const std::int32_t* index, int m,
                           std::int32_t* PYTTS_RESTRICT out) {
    int i = 0;
#if defined(__GNUC__) && !defined(__clang__)  // clang's shuffle builtin takes constant masks only
    if (size <= 32) {
        using v16 = std::int32_t __attribute__((vector_size(64)));
        v16 lo, hi;
        std::memcpy(&lo, table, sizeof lo);
        std::memcpy(&hi, table + 16, sizeof hi);
        for (; i + 16 <= m; i += 16) {
            v16 at;
            std::memcpy(&at, index + i, sizeof at);
            const v16 got = __builtin_shuffle(lo, hi, at);
            std::memcpy(out + i, &got, sizeof got);
        }
    }
#endif
    for (; i < m; ++i) out[i] = table[index[i]];
}

// threshold[i]: the node's right-answer threshold for each sample given its inputs' codes;
// fallback[i]: the wrong answer it keeps or follows with probability keep (kMissing: none),
// which a fuser works out only when its exact code is needed (Node::exact).
PYTTS_SIM_PASS std::int32_t thresholds(const Thresholds& t, const Node& node, int q,
                                       const std::int32_t* const* in, int m, Scratch& w) {
    const std::int64_t* right = t.right + (static_cast<std::int64_t>(node.model) * t.Q + q) * 4;
    std::int32_t* PYTTS_RESTRICT th = w.threshold;
    std::int32_t* PYTTS_RESTRICT fb = w.fallback;
    if (node.kind == kAnswer) {
        const std::int32_t r0 = static_cast<std::int32_t>(right[kFirst]);
        for (int i = 0; i < m; ++i) {
            th[i] = r0;
            fb[i] = kMissing;
        }
        return 0;
    }
    if (node.kind == kRefine) {
        // Several attempts: the refiner checks the one most of them agree on.
        const std::int32_t* PYTTS_RESTRICT x = in[0];
        if (node.n_inputs > 1) {
            plurality(in, node.n_inputs, false, m, w.x, w);
            x = w.x;
        }
        const std::int32_t r0 = static_cast<std::int32_t>(right[kFirst]);
        const std::int32_t r1 = static_cast<std::int32_t>(right[kKeep]);
        const std::int32_t r2 = static_cast<std::int32_t>(right[kRefix]);
        for (int i = 0; i < m; ++i) {
            th[i] = x[i] == kMissing ? r0 : x[i] == kCorrect ? r1 : r2;
            fb[i] = x[i] > kCorrect ? x[i] : kMissing;
        }
        return static_cast<std::int32_t>(t.stick);
    }
    // The threshold is a function of (answered, right): a table indexed by answered * (n + 1)
    // + right, so that one gather looks it up.
    const int n = node.n_inputs;
    std::int32_t* PYTTS_RESTRICT index = w.index;
    const std::int32_t* PYTTS_RESTRICT c0 = in[0];
    for (int i = 0; i < m; ++i) index[i] = (c0[i] != kMissing) * (n + 1) + (c0[i] == kCorrect);
    for (int j = 1; j < n; ++j) {
        const std::int32_t* PYTTS_RESTRICT c = in[j];
        for (int i = 0; i < m; ++i) index[i] += (c[i] != kMissing) * (n + 1) + (c[i] == kCorrect);
    }
    const std::int64_t* pick = t.pick + (static_cast<std::int64_t>(node.model) * t.Q + q) * t.P;
    std::int32_t* PYTTS_RESTRICT table = w.table;
    for (int a = 0; a <= n; ++a)
        for (int r = 0; r <= a; ++r)
            table[a * (n + 1) + r] = static_cast<std::int32_t>(
                a == 0 ? right[kFirst] : r == 0 ? right[kFusefix] : pick[a * (a - 1) / 2 + r - 1]);
    lookup(table, (n + 1) * (n + 1), index, m, th);
    if (node.exact) plurality(in, node.n_inputs, true, m, fb, w);
    return static_cast<std::int32_t>(t.follow);
}

// out[i]: the code each sample draws from bits[i] (threshold and fallback from `thresholds`).
// C > 0 is the number of distractors (an unrolled loop), C = 0 reads it from t.
template <int C>
PYTTS_SIM_PASS void draw(const Thresholds& t, const Node& node, int q, std::int32_t keep, int m,
                         Scratch& w, std::int32_t* PYTTS_RESTRICT out) {
    const std::int64_t* row = t.cuts + static_cast<std::int64_t>(q) * t.C;
    const int n_cuts = C > 0 ? C : t.C;
    std::int32_t cut[C > 0 ? C : 1];
    for (int j = 0; j < (C > 0 ? C : 0); ++j) cut[j] = static_cast<std::int32_t>(row[j]);
    const std::int32_t fail = static_cast<std::int32_t>(t.fail[node.model]);
    const std::int32_t fresh = node.fresh;
    const std::int32_t* PYTTS_RESTRICT outcomes = w.outcome;
    const std::uint32_t* PYTTS_RESTRICT low = w.low;
    const std::int32_t* PYTTS_RESTRICT th = w.threshold;
    const std::int32_t* PYTTS_RESTRICT fb = w.fallback;
    for (int i = 0; i < m; ++i) {
        const std::int32_t outcome = outcomes[i];
        const std::int32_t wf = static_cast<std::int32_t>(low[i] >> kKeepBits);
        const std::int32_t kf = static_cast<std::int32_t>(low[i] & ((1u << kKeepBits) - 1));
        std::int32_t wrong = 0;
        for (int j = 0; j < n_cuts; ++j)
            wrong += wf >= (C > 0 ? cut[j] : static_cast<std::int32_t>(row[j]));
        std::int32_t code = wrong == 0 ? fresh : wrong;
        code = ((fb[i] != kMissing) & (kf < keep)) ? fb[i] : code;
        code = outcome < th[i] ? kCorrect : code;
        out[i] = outcome < fail ? kMissing : code;
    }
}

// A draw's outcome field: mix64's top 24 bits. mix64 ends with x ^ (x >> 31), whose top 33
// bits are x's, so the field skips that last step.
inline std::int32_t outcome_of(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return static_cast<std::int32_t>(x >> kOutcomeShift);
}

// out[i]: the class of each sample's code (kMissing, kCorrect, or 1 for any wrong answer),
// hashing and drawing in one pass: only the outcome field decides it. First answers have one
// threshold; other nodes read theirs from Scratch::threshold.
PYTTS_SIM_PASS void draw_classes(const Thresholds& t, const Node& node, int q, std::uint64_t base,
                                 const std::uint64_t* PYTTS_RESTRICT sample_mix, int m,
                                 const Scratch& w, std::int32_t* PYTTS_RESTRICT out) {
    const std::int32_t fail = static_cast<std::int32_t>(t.fail[node.model]);
    if (node.kind == kAnswer) {
        const auto th = static_cast<std::int32_t>(
            t.right[(static_cast<std::int64_t>(node.model) * t.Q + q) * 4 + kFirst]);
        for (int i = 0; i < m; ++i) {
            const std::int32_t outcome = outcome_of(base ^ sample_mix[i]);
            out[i] = outcome < fail ? kMissing : outcome < th ? kCorrect : 1;
        }
        return;
    }
    const std::int32_t* PYTTS_RESTRICT th = w.threshold;
    for (int i = 0; i < m; ++i) {
        const std::int32_t outcome = outcome_of(base ^ sample_mix[i]);
        out[i] = outcome < fail ? kMissing : outcome < th[i] ? kCorrect : 1;
    }
}

PYTTS_SIM_PASS void draw_codes(const Thresholds& t, const Node& node, int q, std::int32_t keep,
                               int m, Scratch& w, std::int32_t* out) {
    switch (t.C) {  // the distractor count fixes the inner loop, so it unrolls
        case 1: draw<1>(t, node, q, keep, m, w, out); break;
        case 2: draw<2>(t, node, q, keep, m, w, out); break;
        case 3: draw<3>(t, node, q, keep, m, w, out); break;
        case 4: draw<4>(t, node, q, keep, m, w, out); break;
        default: draw<0>(t, node, q, keep, m, w, out); break;
    }
}

// The codes of plan.nodes[0 .. stop) for question q and samples s0 .. s0 + m.
PYTTS_SIM_PASS void run_block(const Thresholds& t, const Plan& plan, std::size_t stop, int q,
                              const std::uint64_t* node_base, const std::uint64_t* sample_mix,
                              int m, Scratch& w) {
    const std::int32_t* in[kMaxWidth];
    for (std::size_t n = 0; n < stop; ++n) {
        const Node& node = plan.nodes[n];
        const std::uint64_t base = node_base[n];
        for (int j = 0; j < node.n_inputs; ++j) in[j] = w.codes.data() + node.inputs[j] * kBlock;
        if (!node.exact) {
            if (node.kind != kAnswer) thresholds(t, node, q, in, m, w);
            draw_classes(t, node, q, base, sample_mix, m, w, w.codes.data() + n * kBlock);
            continue;
        }
        std::int32_t* PYTTS_RESTRICT outcome = w.outcome;
        std::uint32_t* PYTTS_RESTRICT low = w.low;
        for (int i = 0; i < m; ++i) {
            const std::uint64_t bits = mix64(base ^ sample_mix[i]);
            outcome[i] = static_cast<std::int32_t>(bits >> kOutcomeShift);
            low[i] = static_cast<std::uint32_t>(bits);
        }
        const std::int32_t keep = thresholds(t, node, q, in, m, w);
        draw_codes(t, node, q, keep, m, w, w.codes.data() + n * kBlock);
    }
}

// winner[i]: the vote over the sinks' codes (ties: the first sink in vote order).
PYTTS_SIM_PASS void vote(const Plan& plan, int m, Scratch& w, std::int32_t* winner) {
    const std::int32_t* in[kMaxDepth * kMaxWidth];
    const int k = static_cast<int>(plan.sinks.size());
    for (int j = 0; j < k; ++j) in[j] = w.codes.data() + plan.sinks[j] * kBlock;
    plurality(in, k, false, m, winner, w);
}

// Score units (2**-24) of a block summed into total, their squares into total_sq.
PYTTS_SIM_CLONES
inline void score_question(const Thresholds& t, const Plan& plan, bool lone, int q,
                           const std::uint64_t* node_base, const std::uint64_t* sample_mix,
                           std::int64_t S, Scratch& w, std::int64_t& total,
                           unsigned __int128& total_sq) {
    const std::int64_t unit = std::int64_t{1} << (64 - kOutcomeShift);
    std::int32_t winner[kBlock];
    for (std::int64_t s0 = 0; s0 < S; s0 += kBlock) {
        const int m = static_cast<int>(S - s0 < kBlock ? S - s0 : kBlock);
        std::int64_t sum = 0, hi2 = 0, hilo = 0, lo2 = 0;
        auto add = [&](std::int64_t v) {  // v < 2**25: squares split to stay in 64 bits
            const std::int64_t hi = v >> 12, lo = v & 0xFFF;
            sum += v;
            hi2 += hi * hi;
            hilo += hi * lo;
            lo2 += lo * lo;
        };
        if (lone) {
            // A lone sink has no successor, so it is the last node: draw everything before it.
            const Node& sink = plan.nodes.back();
            run_block(t, plan, plan.nodes.size() - 1, q, node_base, sample_mix + s0, m, w);
            const std::int32_t* in[kMaxWidth];
            for (int j = 0; j < sink.n_inputs; ++j)
                in[j] = w.codes.data() + sink.inputs[j] * kBlock;
            thresholds(t, sink, q, in, m, w);
            const std::int64_t fail = t.fail[sink.model];
            for (int i = 0; i < m; ++i) add(w.threshold[i] - fail);
        } else {
            run_block(t, plan, plan.nodes.size(), q, node_base, sample_mix + s0, m, w);
            vote(plan, m, w, winner);
            for (int i = 0; i < m; ++i) add(winner[i] == kCorrect ? unit : 0);
        }
        total += sum;
        using u128 = unsigned __int128;
        total_sq += (static_cast<u128>(hi2) << 24) + (static_cast<u128>(hilo) << 13) +
                    static_cast<u128>(lo2);
    }
}

PYTTS_SIM_CLONES
inline void runs_question(const Thresholds& t, const Plan& plan, int q,
                          const std::uint64_t* node_base, const std::uint64_t* sample_mix,
                          std::int64_t S, std::int64_t nodes, Scratch& w,
                          std::int16_t* codes_out, std::int16_t* winner_out) {
    std::int32_t winner[kBlock];
    for (std::int64_t s0 = 0; s0 < S; s0 += kBlock) {
        const int m = static_cast<int>(S - s0 < kBlock ? S - s0 : kBlock);
        run_block(t, plan, plan.nodes.size(), q, node_base, sample_mix + s0, m, w);
        vote(plan, m, w, winner);
        for (int i = 0; i < m; ++i) {
            std::int16_t* row = codes_out + (s0 + i) * nodes;
            for (std::int64_t n = 0; n < nodes; ++n) row[n] = kMissing;
            for (std::size_t n = 0; n < plan.nodes.size(); ++n)
                row[plan.nodes[n].flat] = static_cast<std::int16_t>(w.codes[n * kBlock + i]);
            winner_out[s0 + i] = static_cast<std::int16_t>(winner[i]);
        }
    }
}

inline std::vector<std::uint64_t> mix_samples(const Runs& runs) {
    std::vector<std::uint64_t> out(static_cast<std::size_t>(runs.S));
    for (std::int64_t s = 0; s < runs.S; ++s) out[s] = mix64(runs.samples[s] + kGolden);
    return out;
}

// Each node's draws for question q start from fold(fold(seed, question key), node key).
inline void node_bases(const Plan& plan, const Batch& g, std::int64_t b, const Runs& runs, int q,
                       std::vector<std::uint64_t>& out) {
    const std::uint64_t qbase = fold(runs.seed, runs.question_keys[q]);
    const std::uint64_t* keys = g.keys + b * static_cast<std::int64_t>(g.D) * g.W;
    out.resize(plan.nodes.size());
    for (std::size_t n = 0; n < plan.nodes.size(); ++n)
        out[n] = fold(qbase, keys[plan.nodes[n].flat]);
}

}  // namespace detail

// Every node's code, codes[B, Q, S, D, W] (kMissing in empty slots), and each run's voted code,
// winner[B, Q, S].
inline BadValue simulate_runs(const Batch& g, const Thresholds& t, const Runs& runs,
                              std::int16_t* codes_out, std::int16_t* winner) {
    BadValue bad;
    detail::Plan plan;
    detail::Scratch w;
    std::vector<std::uint64_t> base;
    const std::vector<std::uint64_t> sample_mix = detail::mix_samples(runs);
    const std::int64_t nodes = static_cast<std::int64_t>(g.D) * g.W, S = runs.S;
    for (std::int64_t b = 0; b < g.B; ++b) {
        if (!detail::make_plan(g, t, b, plan, bad)) return bad;
        w.codes.assign(plan.nodes.size() * detail::kBlock, kMissing);
        for (int q = 0; q < t.Q; ++q) {
            detail::node_bases(plan, g, b, runs, q, base);
            const std::int64_t run = (b * t.Q + q) * S;
            detail::runs_question(t, plan, q, base.data(), sample_mix.data(), S, nodes, w,
                                  codes_out + run * nodes, winner + run);
        }
    }
    return bad;
}

// Per graph and question, the sum and sum of squares over samples of each run's score: 1 for a
// right vote, 0 otherwise; with lone_sink_mean, a graph with one sink scores that sink's
// probability of answering right given its inputs' codes instead. Scores are multiples of
// 2**-24 summed exactly; the squares' exact sum is rounded once to a double.
inline BadValue simulate_expect(const Batch& g, const Thresholds& t, const Runs& runs,
                                bool lone_sink_mean, double* total, double* total_sq) {
    BadValue bad;
    detail::Plan plan;
    detail::Scratch w;
    std::vector<std::uint64_t> base;
    const std::vector<std::uint64_t> sample_mix = detail::mix_samples(runs);
    for (std::int64_t b = 0; b < g.B; ++b) {
        if (!detail::make_plan(g, t, b, plan, bad)) return bad;
        const bool lone = lone_sink_mean && plan.sinks.size() == 1;
        detail::mark_exact(plan, lone);
        w.codes.assign(plan.nodes.size() * detail::kBlock, kMissing);
        for (int q = 0; q < t.Q; ++q) {
            detail::node_bases(plan, g, b, runs, q, base);
            std::int64_t sum = 0;
            unsigned __int128 sum_sq = 0;
            detail::score_question(t, plan, lone, q, base.data(), sample_mix.data(), runs.S, w,
                                   sum, sum_sq);
            total[b * t.Q + q] = static_cast<double>(sum) * kOutcomeUnit;
            total_sq[b * t.Q + q] = static_cast<double>(sum_sq) * (kOutcomeUnit * kOutcomeUnit);
        }
    }
    return bad;
}

}  // namespace sim
}  // namespace pytts
