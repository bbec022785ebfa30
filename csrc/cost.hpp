// FLOPs and critical-path latency of a batch of layered graphs; the feasibility mask.
//
// Plain arrays in, plain arrays out: the binding validates shapes and dtypes; value ranges are
// checked here, on the same read that uses the value as an index, so no input can make a kernel
// read out of bounds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace pytts {

// Template limits (checked by the binding): they size the kernels' per-graph scratch.
constexpr int kMaxDepth = 16;
constexpr int kMaxWidth = 64;

// The first offending value found by a kernel: which argument, its flat (C-order) index, and the
// value, so that the binding can name all three in the ValueError.
struct BadValue {
    const char* arg = nullptr;  // nullptr: no error
    std::int64_t flat = -1;
    double value = 0.0;

    explicit operator bool() const { return arg != nullptr; }
    void set(const char* a, std::int64_t f, double v) {
        if (!arg) { arg = a; flat = f; value = v; }
    }
};

// Per-model cost coefficients, laid out for the inner loops. The caller's table carries
// flops_per_token (FLOPs per parameter-token times parameters: the factor lives in
// pytts.constants, not here), so node flops are flops_per_token * (prompt + out) in every kernel
// and the sampler's incremental cost is bit-for-bit the one graph_cost returns.
struct ModelCosts {
    int K = 0;
    std::vector<double> flops_per_token, out_tokens, prefill_tps, decode_tps, overhead_s, decode_s;

    // model_costs is [K, 5]: flops_per_token, out_tokens, prefill_tps, decode_tps, overhead_s.
    BadValue load(const double* mc, int k) {
        BadValue bad;
        K = k;
        flops_per_token.resize(k);
        out_tokens.resize(k);
        prefill_tps.resize(k);
        decode_tps.resize(k);
        overhead_s.resize(k);
        decode_s.resize(k);
        for (int m = 0; m < k; ++m) {
            const double* row = mc + 5 * static_cast<std::int64_t>(m);
            for (int c = 0; c < 5; ++c) {
                const double v = row[c];
                const bool speed = (c == 2 || c == 3);
                const bool ok = std::isfinite(v) && (speed ? v > 0.0 : v >= 0.0);
                if (!ok) bad.set("model_costs", 5 * static_cast<std::int64_t>(m) + c, v);
            }
            flops_per_token[m] = row[0];
            out_tokens[m] = row[1];
            prefill_tps[m] = row[2];
            decode_tps[m] = row[3];
            overhead_s[m] = row[4];
            decode_s[m] = row[1] / row[3];
        }
        return bad;
    }

    // FLOPs of a node whose prompt is `prompt` tokens.
    double node_flops(int m, double prompt) const {
        return flops_per_token[m] * (prompt + out_tokens[m]);
    }
    // overhead + prompt / prefill + out / decode, evaluated left to right as everywhere else;
    // the last quotient depends on the model only and is computed once (the same value).
    double node_latency(int m, double prompt) const {
        return overhead_s[m] + prompt / prefill_tps[m] + decode_s[m];
    }
};

inline std::uint64_t bits_of(double v) {
    std::uint64_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
}
inline double double_of(std::uint64_t b) {
    double v;
    std::memcpy(&v, &b, sizeof v);
    return v;
}

// Reads graph b's models into `m` (D*W ints), checking -1 <= model < K on the read that is kept.
inline bool load_models(const std::int16_t* model, std::int64_t b, int D, int W, int K, int* m,
                        BadValue& bad) {
    const std::int64_t base = b * D * W;
    bool ok = true;
    for (int s = 0; s < D * W; ++s) {
        const int v = model[base + s];
        if (v < -1 || v >= K) {
            bad.set("model", base + s, v);
            ok = false;
            m[s] = -1;
        } else {
            m[s] = v;
        }
    }
    return ok;
}

// Checks that every edge byte of graph b is 0 or 1 (the common case costs one OR-reduction).
inline bool check_edges(const std::uint8_t* edges, std::int64_t b, std::int64_t per_graph,
                        BadValue& bad) {
    const std::uint8_t* e = edges + b * per_graph;
    unsigned acc = 0;
    for (std::int64_t k = 0; k < per_graph; ++k) acc |= e[k];
    if (acc <= 1) return true;
    for (std::int64_t k = 0; k < per_graph; ++k)
        if (e[k] > 1) { bad.set("edges", b * per_graph + k, e[k]); break; }
    return false;
}


// Evaluates graphs one at a time with scratch sized once per call (no per-graph allocation).
template <bool WithLatency>
class GraphCoster {
public:
    GraphCoster(const std::int16_t* model, const std::uint8_t* edges, int D, int W,
                const ModelCosts& mc, double base_prompt)
        : model_(model), edges_(edges), D_(D), W_(W), mc_(mc), base_(base_prompt),
          per_graph_(static_cast<std::int64_t>(D > 0 ? D - 1 : 0) * W * W),
          m_(static_cast<std::size_t>(D) * W), prompt_(W), maxfin_(W), fin_prev_(W),
          fin_cur_(W) {}

    // FLOPs (and latency) of graph b; false (with `bad` set) on an out-of-range value.
    bool eval(std::int64_t b, double& flops, double& latency, BadValue& bad) {
        const int D = D_, W = W_;
        // Models, checked on the read that is kept, and each layer's extent: one past its last
        // node (the width, for the prefix layouts the sampler produces). Loops below stop there.
        const std::int16_t* mb = model_ + b * D * W;
        std::int16_t* m = m_.data();
        // Copy and check in one branch-free (vectorisable) pass; locate the culprit only if any.
        const int K = mc_.K;
        int out_of_range = 0;
        for (int s = 0; s < D * W; ++s) {
            const std::int16_t v = mb[s];
            m[s] = v;
            out_of_range |= (v < -1) | (v >= K);
        }
        if (out_of_range) {
            for (int s = 0; s < D * W; ++s)
                if (m[s] < -1 || m[s] >= K) {
                    bad.set("model", b * D * W + s, m[s]);
                    break;
                }
            return false;
        }
        int hi[kMaxDepth];
        for (int l = 0; l < D; ++l) {
            int h = 0;
            for (int i = 0; i < W; ++i) h = m[l * W + i] >= 0 ? i + 1 : h;
            hi[l] = h;
        }
        if (!check_edges(edges_, b, per_graph_, bad)) return false;
        const std::uint8_t* eb = edges_ + b * per_graph_;
        double* prompt = prompt_.data();
        double* maxfin = maxfin_.data();
        double F = 0.0, L = 0.0;
        int h_prev = 0;
        for (int l = 0; l < D; ++l) {
            const int h = hi[l];
            if (h == 0) {
                h_prev = 0;
                continue;
            }
            const std::int16_t* ml = m + l * W;
            std::fill(prompt, prompt + h, base_);
            if (WithLatency) std::fill(maxfin, maxfin + h, 0.0);
            // Row-wise over sources keeps each target's prompt summed in source order (the order
            // every implementation uses) while the inner loop runs over contiguous bytes.
            // Selecting by mask instead of branching on the edge bytes keeps the loop free of
            // mispredictions; adding +0.0 for a missing edge leaves a sum unchanged.
            const std::int16_t* mp = ml - W;
            for (int i = 0; i < h_prev; ++i) {
                if (mp[i] < 0) continue;
                const std::uint8_t* row = eb + (static_cast<std::int64_t>(l - 1) * W + i) * W;
                const std::uint64_t o = bits_of(mc_.out_tokens[mp[i]]);
                const std::uint64_t f = WithLatency ? bits_of(fin_prev_[i]) : 0;
                for (int j = 0; j < h; ++j) {
                    const std::uint64_t take = 0 - static_cast<std::uint64_t>(row[j] != 0);
                    prompt[j] += double_of(o & take);
                    // Finish times are >= 0, so +0.0 is neutral for the max.
                    if (WithLatency) maxfin[j] = std::max(maxfin[j], double_of(f & take));
                }
            }
            for (int j = 0; j < h; ++j) {
                const int mj = ml[j];
                if (mj < 0) {
                    if (WithLatency) fin_cur_[j] = 0.0;
                    continue;
                }
                F += mc_.node_flops(mj, prompt[j]);
                if (WithLatency) {
                    fin_cur_[j] = mc_.node_latency(mj, prompt[j]) + maxfin[j];
                    L = std::max(L, fin_cur_[j]);
                }
            }
            if (WithLatency) std::swap(fin_prev_, fin_cur_);
            h_prev = h;
        }
        flops = F;
        latency = L;
        return true;
    }

private:
    const std::int16_t* model_;
    const std::uint8_t* edges_;
    int D_, W_;
    const ModelCosts& mc_;
    double base_;
    std::int64_t per_graph_;
    std::vector<std::int16_t> m_;
    std::vector<double> prompt_, maxfin_, fin_prev_, fin_cur_;
};

// flops[b] and latency[b] for b in [0, B). A node is a slot with model >= 0; an edge counts only
// when both its ends are nodes. Stops at the first bad value.
inline BadValue graph_cost(const std::int16_t* model, const std::uint8_t* edges, std::int64_t B,
                           int D, int W, const ModelCosts& mc, double base_prompt, double* flops,
                           double* latency) {
    BadValue bad;
    GraphCoster<true> coster(model, edges, D, W, mc, base_prompt);
    for (std::int64_t b = 0; b < B; ++b)
        if (!coster.eval(b, flops[b], latency[b], bad)) break;
    return bad;
}

// out[b] = flops(graph b) <= budget; latency is not computed.
inline BadValue feasible(const std::int16_t* model, const std::uint8_t* edges, std::int64_t B,
                         int D, int W, const ModelCosts& mc, double base_prompt, double budget,
                         bool* out) {
    BadValue bad;
    GraphCoster<false> coster(model, edges, D, W, mc, base_prompt);
    double F = 0.0, L = 0.0;
    for (std::int64_t b = 0; b < B; ++b) {
        if (!coster.eval(b, F, L, bad)) break;
        out[b] = F <= budget;
    }
    return bad;
}

}  // namespace pytts
