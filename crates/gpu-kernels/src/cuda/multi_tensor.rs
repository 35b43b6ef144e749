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
//! AdamW writes fresh tensors, each a 256-byte-aligned slice of one buffer per kind (parameters,
//! first and second moments): three allocations per step instead of three per tensor (1,344 for
//! Llama-3-8B r64 all-linear). The launches are queued on burn's stream (`stream::enqueue`),
//! where the runner thread turns the handles into addresses; without a verified stream, `None`
//! (the caller takes the per-tensor path).

use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl_runtime::server::ServerStorage;
use cudarc::driver::{result as drv, sys as dsys};
use cudarc::nvrtc::result as nvrtc;

use super::cublaslt;
use super::interop::{contiguous, cuda_ordinal};
use super::stream::{self, CudaServer};
use crate::error::{Error, Result};
use crate::optim::AdamWStep;

/// Tensors per launch (keeps [`AdamwGroup`] under CUDA's 4 KiB of kernel parameters).
const GROUP: usize = 48;
/// Threads per block; AdamW takes one element per thread.
const BLOCK: u32 = 256;
/// Elements each norm block sums (16 per thread).
const NORM_CHUNK: u32 = BLOCK * 16;

const SOURCE: &str = r#"
#define GROUP 48
#define BLOCK 256
#define NORM_CHUNK (BLOCK * 16)
struct AdamwGroup {
    unsigned long long p[GROUP], g[GROUP], m[GROUP], v[GROUP], po[GROUP], mo[GROUP], vo[GROUP];
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
    ((float*)a.po[t])[i] = pi - mi / s.bias_correction1 / denom * s.lr;
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

/// Updates and norms queued on this path so far (so tests can tell it from the fallback).
static QUEUED: AtomicU64 = AtomicU64::new(0);

/// How many multi-tensor AdamW updates and norms were queued in this process.
pub fn multi_tensor_calls() -> u64 {
    QUEUED.load(Ordering::Relaxed)
}

static KERNELS: Mutex<Option<HashMap<usize, Option<Kernels>>>> = Mutex::new(None);

/// The kernels of device `ordinal`, compiled on first use (`None`, with one warning, when NVRTC
/// or the module load fails: the callers then take the per-tensor kernels).
fn kernels(ordinal: usize) -> Option<Kernels> {
    let mut guard = KERNELS.lock().ok()?;
    let map = guard.get_or_insert_with(HashMap::new);
    *map.entry(ordinal).or_insert_with(|| match compile(ordinal) {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("gpu-kernels: the multi-tensor optimizer kernels are off on CUDA device {ordinal}: {e}");
            None
        }
    })
}

fn compile(ordinal: usize) -> Result<Kernels> {
    let nv = |call: &'static str| move |e: nvrtc::NvrtcError| Error::Cuda { call, reason: format!("{e:?}") };
    let dv = |call: &'static str| move |e: drv::DriverError| Error::Cuda { call, reason: format!("{e:?}") };
    // The primary context current on this thread (as cuBLASLt's calls have it).
    cublaslt::context(ordinal)?;
    let device = drv::device::get(ordinal as i32).map_err(dv("cuDeviceGet"))?;
    let attribute = |a| {
        // SAFETY: a valid device ordinal's handle and a plain attribute query.
        unsafe { drv::device::get_attribute(device, a) }.map_err(dv("cuDeviceGetAttribute"))
    };
    let major = attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let source = CString::new(SOURCE).map_err(|e| Error::Cuda { call: "kernel source", reason: e.to_string() })?;
    let program = nvrtc::create_program(&source, None).map_err(nv("nvrtcCreateProgram"))?;
    let options = [format!("--gpu-architecture=compute_{major}{minor}"), "--std=c++17".to_string()];
    // SAFETY: `program` was just created and is destroyed below, once.
    let compiled = unsafe { nvrtc::compile_program(program, &options) };
    let ptx = match compiled {
        // SAFETY: as above; the program compiled.
        Ok(()) => unsafe { nvrtc::get_ptx(program) }.map_err(nv("nvrtcGetPTX")),
        Err(e) => {
            // SAFETY: as above.
            let log = unsafe { nvrtc::get_program_log(program) }.unwrap_or_default();
            let log: String = log.iter().map(|&c| c as u8 as char).collect();
            Err(Error::Cuda { call: "nvrtcCompileProgram", reason: format!("{e:?}: {log}") })
        }
    };
    // SAFETY: created above, not destroyed before.
    let _ = unsafe { nvrtc::destroy_program(program) };
    let ptx = ptx?;
    // SAFETY: a NUL-terminated PTX image (NVRTC's output includes the terminator).
    let module = unsafe { drv::module::load_data(ptx.as_ptr() as *const c_void) }.map_err(dv("cuModuleLoadData"))?;
    let function = |name: &str| -> Result<usize> {
        let name = CString::new(name).map_err(|e| Error::Cuda { call: "kernel name", reason: e.to_string() })?;
        // SAFETY: the module was loaded above and is never unloaded.
        Ok(unsafe { drv::module::get_function(module, name) }.map_err(dv("cuModuleGetFunction"))? as usize)
    };
    Ok(Kernels {
        adamw: [[function("adamw_f32_f32")?, function("adamw_f32_bf16")?], [function("adamw_bf16_f32")?, function("adamw_bf16_bf16")?]],
        sum_squares: [function("sum_squares_f32")?, function("sum_squares_bf16")?],
    })
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
    // SAFETY: `function` is a kernel of the current context whose parameters are, in order, the
    // values `params` point to (checked layouts above); the stream belongs to that context.
    unsafe { drv::launch_kernel(function as dsys::CUfunction, (blocks, 1, 1), (BLOCK, 1, 1), 0, stream, params) }
        .map_err(|e| Error::Cuda { call: "cuLaunchKernel (multi-tensor)", reason: format!("{e:?}") })
}

/// The device address of `binding` (on the runner thread, inside a queued task).
fn address(server: &mut CudaServer, binding: cubecl::server::BufferBinding, id: cubecl_environment::stream::StreamId) -> Result<u64> {
    server
        .get_resource(binding, id)
        .map(|r| r.resource().ptr)
        .map_err(|e| Error::Cuda { call: "cubecl get_resource", reason: format!("{e:?}") })
}

/// Byte offsets of consecutive tensors in one buffer, each start 256-byte aligned, and the
/// buffer's size.
fn pack(bytes: impl Iterator<Item = usize>) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut total = 0usize;
    for b in bytes {
        offsets.push(total);
        total += b.next_multiple_of(256);
    }
    (offsets, total)
}

/// One AdamW update per `(p, g, m, v)` with every gradient scaled by `scale[0]`, tensor `k`
/// drawing its bf16 rounding bits from `seeds[k]`; the new `(p, m, v)` per tensor, or `None`
/// for what this path does not take (a parameter not f32, gradients or moments of mixed dtypes
/// or neither f32 nor bf16, an empty or oversized tensor, no verified stream).
///
/// The outputs are fresh tensors, slices of one buffer per kind ([`pack`]); the inputs are
/// unchanged.
pub(crate) fn adamw(
    items: &[(CubeTensor, CubeTensor, CubeTensor, CubeTensor)],
    scale: &CubeTensor,
    s: &AdamWStep,
    seeds: &[u64],
) -> Result<Option<Vec<(CubeTensor, CubeTensor, CubeTensor)>>> {
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
    let (p_offsets, p_total) = pack(sizes.iter().map(|&n| n as usize * 4));
    let (m_offsets, m_total) = pack(sizes.iter().map(|&n| n as usize * m_dtype.size()));
    let client = first.0.client.clone();
    let device = first.0.device.clone();
    let (po, mo, vo) = (client.empty(p_total), client.empty(m_total), client.empty(m_total));
    let slice = |handle: &cubecl::server::Handle, total: usize, offset: usize, bytes: usize| {
        handle.clone().offset_start(offset as u64).offset_end((total - offset - bytes) as u64)
    };
    let outs: Vec<(CubeTensor, CubeTensor, CubeTensor)> = items
        .iter()
        .enumerate()
        .map(|(k, (p, ..))| {
            let n = sizes[k] as usize;
            let shape = p.meta.shape().clone();
            let tensor = |h, dtype| CubeTensor::new_contiguous(client.clone(), device.clone(), shape.clone(), h, dtype);
            let m_bytes = n * m_dtype.size();
            (
                tensor(slice(&po, p_total, p_offsets[k], n * 4), DType::F32),
                tensor(slice(&mo, m_total, m_offsets[k], m_bytes), m_dtype),
                tensor(slice(&vo, m_total, m_offsets[k], m_bytes), m_dtype),
            )
        })
        .collect();
    let inputs: Vec<_> = items
        .iter()
        .map(|(p, g, m, v)| {
            (p.handle.clone().binding(), g.handle.clone().binding(), m.handle.clone().binding(), v.handle.clone().binding())
        })
        .collect();
    let flat = [po.binding(), mo.binding(), vo.binding()];
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
    let queued = stream::enqueue(&first.0, move |server: &mut CudaServer, id, on| {
        let run = || -> Result<()> {
            let address = |server: &mut CudaServer, binding| address(server, binding, id);
            let [bp, bm, bv] = flat;
            let (base_p, base_m, base_v) = (address(server, bp)?, address(server, bm)?, address(server, bv)?);
            let scale_ptr = address(server, scale_binding)?;
            cublaslt::context(ordinal)?;
            let mut inputs = inputs.into_iter();
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
                    group.po[j] = base_p + p_offsets[k] as u64;
                    group.mo[j] = base_m + m_offsets[k] as u64;
                    group.vo[j] = base_v + m_offsets[k] as u64;
                    group.n[j] = sizes[k];
                    group.seed_lo[j] = seeds[k] as u32;
                    group.seed_hi[j] = (seeds[k] >> 32) as u32;
                    group.first_block[j] = blocks;
                    blocks += sizes[k].div_ceil(BLOCK);
                }
                group.first_block[end - start] = blocks;
                let mut scale_arg = scale_ptr;
                let mut scalars_arg = scalars;
                let mut params: [*mut c_void; 3] = [
                    (&mut group as *mut AdamwGroup).cast(),
                    (&mut scale_arg as *mut u64).cast(),
                    (&mut scalars_arg as *mut Scalars).cast(),
                ];
                launch(function, blocks, on.sys(), &mut params)?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            stream::defer_error(e);
        }
    })?;
    if queued {
        QUEUED.fetch_add(1, Ordering::Relaxed);
    }
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
    let queued = stream::enqueue(first, move |server: &mut CudaServer, id, on| {
        let run = || -> Result<()> {
            let address = |server: &mut CudaServer, binding| address(server, binding, id);
            let mut partial_ptr = address(server, partial_binding)?;
            cublaslt::context(ordinal)?;
            let mut inputs = inputs.into_iter();
            let mut offset = 0u32;
            for start in (0..sizes.len()).step_by(GROUP) {
                let end = (start + GROUP).min(sizes.len());
                let mut group = NormGroup {
                    g: [0; GROUP],
                    n: [0; GROUP],
                    first_block: [0; GROUP + 1],
                    count: (end - start) as u32,
                    out_offset: offset,
                };
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
        };
        if let Err(e) = run() {
            stream::defer_error(e);
        }
    })?;
    if queued {
        QUEUED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(queued.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_pack_at_aligned_offsets() {
        let (offsets, total) = pack([100, 256, 257, 10].into_iter());
        assert_eq!((offsets, total), (vec![0, 256, 512, 1024], 1280));
    }

    #[test]
    fn groups_fit_in_the_kernel_parameter_space() {
        // 4 KiB in all: the group, the scale's address and the scalars.
        assert!(std::mem::size_of::<AdamwGroup>() + 8 + std::mem::size_of::<Scalars>() <= 4096);
        assert!(std::mem::size_of::<NormGroup>() + 8 <= 4096);
        assert!(SOURCE.contains(&format!("#define GROUP {GROUP}")) && SOURCE.contains(&format!("#define BLOCK {BLOCK}")));
    }
}
