// Arbiter's fused kernels for the decoder on CUDA (built to PTX by build.rs with the `cuda`
// feature). Each replaces a chain of small candle ops that would each launch a kernel and
// round-trip memory: see mod.rs beside this file for where they are used and why.
//
// Every kernel comes in float and bf16; arithmetic is in float either way.
#include <cuda_bf16.h>
#include <stdint.h>
#include <type_traits>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// E consecutive elements (E = 2 or 4, aligned to their size) as floats, in one access.
template <typename T, int E>
__device__ __forceinline__ void load_e(const T* p, float* o) {
    if constexpr (std::is_same<T, float>::value) {
        if constexpr (E == 4) {
            const float4 v = *reinterpret_cast<const float4*>(p);
            o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
        } else {
            const float2 v = *reinterpret_cast<const float2*>(p);
            o[0] = v.x, o[1] = v.y;
        }
    } else {
        if constexpr (E == 4) {
            const uint2 raw = *reinterpret_cast<const uint2*>(p);
            const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
            const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
            o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
        } else {
            const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
            o[0] = a.x, o[1] = a.y;
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Two consecutive elements of T written from floats, in one access.
template <typename T>
__device__ __forceinline__ void store2(T* p, float x, float y) {
    if constexpr (std::is_same<T, float>::value) {
        *reinterpret_cast<float2*>(p) = make_float2(x, y);
    } else {
        *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
    }
}

// One thread's share of a q/k/v row: two adjacent elements of each half of head h at i, bias
// added, rotated for position `pos` (rotate-half, as Qwen2 and transformers do) unless the head
// is a value head, written to `dst` (the head's d elements).
template <typename T, typename TIn>
__device__ __forceinline__ void qkv_pair(const TIn* row, const T* bias, const T* cos, const T* sin,
                                         int h, int i, int d, bool rotate, int pos, T* dst) {
    const int half = d / 2;
    float x1[2], x2[2];
    load_e<TIn, 2>(row + (size_t)h * d + i, x1);
    load_e<TIn, 2>(row + (size_t)h * d + i + half, x2);
    if (bias) {
        float b1[2], b2[2];
        load_e<T, 2>(bias + (size_t)h * d + i, b1);
        load_e<T, 2>(bias + (size_t)h * d + i + half, b2);
#pragma unroll
        for (int e = 0; e < 2; e++) x1[e] += b1[e], x2[e] += b2[e];
    }
    if (rotate) {
        float c[2], sn[2];
        load_e<T, 2>(cos + (size_t)pos * half + i, c);
        load_e<T, 2>(sin + (size_t)pos * half + i, sn);
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const float r1 = x1[e] * c[e] - x2[e] * sn[e];
            const float r2 = x2[e] * c[e] + x1[e] * sn[e];
            x1[e] = r1;
            x2[e] = r2;
        }
    }
    store2<T>(dst + i, x1[0], x1[1]);
    store2<T>(dst + i + half, x2[0], x2[1]);
}

// The merged q/k/v projection's output, bias added, RoPE applied to q and k, q written as
// [heads, seq, d] and k, v written into the layer's cache [kv_heads, cap, d] at positions
// start..start+seq. Each thread takes two adjacent elements of each half of a head (d a
// multiple of 4). With `len_dev` (a replayed CUDA graph), start is read there instead: the
// positions held after this step, less seq. The product may come in f32 (TIn) for a bf16
// model, so that the bias is added before the one rounding. grid seq, block 256 threads.
template <typename T, typename TIn = T>
__device__ void qkv_rope(const TIn* qkv, const T* bias, const T* cos, const T* sin, T* q_out,
                         T* k_cache, T* v_cache, int seq, int heads, int kv_heads, int d, int cap,
                         int start, const int* len_dev) {
    if (len_dev) start = *len_dev - seq;
    const int t = blockIdx.x, pairs = d / 4;
    const int nh = heads + 2 * kv_heads;
    const TIn* row = qkv + (size_t)t * nh * d;
    const int pos = start + t;
    for (int w = threadIdx.x; w < nh * pairs; w += blockDim.x) {
        const int h = w / pairs, i = (w % pairs) * 2;
        T* dst;
        if (h < heads) {
            dst = q_out + ((size_t)h * seq + t) * d;
        } else if (h < heads + kv_heads) {
            dst = k_cache + ((size_t)(h - heads) * cap + pos) * d;
        } else {
            dst = v_cache + ((size_t)(h - heads - kv_heads) * cap + pos) * d;
        }
        qkv_pair<T, TIn>(row, bias, cos, sin, h, i, d, h < heads + kv_heads, pos, dst);
    }
}

// The same for a batched step over a paged pool: token t of the step sits at position
// positions[t] of its own sequence and owns pool slot slots[t]; q is written as [tokens,
// heads, d] (the decode attention's rows), k and v into the pools [slots, kv_heads, d].
// grid tokens, block 256 threads.
template <typename T, typename TIn = T>
__device__ void qkv_rope_paged(const TIn* qkv, const T* bias, const T* cos, const T* sin,
                               const uint32_t* positions, const uint32_t* slots, T* q_out,
                               T* k_pool, T* v_pool, int heads, int kv_heads, int d) {
    const int t = blockIdx.x, pairs = d / 4;
    const int nh = heads + 2 * kv_heads;
    const TIn* row = qkv + (size_t)t * nh * d;
    const int pos = (int)positions[t];
    const size_t slot = slots[t];
    for (int w = threadIdx.x; w < nh * pairs; w += blockDim.x) {
        const int h = w / pairs, i = (w % pairs) * 2;
        T* dst;
        if (h < heads) {
            dst = q_out + ((size_t)t * heads + h) * d;
        } else if (h < heads + kv_heads) {
            dst = k_pool + (slot * kv_heads + (h - heads)) * d;
        } else {
            dst = v_pool + (slot * kv_heads + (h - heads - kv_heads)) * d;
        }
        qkv_pair<T, TIn>(row, bias, cos, sin, h, i, d, h < heads + kv_heads, pos, dst);
    }
}

// Where one query head's cached keys and values lie: a contiguous cache [kv_heads, cap, D]
// (the single stream), already offset to the head's kv head.
template <typename T, int D>
struct ContiguousRows {
    const T* k;
    const T* v;
    __device__ __forceinline__ const T* key(int p) const { return k + (size_t)p * D; }
    __device__ __forceinline__ const T* value(int p) const { return v + (size_t)p * D; }
};

// The same in a paged pool [slots, kv_heads, D] shared by several sequences: position p of
// the sequence is slot table[p / block] * block + p % block (see model/paged.rs).
template <typename T, int D>
struct PagedRows {
    const T* k;
    const T* v;
    const uint32_t* table;
    int block, kv_heads, kvh;
    __device__ __forceinline__ size_t at(int p) const {
        const size_t slot = (size_t)table[p / block] * block + p % block;
        return (slot * kv_heads + kvh) * D;
    }
    __device__ __forceinline__ const T* key(int p) const { return k + at(p); }
    __device__ __forceinline__ const T* value(int p) const { return v + at(p); }
};

// Decode attention for one new token, flash-decoding style: each warp takes a run of cached
// positions for one query head and keeps a running max, sum and weighted value sum; the four
// warps of a block merge theirs in shared memory, and the combine kernel merges the blocks.
// Grouped-query heads read their kv head directly (no repeat_kv copies). D is the head size.
// qh: this head's query [D]; `row` indexes part [rows, blocks, D] and ml [rows, blocks, 2];
// grid (rows, blocks), block 4 warps; warp w of block b takes positions
// (b * 4 + w) * per_run .. + per_run of the head's `len`.
template <typename T, int D, typename Rows>
__device__ void attn_partial(const T* qh, Rows rows, float* part, float* ml, int row, int len,
                             int per_run, float scale) {
    constexpr int E = D / 32;
    __shared__ float s_acc[4][D];
    __shared__ float s_ml[4][2];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int blocks = gridDim.y;
    const int run = blockIdx.y * 4 + warp;
    float qv[E], acc[E];
#pragma unroll
    for (int e = 0; e < E; e++) {
        qv[e] = to_f(qh[lane * E + e]) * scale;
        acc[e] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    const int begin = run * per_run;
    const int end = min(len, begin + per_run);
    // U positions per step, their loads issued together (the loop is latency-bound).
    constexpr int U = 4;
    for (int p0 = begin; p0 < end; p0 += U) {
        float kk[U][E], vv[U][E], s[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int p = min(p0 + u, end - 1);  // past the end: a repeat, masked below
            load_e<T, E>(rows.key(p) + lane * E, kk[u]);
            load_e<T, E>(rows.value(p) + lane * E, vv[u]);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float t = 0.f;
#pragma unroll
            for (int e = 0; e < E; e++) t += qv[e] * kk[u][e];
            s[u] = t;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
            for (int u = 0; u < U; u++) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
        }
        float m_new = m;
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (p0 + u < end) {
                m_new = fmaxf(m_new, s[u]);
            } else {
                s[u] = -INFINITY;
            }
        }
        const float corr = __expf(m - m_new);
        l *= corr;
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] *= corr;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float w = s[u] == -INFINITY ? 0.f : __expf(s[u] - m_new);
            l += w;
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] += w * vv[u][e];
        }
        m = m_new;
    }
#pragma unroll
    for (int e = 0; e < E; e++) s_acc[warp][lane * E + e] = acc[e];
    if (lane == 0) {
        s_ml[warp][0] = m;
        s_ml[warp][1] = l;
    }
    __syncthreads();
    float mb = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; w++) mb = fmaxf(mb, s_ml[w][0]);
    const size_t slot = (size_t)row * blocks + blockIdx.y;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float num = 0.f;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            if (s_ml[w][0] != -INFINITY) num += __expf(s_ml[w][0] - mb) * s_acc[w][i];
        }
        part[slot * D + i] = num;
    }
    if (threadIdx.x == 0) {
        float lb = 0.f;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            if (s_ml[w][0] != -INFINITY) lb += __expf(s_ml[w][0] - mb) * s_ml[w][1];
        }
        ml[slot * 2] = mb;
        ml[slot * 2 + 1] = lb;
    }
}

// The single stream: q [heads, D]; k, v [kv_heads, cap, D]; grid (heads, blocks). With
// `len_dev` (a replayed CUDA graph, its grid sized for the whole capacity), len is read
// there; blocks past it write empty parts.
template <typename T, int D>
__device__ void attn_decode_partial(const T* q, const T* k, const T* v, float* part, float* ml,
                                    int heads, int kv_heads, int cap, int len, int per_run,
                                    float scale, const int* len_dev) {
    if (len_dev) len = *len_dev;
    const int h = blockIdx.x;
    const int kvh = h / (heads / kv_heads);
    const ContiguousRows<T, D> rows{k + (size_t)kvh * cap * D, v + (size_t)kvh * cap * D};
    attn_partial<T, D>(q + (size_t)h * D, rows, part, ml, h, len, per_run, scale);
}

// A batch of sequences decoding one token each over their blocks of a paged pool, in one
// launch: q [seqs, heads, D]; k, v [slots, kv_heads, D]; tables [seqs, max_blocks] block
// indices; lens [seqs] positions held (the new token's included). grid (seqs * heads, blocks);
// a block past its sequence's length writes an empty part, which the combine weighs as zero.
template <typename T, int D>
__device__ void attn_paged_partial(const T* q, const T* k, const T* v, const uint32_t* tables,
                                   const uint32_t* lens, float* part, float* ml, int heads,
                                   int kv_heads, int max_blocks, int block, int per_run,
                                   float scale) {
    const int row = blockIdx.x;
    const int seq = row / heads, h = row % heads;
    const PagedRows<T, D> rows{k, v, tables + (size_t)seq * max_blocks, block, kv_heads,
                               h / (heads / kv_heads)};
    attn_partial<T, D>(q + (size_t)row * D, rows, part, ml, row, (int)lens[seq], per_run, scale);
}

// E consecutive elements (E = 4 or 8) as floats; 8 bf16 values (16 bytes) in one access.
template <typename T, int E>
__device__ __forceinline__ void load_wide(const T* p, float* o) {
    if constexpr (E == 8 && !std::is_same<T, float>::value) {
        const uint4 raw = *reinterpret_cast<const uint4*>(p);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(h[i]);
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    } else if constexpr (E == 8) {
        load_e<T, 4>(p, o);
        load_e<T, 4>(p + 4, o + 4);
    } else {
        load_e<T, E>(p, o);
    }
}

// Merges the four warps' states of a grouped decode attention block (each warp's weighted
// values in s_acc [4][G][D], its max and sum in s_ml [4][G][2]) into the block's part and ml rows
// row0..row0 + G.
// The largest of the four warps' maxima for head g of the group (s_ml as in group_merge).
template <int G>
__device__ __forceinline__ float group_max(const float* s_ml, int g) {
    float mb = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; w++) mb = fmaxf(mb, s_ml[(w * G + g) * 2]);
    return mb;
}

template <int D, int G>
__device__ void group_merge(const float* s_acc, const float* s_ml, float* part, float* ml,
                            int row0) {
    const int blocks = gridDim.y;
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
        const int g = idx / D, i = idx % D;
        const float mb = group_max<G>(s_ml, g);
        float num = 0.f;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const float mw = s_ml[(w * G + g) * 2];
            if (mw != -INFINITY) num += __expf(mw - mb) * s_acc[(w * G + g) * D + i];
        }
        part[((size_t)(row0 + g) * blocks + blockIdx.y) * D + i] = num;
    }
    if (threadIdx.x < G) {
        const int g = threadIdx.x;
        const float mb = group_max<G>(s_ml, g);
        float lb = 0.f;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const float mw = s_ml[(w * G + g) * 2];
            if (mw != -INFINITY) lb += __expf(mw - mb) * s_ml[(w * G + g) * 2 + 1];
        }
        const size_t slot = (size_t)(row0 + g) * blocks + blockIdx.y;
        ml[slot * 2] = mb;
        ml[slot * 2 + 1] = lb;
    }
}

// Decode attention for the G query heads of a kv head, a lane a position: each warp takes its
// run in chunks of 32 positions, lane j scoring position p0 + j against all G queries (held in
// shared memory) from its own key row, so a score takes no shuffles; the chunk's maxima take one
// warp reduction a head, the running state is rescaled once a chunk, and the values are summed a
// position at a time, each lane holding D / 32 elements, the chunk's weights read from shared
// memory. About 2.5 times fewer instructions a position than a warp a position (five shuffles a
// score, a rescale a position). per_run: a multiple of 32. Dynamic shared memory:
// 4 * G * (D + 2) + G * D + 4 * 32 * 8 floats.
template <typename T, int D, int G>
__device__ void attn_group_chunk(const T* q, const PagedRows<T, D>& rows, float* part, float* ml,
                                 int row0, int len, int per_run, float scale) {
    constexpr int E = D / 32;
    extern __shared__ float smem[];
    float* s_acc = smem;              // [4][G][D]
    float* s_ml = s_acc + 4 * G * D;  // [4][G][2]
    float* s_q = s_ml + 4 * G * 2;    // [G][D], scaled
    float* s_w = s_q + G * D;         // [4][32][8]: each warp's chunk weights
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) s_q[i] = to_f(q[i]) * scale;
    __syncthreads();
    const int run = blockIdx.y * 4 + warp;
    const int begin = run * per_run;
    const int end = min(len, begin + per_run);
    float acc[G][E], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int e = 0; e < E; e++) acc[g][e] = 0.f;
        m[g] = -INFINITY;
        l[g] = 0.f;  // this lane's share of the sum
    }
    float* w_chunk = s_w + warp * 32 * 8;
    for (int p0 = begin; p0 < end; p0 += 32) {
        const bool live = p0 + lane < end;
        const T* kr = rows.key(live ? p0 + lane : p0);
        float s[G];
#pragma unroll
        for (int g = 0; g < G; g++) s[g] = 0.f;
#pragma unroll 4
        for (int c = 0; c < D; c += 8) {
            float kk[8];
            load_wide<T, 8>(kr + c, kk);
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float4 a = *reinterpret_cast<const float4*>(s_q + g * D + c);
                const float4 b = *reinterpret_cast<const float4*>(s_q + g * D + c + 4);
                s[g] += a.x * kk[0] + a.y * kk[1] + a.z * kk[2] + a.w * kk[3] + b.x * kk[4] +
                        b.y * kk[5] + b.z * kk[6] + b.w * kk[7];
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float sg = live ? s[g] : -INFINITY;
            const float mn = fmaxf(m[g], warp_max(sg));  // finite: lane 0 is live
            const float corr = __expf(m[g] - mn);         // 0 on the first chunk
            const float w = live ? __expf(sg - mn) : 0.f;
            l[g] = l[g] * corr + w;
            m[g] = mn;
            w_chunk[lane * 8 + g] = w;
#pragma unroll
            for (int e = 0; e < E; e++) acc[g][e] *= corr;
        }
        __syncwarp();
        const int n = min(32, end - p0);
#pragma unroll 4
        for (int j = 0; j < n; j++) {
            float vv[E];
            load_e<T, E>(rows.value(p0 + j) + lane * E, vv);
            const float* wj = w_chunk + j * 8;
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float w = wj[g];
#pragma unroll
                for (int e = 0; e < E; e++) acc[g][e] += w * vv[e];
            }
        }
        __syncwarp();  // the weights are rewritten by the next chunk
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float lg = warp_sum(l[g]);
#pragma unroll
        for (int e = 0; e < E; e++) s_acc[(warp * G + g) * D + lane * E + e] = acc[g][e];
        if (lane == 0) {
            s_ml[(warp * G + g) * 2] = m[g];
            s_ml[(warp * G + g) * 2 + 1] = lg;
        }
    }
    group_merge<D, G>(s_acc, s_ml, part, ml, row0);
}

// Decode attention for the G query heads that share one kv head (grouped-query attention):
// each cached key and value is loaded once for all G heads instead of once a head, so a batch's
// decode attention reads the pool once rather than G times over (through L2). With SPLIT = 2
// each half-warp takes its own positions (a lane holds D / 16 elements of a row, loaded 16
// bytes at a time for bf16), so a warp has twice the rows in flight and each score needs four
// shuffles, not five; the halves merge their running max, sum and weighted values before the
// warps merge theirs. With SPLIT = 1 a whole warp takes each position (D / 32 a lane).
// q: the G heads' queries [G, D]; their part/ml rows are row0..row0+G. Dynamic shared memory:
// 4 * G * (D + 2) floats.
template <typename T, int D, int G, int SPLIT>
__device__ void attn_group_partial(const T* q, const PagedRows<T, D>& rows, float* part,
                                   float* ml, int row0, int len, int per_run, float scale) {
    constexpr int LANES = 32 / SPLIT;  // lanes a position
    constexpr int E = D / LANES;
    constexpr int U = G > 4 ? 2 : 4;  // positions a lane group loads per iteration
    extern __shared__ float smem[];
    float* s_acc = smem;             // [4][G][D]
    float* s_ml = smem + 4 * G * D;  // [4][G][2]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int half = lane / LANES, hl = lane % LANES;
    const int run = blockIdx.y * 4 + warp;
    float qv[G][E], acc[G][E], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int e = 0; e < E; e++) {
            qv[g][e] = to_f(q[g * D + hl * E + e]) * scale;
            acc[g][e] = 0.f;
        }
        m[g] = -INFINITY;
        l[g] = 0.f;
    }
    const int begin = run * per_run;
    const int end = min(len, begin + per_run);
    for (int p0 = begin; p0 < end; p0 += SPLIT * U) {
        float kk[U][E], vv[U][E], s[G][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int p = min(p0 + SPLIT * u + half, end - 1);  // past the end: a repeat, masked
            load_wide<T, E>(rows.key(p) + hl * E, kk[u]);
            load_wide<T, E>(rows.value(p) + hl * E, vv[u]);
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                float t = 0.f;
#pragma unroll
                for (int e = 0; e < E; e++) t += qv[g][e] * kk[u][e];
                s[g][u] = t;
            }
        }
        // Sums within each lane group (xor offsets below LANES stay in the group).
#pragma unroll
        for (int o = LANES / 2; o > 0; o >>= 1) {
#pragma unroll
            for (int g = 0; g < G; g++) {
#pragma unroll
                for (int u = 0; u < U; u++) s[g][u] += __shfl_xor_sync(0xffffffffu, s[g][u], o);
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float m_new = m[g];
#pragma unroll
            for (int u = 0; u < U; u++) {
                if (p0 + SPLIT * u + half < end) {
                    m_new = fmaxf(m_new, s[g][u]);
                } else {
                    s[g][u] = -INFINITY;
                }
            }
            if (m_new == -INFINITY) continue;  // this half had no position yet
            const float corr = __expf(m[g] - m_new);
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < E; e++) acc[g][e] *= corr;
#pragma unroll
            for (int u = 0; u < U; u++) {
                const float w = s[g][u] == -INFINITY ? 0.f : __expf(s[g][u] - m_new);
                l[g] += w;
#pragma unroll
                for (int e = 0; e < E; e++) acc[g][e] += w * vv[u][e];
            }
            m[g] = m_new;
        }
    }
    // The two halves' states merged (both end with the same values).
#pragma unroll
    for (int g = 0; g < G && SPLIT == 2; g++) {
        const float m_o = __shfl_xor_sync(0xffffffffu, m[g], 16);
        const float l_o = __shfl_xor_sync(0xffffffffu, l[g], 16);
        const float mm = fmaxf(m[g], m_o);
        const float a = m[g] == -INFINITY ? 0.f : __expf(m[g] - mm);
        const float b = m_o == -INFINITY ? 0.f : __expf(m_o - mm);
        l[g] = l[g] * a + l_o * b;
#pragma unroll
        for (int e = 0; e < E; e++) {
            const float acc_o = __shfl_xor_sync(0xffffffffu, acc[g][e], 16);
            acc[g][e] = acc[g][e] * a + acc_o * b;
        }
        m[g] = mm;
    }
    if (half == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
#pragma unroll
            for (int e = 0; e < E; e++) s_acc[(warp * G + g) * D + hl * E + e] = acc[g][e];
            if (hl == 0) {
                s_ml[(warp * G + g) * 2] = m[g];
                s_ml[(warp * G + g) * 2 + 1] = l[g];
            }
        }
    }
    group_merge<D, G>(s_acc, s_ml, part, ml, row0);
}

// Paged decode attention with the heads of a group together: grid (seqs * kv_heads, blocks),
// block 4 warps; group = heads / kv_heads, 2 to 8 (others take attn_paged_partial).
template <typename T, int D, int SPLIT>
__device__ void attn_paged_group(const T* q, const T* k, const T* v, const uint32_t* tables,
                                 const uint32_t* lens, float* part, float* ml, int heads,
                                 int kv_heads, int max_blocks, int block, int per_run,
                                 float scale) {
    const int seq = blockIdx.x / kv_heads, kvh = blockIdx.x % kv_heads;
    const int group = heads / kv_heads;
    const PagedRows<T, D> rows{k, v, tables + (size_t)seq * max_blocks, block, kv_heads, kvh};
    const int row0 = seq * heads + kvh * group;
    const T* qg = q + (size_t)row0 * D;
    const int len = (int)lens[seq];
    switch (group) {
#define GROUP_CASE(G)                                                                       \
    case G:                                                                                 \
        if constexpr (SPLIT == 3) {                                                         \
            attn_group_chunk<T, D, G>(qg, rows, part, ml, row0, len, per_run, scale);       \
        } else {                                                                            \
            attn_group_partial<T, D, G, SPLIT>(qg, rows, part, ml, row0, len, per_run, scale); \
        }                                                                                   \
        break;
        GROUP_CASE(2)
        GROUP_CASE(3)
        GROUP_CASE(4)
        GROUP_CASE(5)
        GROUP_CASE(6)
        GROUP_CASE(7)
        GROUP_CASE(8)
#undef GROUP_CASE
        default:
            break;
    }
}

// Writes the step's new keys and values into their pool slots: k, v [tokens, width] (width =
// kv_heads * D); slots [tokens]. One thread per element.
template <typename T>
__device__ void paged_write(const T* k, const T* v, const uint32_t* slots, T* k_pool, T* v_pool,
                            int tokens, int width) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)tokens * width) return;
    const size_t t = i / width, e = i % width;
    const size_t dst = (size_t)slots[t] * width + e;
    k_pool[dst] = k[i];
    v_pool[dst] = v[i];
}

// A block-wide sum or max of one float a thread (blockDim.x a multiple of 32, at most 1024).
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
    v = MAX ? warp_max(v) : warp_sum(v);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads();  // scratch may still be read from a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : (MAX ? -INFINITY : 0.f);
    return MAX ? warp_max(v) : warp_sum(v);
}

// Merges the blocks of attn_decode_partial: out [heads, D] (the o projection's input row).
// The blocks' maxima and weights are found first, together, so that the weighted sum over the
// blocks is a run of independent loads rather than a chain through a running max.
// grid heads, block D threads; at most MAX_BLOCKS blocks a head.
constexpr int MAX_BLOCKS = 2048;
template <typename T, int D>
__device__ void attn_decode_combine(const float* part, const float* ml, T* out, int blocks) {
    __shared__ float s_w[MAX_BLOCKS];
    __shared__ float s_red[32];
    const int h = blockIdx.x, i = threadIdx.x;
    const float* mlh = ml + (size_t)h * blocks * 2;
    float m = -INFINITY;
    for (int r = i; r < blocks; r += D) m = fmaxf(m, mlh[r * 2]);
    m = block_reduce<true>(m, s_red);
    float den = 0.f;
    for (int r = i; r < blocks; r += D) {
        const float mr = mlh[r * 2];
        const float w = mr == -INFINITY ? 0.f : __expf(mr - m);
        s_w[r] = w;
        den += w * mlh[r * 2 + 1];
    }
    den = block_reduce<false>(den, s_red);  // its barriers also publish s_w
    const float* ph = part + (size_t)h * blocks * D + i;
    float num = 0.f;
#pragma unroll 8
    for (int r = 0; r < blocks; r++) num += s_w[r] * ph[(size_t)r * D];
    out[(size_t)h * D + i] = from_f<T>(num / den);
}

// In-place causal softmax of prefill attention scores: rows are (query head, token) pairs
// with `seq` tokens per head, columns the `past + seq` positions; row r's token i = r % seq
// sees columns 0..=past+i. Scaled by `scale`, computed in float, masked entries written as 0.
// One warp per row; a row of up to PER * 32 visible columns is read once into registers,
// longer ones three times. grid ceil(rows / 8), block 8 warps.
template <typename T, int PER>
__device__ void softmax_causal(T* x, int rows, int cols, int seq, int past, float scale) {
    const int r = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    const int allowed = past + (r % seq) + 1;
    T* row = x + (size_t)r * cols;
    if (allowed <= PER * 32) {
        float v[PER];
        float m = -INFINITY;
#pragma unroll
        for (int e = 0; e < PER; e++) {
            const int j = lane + e * 32;
            v[e] = j < allowed ? to_f(row[j]) * scale : -INFINITY;
            m = fmaxf(m, v[e]);
        }
        m = warp_max(m);
        float s = 0.f;
#pragma unroll
        for (int e = 0; e < PER; e++) {
            v[e] = v[e] == -INFINITY ? 0.f : __expf(v[e] - m);
            s += v[e];
        }
        const float inv = 1.f / warp_sum(s);
#pragma unroll
        for (int e = 0; e < PER; e++) {
            const int j = lane + e * 32;
            if (j < cols) row[j] = from_f<T>(v[e] * inv);
        }
        for (int j = lane + PER * 32; j < cols; j += 32) row[j] = from_f<T>(0.f);
        return;
    }
    float m = -INFINITY;
    for (int j = lane; j < allowed; j += 32) m = fmaxf(m, to_f(row[j]) * scale);
    m = warp_max(m);
    float s = 0.f;
    for (int j = lane; j < allowed; j += 32) s += __expf(to_f(row[j]) * scale - m);
    const float inv = 1.f / warp_sum(s);
    for (int j = lane; j < cols; j += 32) {
        row[j] = j < allowed ? from_f<T>(__expf(to_f(row[j]) * scale - m) * inv) : from_f<T>(0.f);
    }
}

// SiLU-gated product of the merged gate/up projection: x [rows, 2 inter] -> out [rows, inter].
// grid (ceil(inter / 256), rows), block 256 threads.
template <typename T>
__device__ void silu_mul(const T* x, T* out, int inter) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= inter) return;
    const size_t r = blockIdx.y;
    const float g = to_f(x[r * 2 * inter + c]);
    const float u = to_f(x[r * 2 * inter + inter + c]);
    out[r * inter + c] = from_f<T>(g / (1.f + __expf(-g)) * u);
}

// The bf16 version two columns at a time (inter even).
__device__ void silu_mul2(const __nv_bfloat162* x, __nv_bfloat162* out, int half_inter) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= half_inter) return;
    const size_t r = blockIdx.y;
    const float2 g = __bfloat1622float2(x[r * 2 * half_inter + c]);
    const float2 u = __bfloat1622float2(x[r * 2 * half_inter + half_inter + c]);
    out[r * half_inter + c] = __floats2bfloat162_rn(g.x / (1.f + __expf(-g.x)) * u.x,
                                                   g.y / (1.f + __expf(-g.y)) * u.y);
}

extern "C" __global__ void silu_mul2_bf16(const __nv_bfloat162* x, __nv_bfloat162* out,
                                          int half_inter) {
    silu_mul2(x, out, half_inter);
}

// Sixteen bytes of T (8 bf16 or 4 floats) as floats.
template <typename T> struct Chunk {
    static constexpr int E = 16 / sizeof(T);
};
template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float* o) {
    if constexpr (std::is_same<T, float>::value) {
        o[0] = __uint_as_float(raw.x), o[1] = __uint_as_float(raw.y);
        o[2] = __uint_as_float(raw.z), o[3] = __uint_as_float(raw.w);
    } else {
        const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
            o[2 * i] = f.x, o[2 * i + 1] = f.y;
        }
    }
}
template <typename T>
__device__ __forceinline__ uint4 pack(const float* v) {
    uint4 raw;
    if constexpr (std::is_same<T, float>::value) {
        raw.x = __float_as_uint(v[0]), raw.y = __float_as_uint(v[1]);
        raw.z = __float_as_uint(v[2]), raw.w = __float_as_uint(v[3]);
    } else {
        uint32_t w[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
            w[i] = *reinterpret_cast<const uint32_t*>(&b);
        }
        raw.x = w[0], raw.y = w[1], raw.z = w[2], raw.w = w[3];
    }
    return raw;
}
// Rounds to T and back, as a value stored in T would read.
template <typename T> __device__ __forceinline__ float round_t(float x) {
    return to_f(from_f<T>(x));
}

// The residual add and the RMS norm that follows it, in one pass: res = x + delta (rounded to T,
// as a separate add would store it), out = w * T(res / rms(res)) with the two roundings of
// transformers' Qwen2RMSNorm. delta null: no add, res not written. Row length h a multiple of
// the chunk (16 bytes) with at most MAXC chunks a thread. grid rows, block 256 threads.
template <typename T, int MAXC>
__device__ void add_rmsnorm(const T* x, const T* delta, const T* w, T* res, T* out, int h,
                            float eps) {
    constexpr int E = Chunk<T>::E;
    __shared__ float s_part[32];
    const size_t r = blockIdx.x;
    const int chunks = h / E;
    const uint4* xr = reinterpret_cast<const uint4*>(x + r * h);
    const uint4* dr = delta ? reinterpret_cast<const uint4*>(delta + r * h) : nullptr;
    uint4* rr = reinterpret_cast<uint4*>(res + r * h);
    float v[MAXC][E];
    float ss = 0.f;
#pragma unroll
    for (int c = 0; c < MAXC; c++) {
        const int i = threadIdx.x + c * blockDim.x;
        if (i >= chunks) break;
        unpack<T>(xr[i], v[c]);
        if (dr) {
            float d[E];
            unpack<T>(dr[i], d);
#pragma unroll
            for (int e = 0; e < E; e++) v[c][e] = round_t<T>(v[c][e] + d[e]);
            rr[i] = pack<T>(v[c]);
        }
#pragma unroll
        for (int e = 0; e < E; e++) ss += v[c][e] * v[c][e];
    }
    ss = block_reduce<false>(ss, s_part);
    const float inv = rsqrtf(ss / (float)h + eps);
    const uint4* wr = reinterpret_cast<const uint4*>(w);
    uint4* orow = reinterpret_cast<uint4*>(out + r * h);
#pragma unroll
    for (int c = 0; c < MAXC; c++) {
        const int i = threadIdx.x + c * blockDim.x;
        if (i >= chunks) break;
        float g[E];
        unpack<T>(wr[i], g);
#pragma unroll
        for (int e = 0; e < E; e++) g[e] = g[e] * round_t<T>(v[c][e] * inv);
        orow[i] = pack<T>(g);
    }
}

// One row of activations times a weight matrix stored (n, k) row-major: y = x W^T, the decode
// step's projections. cuBLAS runs these as split-K GEMMs plus a reduction kernel; here each warp
// streams R whole rows of W in 16-byte loads, U chunks of each row in flight per lane (the loop
// is bound by memory latency), reusing each chunk of x for the R rows, and reduces across the
// warp once at the end. k a multiple of the chunk. y may be f32 for a bf16 model (TOut), the
// sums then written unrounded. grid ceil(n / (8 R)), block 8 warps.
template <typename T, int R, typename TOut = T>
__device__ void gemv(const T* x, const T* w, TOut* y, int n, int k) {
    constexpr int E = Chunk<T>::E, U = 4;
    const int lane = threadIdx.x % 32;
    const int row0 = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * R;
    if (row0 >= n) return;
    const int chunks = k / E;
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    const uint4* wv[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        wv[r] = reinterpret_cast<const uint4*>(w + (size_t)min(row0 + r, n - 1) * k);
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    int c = lane;
    for (; c + 32 * (U - 1) < chunks; c += 32 * U) {
        uint4 xraw[U], wraw[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            xraw[u] = __ldg(xv + c + 32 * u);
#pragma unroll
            for (int r = 0; r < R; r++) wraw[u][r] = __ldcs(wv[r] + c + 32 * u);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float xf[E];
            unpack<T>(xraw[u], xf);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float wf[E];
                unpack<T>(wraw[u][r], wf);
#pragma unroll
                for (int e = 0; e < E; e++) acc[r] = fmaf(xf[e], wf[e], acc[r]);
            }
        }
    }
    for (; c < chunks; c += 32) {
        float xf[E];
        unpack<T>(__ldg(xv + c), xf);
#pragma unroll
        for (int r = 0; r < R; r++) {
            float wf[E];
            unpack<T>(__ldcs(wv[r] + c), wf);
#pragma unroll
            for (int e = 0; e < E; e++) acc[r] = fmaf(xf[e], wf[e], acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (row0 + r < n) y[row0 + r] = from_f<TOut>(acc[r]);
        }
    }
}

// Prefill attention's output (heads, seq, d) as the o projection's input (seq, heads d), 16
// bytes a thread. d a multiple of the chunk. grid ceil(total chunks / 256), block 256.
template <typename T>
__device__ void heads_to_rows(const T* in, T* out, int heads, int seq, int d) {
    constexpr int E = Chunk<T>::E;
    const int per_row = d / E;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t total = (size_t)heads * seq * per_row;
    if (i >= total) return;
    const int c = i % per_row;
    const size_t ht = i / per_row;
    const int t = ht % seq, h = ht / seq;
    reinterpret_cast<uint4*>(out)[((size_t)t * heads + h) * per_row + c] =
        reinterpret_cast<const uint4*>(in)[i];
}

// Greedy decoding's argmax over the f32 logits, in two launches: each block reduces a slice
// to one key, then one block reduces the keys. A key orders by value, ties by the lower index
// (the first maximum, as torch's argmax): the float's bits made monotonic in the high word,
// the complement of the index in the low.
__device__ __forceinline__ unsigned long long argmax_key(float v, uint32_t i) {
    const uint32_t u = __float_as_uint(v);
    const uint32_t ordered = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)ordered << 32) | (0xffffffffu - i);
}
__device__ __forceinline__ unsigned long long block_max_key(unsigned long long k) {
    __shared__ unsigned long long s_k[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, k, o);
        k = other > k ? other : k;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) s_k[warp] = k;
    __syncthreads();
    k = lane < (int)(blockDim.x / 32) ? s_k[lane] : 0ull;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, k, o);
        k = other > k ? other : k;
    }
    return k;
}
// grid blocks, block 256: block b scans x[b * per .. (b + 1) * per).
extern "C" __global__ void argmax_partial_f32(const float* x, unsigned long long* keys, int n,
                                              int per) {
    const int begin = blockIdx.x * per, end = min(n, begin + per);
    unsigned long long k = 0ull;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const unsigned long long c = argmax_key(x[i], i);
        k = c > k ? c : k;
    }
    k = block_max_key(k);
    if (threadIdx.x == 0) keys[blockIdx.x] = k;
}
// One block of 1024 threads over the partial keys; writes the index.
extern "C" __global__ void argmax_final(const unsigned long long* keys, int blocks, uint32_t* out) {
    unsigned long long k = 0ull;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) k = keys[i] > k ? keys[i] : k;
    k = block_max_key(k);
    if (threadIdx.x == 0) out[0] = 0xffffffffu - (uint32_t)(k & 0xffffffffu);
}

// A paged decode attention kernel named NAME over dtype T, running the device function (with
// its template arguments) given last: they all take the same arguments.
#define PAGED_ATTENTION(NAME, T, ...)                                                            \
    extern "C" __global__ void __launch_bounds__(128)                                            \
        NAME(const T* q, const T* k, const T* v, const uint32_t* tables, const uint32_t* lens,   \
             float* part, float* ml, int heads, int kv_heads, int max_blocks, int block,         \
             int per_run, float scale) {                                                         \
        __VA_ARGS__(q, k, v, tables, lens, part, ml, heads, kv_heads, max_blocks, block, per_run, \
                    scale);                                                                      \
    }

#define INSTANTIATE(T, SUFFIX)                                                                   \
    extern "C" __global__ void qkv_rope_##SUFFIX(const T* qkv, const T* bias, const T* cos,      \
                                                 const T* sin, T* q_out, T* k_cache, T* v_cache, \
                                                 int seq, int heads, int kv_heads, int d,        \
                                                 int cap, int start, const int* len_dev) {       \
        qkv_rope<T>(qkv, bias, cos, sin, q_out, k_cache, v_cache, seq, heads, kv_heads, d, cap, \
                    start, len_dev);                                                             \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(128)                                            \
        attn_decode_partial_d128_##SUFFIX(const T* q, const T* k, const T* v, float* part,       \
                                          float* ml, int heads, int kv_heads, int cap, int len,  \
                                          int per_run, float scale, const int* len_dev) {        \
        attn_decode_partial<T, 128>(q, k, v, part, ml, heads, kv_heads, cap, len, per_run,       \
                                    scale, len_dev);                                             \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(128)                                            \
        attn_decode_partial_d64_##SUFFIX(const T* q, const T* k, const T* v, float* part,        \
                                         float* ml, int heads, int kv_heads, int cap, int len,   \
                                         int per_run, float scale, const int* len_dev) {         \
        attn_decode_partial<T, 64>(q, k, v, part, ml, heads, kv_heads, cap, len, per_run,        \
                                   scale, len_dev);                                              \
    }                                                                                            \
    PAGED_ATTENTION(attn_paged_partial_d128_##SUFFIX, T, attn_paged_partial<T, 128>)             \
    PAGED_ATTENTION(attn_paged_partial_d64_##SUFFIX, T, attn_paged_partial<T, 64>)               \
    PAGED_ATTENTION(attn_paged_group2_d128_##SUFFIX, T, attn_paged_group<T, 128, 2>)             \
    PAGED_ATTENTION(attn_paged_group2_d64_##SUFFIX, T, attn_paged_group<T, 64, 2>)               \
    PAGED_ATTENTION(attn_paged_group_d128_##SUFFIX, T, attn_paged_group<T, 128, 1>)              \
    PAGED_ATTENTION(attn_paged_group3_d128_##SUFFIX, T, attn_paged_group<T, 128, 3>)             \
    PAGED_ATTENTION(attn_paged_group3_d64_##SUFFIX, T, attn_paged_group<T, 64, 3>)               \
    PAGED_ATTENTION(attn_paged_group_d64_##SUFFIX, T, attn_paged_group<T, 64, 1>)                \
    extern "C" __global__ void qkv_rope_paged_##SUFFIX(                                          \
        const T* qkv, const T* bias, const T* cos, const T* sin, const uint32_t* positions,      \
        const uint32_t* slots, T* q_out, T* k_pool, T* v_pool, int heads, int kv_heads, int d) { \
        qkv_rope_paged<T>(qkv, bias, cos, sin, positions, slots, q_out, k_pool, v_pool, heads,   \
                          kv_heads, d);                                                          \
    }                                                                                            \
    extern "C" __global__ void paged_write_##SUFFIX(const T* k, const T* v, const uint32_t* slots,\
                                                    T* k_pool, T* v_pool, int tokens,            \
                                                    int width) {                                 \
        paged_write<T>(k, v, slots, k_pool, v_pool, tokens, width);                              \
    }                                                                                            \
    extern "C" __global__ void attn_decode_combine_d128_##SUFFIX(const float* part,              \
                                                                 const float* ml, T* out,        \
                                                                 int blocks) {                   \
        attn_decode_combine<T, 128>(part, ml, out, blocks);                                      \
    }                                                                                            \
    extern "C" __global__ void attn_decode_combine_d64_##SUFFIX(const float* part,               \
                                                                const float* ml, T* out,         \
                                                                int blocks) {                    \
        attn_decode_combine<T, 64>(part, ml, out, blocks);                                       \
    }                                                                                            \
    extern "C" __global__ void softmax_causal_##SUFFIX(T* x, int rows, int cols, int seq,        \
                                                       int past, float scale) {                  \
        softmax_causal<T, 48>(x, rows, cols, seq, past, scale);                                  \
    }                                                                                            \
    extern "C" __global__ void silu_mul_##SUFFIX(const T* x, T* out, int inter) {                 \
        silu_mul<T>(x, out, inter);                                                              \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(256)                                            \
        add_rmsnorm_##SUFFIX(const T* x, const T* delta, const T* w, T* res, T* out, int h,      \
                             float eps) {                                                        \
        add_rmsnorm<T, 4>(x, delta, w, res, out, h, eps);                                        \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(256)                                            \
        gemv_r1_##SUFFIX(const T* x, const T* w, T* y, int n, int k) {                           \
        gemv<T, 1>(x, w, y, n, k);                                                               \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(256)                                            \
        gemv_r2_##SUFFIX(const T* x, const T* w, T* y, int n, int k) {                           \
        gemv<T, 2>(x, w, y, n, k);                                                               \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(256)                                            \
        gemv_r4_##SUFFIX(const T* x, const T* w, T* y, int n, int k) {                           \
        gemv<T, 4>(x, w, y, n, k);                                                               \
    }                                                                                            \
    extern "C" __global__ void heads_to_rows_##SUFFIX(const T* in, T* out, int heads, int seq,   \
                                                      int d) {                                   \
        heads_to_rows<T>(in, out, heads, seq, d);                                                \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__nv_bfloat16, bf16)

// bf16 models with the q/k/v product in f32 (`ARBITER_CUDA_QKV=f32`): the bias is added and q,
// k rotated before the one rounding to bf16, where a bf16 product rounds once before them.
extern "C" __global__ void qkv_rope_bf16_f32in(const float* qkv, const __nv_bfloat16* bias,
                                               const __nv_bfloat16* cos, const __nv_bfloat16* sin,
                                               __nv_bfloat16* q_out, __nv_bfloat16* k_cache,
                                               __nv_bfloat16* v_cache, int seq, int heads,
                                               int kv_heads, int d, int cap, int start,
                                               const int* len_dev) {
    qkv_rope<__nv_bfloat16, float>(qkv, bias, cos, sin, q_out, k_cache, v_cache, seq, heads,
                                   kv_heads, d, cap, start, len_dev);
}
extern "C" __global__ void qkv_rope_paged_bf16_f32in(
    const float* qkv, const __nv_bfloat16* bias, const __nv_bfloat16* cos,
    const __nv_bfloat16* sin, const uint32_t* positions, const uint32_t* slots,
    __nv_bfloat16* q_out, __nv_bfloat16* k_pool, __nv_bfloat16* v_pool, int heads, int kv_heads,
    int d) {
    qkv_rope_paged<__nv_bfloat16, float>(qkv, bias, cos, sin, positions, slots, q_out, k_pool,
                                         v_pool, heads, kv_heads, d);
}

// The single stream's q/k/v product of a bf16 model in f32 (`ARBITER_CUDA_QKV=f32`).
#define GEMV_F32OUT(R)                                                                           \
    extern "C" __global__ void __launch_bounds__(256) gemv_r##R##_bf16_f32out(                   \
        const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, int n, int k) {                \
        gemv<__nv_bfloat16, R, float>(x, w, y, n, k);                                            \
    }
GEMV_F32OUT(1)
GEMV_F32OUT(2)
GEMV_F32OUT(4)
