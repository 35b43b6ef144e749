//! AdamW and the squared gradient norm over many tensors in a few launches (see
//! [`crate::optim`] for the formulas): a LoRA step updates hundreds of small tensors, and one
//! CubeCL launch per tensor costs the issuing thread ≈ 50 µs each while the GPU idles.
//!
//! Tensors are taken in groups of [`GROUP`]; a group's addresses, sizes and seeds travel in the
//! kernel's parameters (one `__grid_constant__` struct under CUDA's 4 KiB limit), and its grid
//! is the concatenation of each tensor's blocks (`first_block`: the prefix sums, searched by
//! each block). The kernels (CUDA C, compiled once per device by NVRTC) do the arithmetic of
//! `cuda::optim`'s per-tensor kernels in the same order, and draw the same stochastic-rounding
//! bits (`counter_hash(i, seed)` per tensor seed).
//!
//! AdamW writes fresh tensors, one allocation per output (the sizes of the inputs, so that the
//! pool serves them from the slices the previous step's outputs freed: one buffer per kind for
//! all tensors needed pages of its own, +0.7 GiB of reserved pool on Llama-3-8B). The launches
//! are queued on burn's stream (`stream::enqueue`), where the runner thread turns the handles
//! into addresses; without a verified stream, `None` (the caller takes the per-tensor path).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::sys as dsys;

use super::cublaslt;
use super::interop::{contiguous, cuda_ordinal};
use super::nvrtc_module;
use super::stream::{self, CudaServer};
use crate::error::{Error, Result};
use crate::optim::AdamWStep;

/// Tensors per launch (keeps [`AdamwGroup`] under CUDA's 4 KiB of kernel parameters).
const GROUP: usize = crate::optim::UPDATE_GROUP;
/// Threads per block; AdamW takes one element per thread.
const BLOCK: u32 = 256;
/// Elements each norm block sums (16 per thread).
const NORM_CHUNK: u32 = BLOCK * 16;

const SOURCE: &str = r#"
#define GROUP 48
#define BLOCK 256
#define NORM_CHUNK (BLOCK * 16)
struct AdamwGroup {
    unsigned long long p[GROUP], g[GROUP], m[GROUP], v[GROUP], po[GROUP], mo[GROUP], vo[GROUP], pc[GROUP];
    unsigned int n[GROUP], seed_lo[GROUP], seed_hi[GROUP], first_block[GROUP + 1], count;
};
struct NormGroup {
    unsigned long long g[GROUP];
    unsigned int n[GROUP], first_block[GROUP + 1], count, out_offset;
};
struct Scalars { float beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction1, bias_correction2, eps, decay, lr; };

__device__ __forceinline__ unsigned int fmix(unsigned int h) {
    h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; return h ^ (h >> 16);
}
__device__ __forceinline__ unsigned int counter_hash(unsigned int i, unsigned int lo, unsigned int hi) {
    return fmix(fmix((i * 0x9E3779B1u) ^ lo) ^ hi);
}
__device__ __forceinline__ float load(const float* x, unsigned int i) { return x[i]; }
__device__ __forceinline__ float load(const unsigned short* x, unsigned int i) {
    return __uint_as_float(((unsigned int)x[i]) << 16);
}
__device__ __forceinline__ void store(float* x, unsigned int i, float y, unsigned int) { x[i] = y; }
// bf16 by stochastic rounding: the low 16 bits of r added below the kept bits, then truncated;
// infinities and NaNs converted as they are (NaNs kept quiet).
__device__ __forceinline__ void store(unsigned short* x, unsigned int i, float y, unsigned int r) {
    unsigned int b = __float_as_uint(y);
    if ((b & 0x7F800000u) != 0x7F800000u) b = (b + (r & 0xFFFFu)) & 0xFFFF0000u;
    else if ((b & 0x007FFFFFu) != 0u) b |= 0x00400000u;
    x[i] = (unsigned short)(b >> 16);
}
// bf16 rounded to nearest, ties to even (as a cast does); NaNs kept quiet.
__device__ __forceinline__ unsigned short bf16_nearest(float y) {
    unsigned int b = __float_as_uint(y);
    if ((b & 0x7F800000u) == 0x7F800000u) return (unsigned short)(((b & 0x007FFFFFu) != 0u ? (b | 0x00400000u) : b) >> 16);
    return (unsigned short)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}
// The tensor whose blocks hold `block`: the last t with first_block[t] <= block.
__device__ __forceinline__ int owner(const unsigned int* first_block, int count, unsigned int block) {
    int lo = 0, hi = count - 1;
    while (lo < hi) { int mid = (lo + hi + 1) >> 1; if (first_block[mid] <= block) lo = mid; else hi = mid - 1; }
    return lo;
}

template <typename G, typename M, bool STOCHASTIC>
__device__ void adamw(const AdamwGroup& a, const float* scale, const Scalars& s) {
    int t = owner(a.first_block, a.count, blockIdx.x);
    unsigned int i = (blockIdx.x - a.first_block[t]) * BLOCK + threadIdx.x;
    if (i >= a.n[t]) return;
    const float* p = (const float*)a.p[t];
    const G* g = (const G*)a.g[t];
    const M* m = (const M*)a.m[t];
    const M* v = (const M*)a.v[t];
    float gi = load(g, i) * scale[0];
    float mi = load(m, i) * s.beta1 + gi * s.one_minus_beta1;
    float vi = load(v, i) * s.beta2 + gi * gi * s.one_minus_beta2;
    float denom = sqrtf(vi / s.bias_correction2) + s.eps;
    float pi = p[i] * s.decay;
    float pn = pi - mi / s.bias_correction1 / denom * s.lr;
    ((float*)a.po[t])[i] = pn;
    if (a.pc[t] != 0ull) ((unsigned short*)a.pc[t])[i] = bf16_nearest(pn);
    unsigned int r = STOCHASTIC ? counter_hash(i, a.seed_lo[t], a.seed_hi[t]) : 0u;
    store((M*)a.mo[t], i, mi, r);
    store((M*)a.vo[t], i, vi, r >> 16);
}

template <typename G>
__device__ void sum_squares(const NormGroup& a, float* partial) {
    __shared__ float acc[BLOCK];
    int t = owner(a.first_block, a.count, blockIdx.x);
    unsigned int base = (blockIdx.x - a.first_block[t]) * NORM_CHUNK;
    const G* g = (const G*)a.g[t];
    float sum = 0.0f;
    for (unsigned int k = 0; k < NORM_CHUNK / BLOCK; ++k) {
        unsigned int i = base + k * BLOCK + threadIdx.x;
        if (i < a.n[t]) { float x = load(g, i); sum += x * x; }
    }
    acc[threadIdx.x] = sum;
    __syncthreads();
    for (unsigned int half = BLOCK / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) acc[threadIdx.x] += acc[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[a.out_offset + blockIdx.x] = acc[0];
}

#define ADAMW(name, G, M, S) extern "C" __global__ void __launch_bounds__(BLOCK) name( \
    const __grid_constant__ AdamwGroup a, const float* scale, const __grid_constant__ Scalars s) { adamw<G, M, S>(a, scale, s); }
ADAMW(adamw_f32_f32, float, float, false)
ADAMW(adamw_bf16_f32, unsigned short, float, false)
ADAMW(adamw_f32_bf16, float, unsigned short, true)
ADAMW(adamw_bf16_bf16, unsigned short, unsigned short, true)
extern "C" __global__ void __launch_bounds__(BLOCK) sum_squares_f32(const __grid_constant__ NormGroup a, float* partial) { sum_squares<float>(a, partial); }
extern "C" __global__ void __launch_bounds__(BLOCK) sum_squares_bf16(const __grid_constant__ NormGroup a, float* partial) { sum_squares<unsigned short>(a, partial); }
"#;

#[repr(C)]
#[derive(Clone, Copy)]
struct AdamwGroup {
    p: [u64; GROUP],
    g: [u64; GROUP],
    m: [u64; GROUP],
    v: [u64; GROUP],
    po: [u64; GROUP],
    mo: [u64; GROUP],
    vo: [u64; GROUP],
    /// The new parameter's bf16 copy, or 0 for none.
    pc: [u64; GROUP],
    n: [u32; GROUP],
    seed_lo: [u32; GROUP],
    seed_hi: [u32; GROUP],
    first_block: [u32; GROUP + 1],
    count: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct NormGroup {
    g: [u64; GROUP],
    n: [u32; GROUP],
    first_block: [u32; GROUP + 1],
    count: u32,
    out_offset: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Scalars {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    eps: f32,
    decay: f32,
    lr: f32,
}

/// The compiled kernels of one device (function handles of its primary context, as addresses).
#[derive(Clone, Copy)]
struct Kernels {
    /// `[g f32 | bf16][m f32 | bf16]`.
    adamw: [[usize; 2]; 2],
    /// `[g f32 | bf16]`.
    sum_squares: [usize; 2],
}

/// The outputs of one tensor's update.
pub(crate) struct Updated {
    pub(crate) p: CubeTensor,
    pub(crate) m: CubeTensor,
    pub(crate) v: CubeTensor,
    /// `p` in bf16, when asked for.
    pub(crate) p_bf16: Option<CubeTensor>,
}

/// Updates and norms queued on this path so far (so tests can tell it from the fallback).
static QUEUED: AtomicU64 = AtomicU64::new(0);

/// How many multi-tensor AdamW updates and norms were queued in this process.
pub fn multi_tensor_calls() -> u64 {
    QUEUED.load(Ordering::Relaxed)
}

static KERNELS: nvrtc_module::PerDevice<Kernels> = nvrtc_module::PerDevice::new("the multi-tensor optimizer kernels");

/// The kernels of device `ordinal`, compiled on first use (`None` when NVRTC or the module load
/// failed: the callers then take the per-tensor kernels).
fn kernels(ordinal: usize) -> Option<Kernels> {
    KERNELS.get(ordinal, compile)
}

fn compile(ordinal: usize) -> Result<Kernels> {
    let names = ["adamw_f32_f32", "adamw_f32_bf16", "adamw_bf16_f32", "adamw_bf16_bf16", "sum_squares_f32", "sum_squares_bf16"];
    let f = nvrtc_module::compile(ordinal, SOURCE, &names)?;
    Ok(Kernels { adamw: [[f[0], f[1]], [f[2], f[3]]], sum_squares: [f[4], f[5]] })
}

/// 0 for f32, 1 for bf16, `None` otherwise.
fn kind(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(0),
        DType::BF16 => Some(1),
        _ => None,
    }
}

fn launch(function: usize, blocks: u32, stream: dsys::CUstream, params: &mut [*mut c_void]) -> Result<()> {
    nvrtc_module::launch(function, blocks, BLOCK, stream, params)
}

/// One AdamW update per `(p, g, m, v)` with every gradient scaled by `scale[0]`, tensor `k`
/// drawing its bf16 rounding bits from `seeds[k]`; the new `(p, m, v)` per tensor and, with
/// `bf16_copies`, the new `p` rounded to bf16 (to nearest, as a cast), or `None`
/// for what this path does not take (a parameter not f32, gradients or moments of mixed dtypes
/// or neither f32 nor bf16, an empty or oversized tensor, no verified stream).
///
/// The outputs are fresh tensors (one allocation each); the inputs are unchanged.
pub(crate) fn adamw(
    items: &[(CubeTensor, CubeTensor, CubeTensor, CubeTensor)],
    scale: &CubeTensor,
    s: &AdamWStep,
    seeds: &[u64],
    bf16_copies: bool,
) -> Result<Option<Vec<Updated>>> {
    let Some(first) = items.first() else { return Ok(None) };
    let (g_kind, m_kind) = (kind(first.1.dtype), kind(first.2.dtype));
    let (Some(gk), Some(mk)) = (g_kind, m_kind) else { return Ok(None) };
    let uniform = items.iter().all(|(p, g, m, v)| {
        let n = p.meta.num_elements();
        p.dtype == DType::F32
            && g.dtype == first.1.dtype
            && m.dtype == first.2.dtype
            && v.dtype == first.2.dtype
            && n > 0
            && n < u32::MAX as usize / 2
            && [g, m, v].iter().all(|t| t.meta.num_elements() == n && t.device == p.device)
    });
    if !uniform || scale.dtype != DType::F32 || scale.meta.num_elements() != 1 || seeds.len() != items.len() {
        return Ok(None);
    }
    let ordinal = cuda_ordinal(&first.0.device)?;
    let Some(kernels) = kernels(ordinal) else { return Ok(None) };
    stream::check_deferred()?;
    let items: Vec<_> = items
        .iter()
        .map(|(p, g, m, v)| (contiguous(p.clone()), contiguous(g.clone()), contiguous(m.clone()), contiguous(v.clone())))
        .collect();
    let scale = contiguous(scale.clone());
    let m_dtype = first.2.dtype;
    let sizes: Vec<u32> = items.iter().map(|(p, ..)| p.meta.num_elements() as u32).collect();
    let client = first.0.client.clone();
    let device = first.0.device.clone();
    let outs: Vec<Updated> = items
        .iter()
        .map(|(p, ..)| {
            let n = p.meta.num_elements();
            let tensor = |dtype: DType| {
                let handle = client.empty(n * dtype.size());
                CubeTensor::new_contiguous(client.clone(), device.clone(), p.meta.shape().clone(), handle, dtype)
            };
            Updated { p: tensor(DType::F32), m: tensor(m_dtype), v: tensor(m_dtype), p_bf16: bf16_copies.then(|| tensor(DType::BF16)) }
        })
        .collect();
    let outputs: Vec<_> = outs
        .iter()
        .map(|u| {
            let bind = |t: &CubeTensor| t.handle.clone().binding();
            (bind(&u.p), bind(&u.m), bind(&u.v), u.p_bf16.as_ref().map(bind))
        })
        .collect();
    let inputs: Vec<_> = items
        .iter()
        .map(|(p, g, m, v)| {
            (p.handle.clone().binding(), g.handle.clone().binding(), m.handle.clone().binding(), v.handle.clone().binding())
        })
        .collect();
    let scale_binding = scale.handle.clone().binding();
    let scalars = Scalars {
        beta1: s.beta1 as f32,
        one_minus_beta1: (1.0 - s.beta1) as f32,
        beta2: s.beta2 as f32,
        one_minus_beta2: (1.0 - s.beta2) as f32,
        bias_correction1: s.bias_correction1 as f32,
        bias_correction2: s.bias_correction2 as f32,
        eps: s.eps as f32,
        decay: (1.0 - s.lr * s.weight_decay) as f32,
        lr: s.lr as f32,
    };
    let seeds = seeds.to_vec();
    let function = kernels.adamw[gk][mk];
    let queued = nvrtc_module::queue(&first.0, &QUEUED, move |server: &mut CudaServer, id, on| {
        let address = |server: &mut CudaServer, binding| nvrtc_module::address(server, binding, id);
        let scale_ptr = address(server, scale_binding)?;
        cublaslt::context(ordinal)?;
        let mut inputs = inputs.into_iter();
        let mut outputs = outputs.into_iter();
        for start in (0..sizes.len()).step_by(GROUP) {
            let end = (start + GROUP).min(sizes.len());
            let mut group = AdamwGroup {
                p: [0; GROUP],
                g: [0; GROUP],
                m: [0; GROUP],
                v: [0; GROUP],
                po: [0; GROUP],
                mo: [0; GROUP],
                vo: [0; GROUP],
                pc: [0; GROUP],
                n: [0; GROUP],
                seed_lo: [0; GROUP],
                seed_hi: [0; GROUP],
                first_block: [0; GROUP + 1],
                count: (end - start) as u32,
            };
            let mut blocks = 0u32;
            for (j, k) in (start..end).enumerate() {
                let (bp, bg, bm, bv) =
                    inputs.next().ok_or_else(|| Error::Cuda { call: "multi-tensor AdamW", reason: "missing input".into() })?;
                group.p[j] = address(server, bp)?;
                group.g[j] = address(server, bg)?;
                group.m[j] = address(server, bm)?;
                group.v[j] = address(server, bv)?;
                let (op, om, ov, oc) =
                    outputs.next().ok_or_else(|| Error::Cuda { call: "multi-tensor AdamW", reason: "missing output".into() })?;
                group.po[j] = address(server, op)?;
                group.mo[j] = address(server, om)?;
                group.vo[j] = address(server, ov)?;
                group.pc[j] = match oc {
                    Some(oc) => address(server, oc)?,
                    None => 0,
                };
                group.n[j] = sizes[k];
                group.seed_lo[j] = seeds[k] as u32;
                group.seed_hi[j] = (seeds[k] >> 32) as u32;
                group.first_block[j] = blocks;
                blocks += sizes[k].div_ceil(BLOCK);
            }
            group.first_block[end - start] = blocks;
            let mut scale_arg = scale_ptr;
            let mut scalars_arg = scalars;
            let mut params: [*mut c_void; 3] =
                [(&mut group as *mut AdamwGroup).cast(), (&mut scale_arg as *mut u64).cast(), (&mut scalars_arg as *mut Scalars).cast()];
            launch(function, blocks, on.sys(), &mut params)?;
        }
        Ok(())
    })?;
    Ok(queued.then_some(outs))
}

/// `Σ‖g‖²` over `grads` as a `[total partial sums]` f32 tensor (sum it for the value): one
/// partial per block of [`NORM_CHUNK`] elements, in a fixed order (deterministic). `None` as
/// for [`adamw`].
pub(crate) fn squared_norm_partials(grads: &[CubeTensor]) -> Result<Option<CubeTensor>> {
    let Some(first) = grads.first() else { return Ok(None) };
    let Some(gk) = kind(first.dtype) else { return Ok(None) };
    if grads.iter().any(|g| {
        g.dtype != first.dtype || g.device != first.device || g.meta.num_elements() == 0 || g.meta.num_elements() >= u32::MAX as usize / 2
    }) {
        return Ok(None);
    }
    let ordinal = cuda_ordinal(&first.device)?;
    let Some(kernels) = kernels(ordinal) else { return Ok(None) };
    let grads: Vec<CubeTensor> = grads.iter().map(|g| contiguous(g.clone())).collect();
    let sizes: Vec<u32> = grads.iter().map(|g| g.meta.num_elements() as u32).collect();
    let total: usize = sizes.iter().map(|&n| n.div_ceil(NORM_CHUNK) as usize).sum();
    let client = first.client.clone();
    let partial = client.empty(total * 4);
    let out = CubeTensor::new_contiguous(client, first.device.clone(), [total].into(), partial.clone(), DType::F32);
    let inputs: Vec<_> = grads.iter().map(|g| g.handle.clone().binding()).collect();
    let partial_binding = partial.binding();
    let function = kernels.sum_squares[gk];
    let queued = nvrtc_module::queue(first, &QUEUED, move |server: &mut CudaServer, id, on| {
        let address = |server: &mut CudaServer, binding| nvrtc_module::address(server, binding, id);
        let mut partial_ptr = address(server, partial_binding)?;
        cublaslt::context(ordinal)?;
        let mut inputs = inputs.into_iter();
        let mut offset = 0u32;
        for start in (0..sizes.len()).step_by(GROUP) {
            let end = (start + GROUP).min(sizes.len());
            let mut group =
                NormGroup { g: [0; GROUP], n: [0; GROUP], first_block: [0; GROUP + 1], count: (end - start) as u32, out_offset: offset };
            let mut blocks = 0u32;
            for (j, k) in (start..end).enumerate() {
                let binding = inputs.next().ok_or_else(|| Error::Cuda { call: "multi-tensor norm", reason: "missing input".into() })?;
                group.g[j] = address(server, binding)?;
                group.n[j] = sizes[k];
                group.first_block[j] = blocks;
                blocks += sizes[k].div_ceil(NORM_CHUNK);
            }
            group.first_block[end - start] = blocks;
            let mut params: [*mut c_void; 2] = [(&mut group as *mut NormGroup).cast(), (&mut partial_ptr as *mut u64).cast()];
            launch(function, blocks, on.sys(), &mut params)?;
            offset += blocks;
        }
        Ok(())
    })?;
    Ok(queued.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_fit_in_the_kernel_parameter_space() {
        // 4 KiB in all: the group, the scale's address and the scalars.
        assert!(std::mem::size_of::<AdamwGroup>() + 8 + std::mem::size_of::<Scalars>() <= 4096);
        assert!(std::mem::size_of::<NormGroup>() + 8 <= 4096);
        assert!(SOURCE.contains(&format!("#define GROUP {GROUP}")) && SOURCE.contains(&format!("#define BLOCK {BLOCK}")));
    }
}
