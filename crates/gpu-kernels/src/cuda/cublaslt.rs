//! cuBLASLt GEMMs on raw device pointers (row-major operands), one handle per device.
//!
//! Row-major `C[M, N] = op(A) · op(B)` is computed as the column-major product
//! `Cᵀ = op(B)ᵀ · op(A)ᵀ`: a row-major `[r, c]` buffer with row stride `ld` is the column-major
//! `c × r` matrix `Xᵀ` with leading dimension `ld`, so cuBLASLt's first operand is our `B` (no
//! transpose when `op(B) = B`), its second our `A`, and its output `N × M` with `ld = N` is `C`.
//!
//! Work runs either on a stream of this module's own (callers order it against burn's stream
//! with host synchronization, see `interop`) or on a stream the caller names (burn's own, see
//! `stream`). Each stream gets its own workspace, so products on different streams never share
//! one. cuBLASLt (`libcublasLt.so.13`) is loaded on first use.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use cudarc::cublaslt::{result as lt, sys as ltsys};
use cudarc::driver::{result as drv, sys as dsys};

use crate::error::{Error, Result};

/// Element types cuBLASLt is asked to multiply (operands and output share it; f32 accumulate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmDType {
    /// bfloat16.
    Bf16,
    /// float16.
    F16,
    /// float32 (full-precision fp32 compute, no TF32).
    F32,
    /// float32 operands and output, products on the tensor cores with the operands rounded to
    /// TF32 (`CUBLAS_COMPUTE_32F_FAST_TF32`), sums in f32.
    Tf32,
}

impl GemmDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            GemmDType::Bf16 | GemmDType::F16 => 2,
            GemmDType::F32 | GemmDType::Tf32 => 4,
        }
    }

    fn cuda(self) -> ltsys::cudaDataType {
        match self {
            GemmDType::Bf16 => ltsys::cudaDataType::CUDA_R_16BF,
            GemmDType::F16 => ltsys::cudaDataType::CUDA_R_16F,
            GemmDType::F32 | GemmDType::Tf32 => ltsys::cudaDataType::CUDA_R_32F,
        }
    }

    fn compute(self) -> ltsys::cublasComputeType_t {
        match self {
            GemmDType::Tf32 => ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            GemmDType::Bf16 | GemmDType::F16 | GemmDType::F32 => ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        }
    }
}

/// One row-major operand: `rows × cols` elements, row `i` starting at `ptr + i · ld` elements.
#[derive(Debug, Clone, Copy)]
pub struct Operand {
    /// Device address of element `[0, 0]`.
    pub ptr: u64,
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Row stride in elements (`≥ cols`).
    pub ld: usize,
}

/// A GEMM `C[M, N] = op(A) · op(B)` on row-major buffers, or `C = op(A) · op(B) + Y` with an
/// addend `Y` (cuBLASLt's `beta = 1`: the sum in f32, rounded once); `C` and `Y` are contiguous. With `batch > 1`
/// it is `batch` independent products, operand `i` starting `i · stride` elements after the
/// first (`stride_a`, `stride_b`; `C`'s matrices follow each other, `M · N` apart).
#[derive(Debug, Clone, Copy)]
pub struct GemmCall {
    /// Left operand as stored.
    pub a: Operand,
    /// Right operand as stored.
    pub b: Operand,
    /// Use `Aᵀ`.
    pub transpose_a: bool,
    /// Use `Bᵀ`.
    pub transpose_b: bool,
    /// Output address (`M · N` contiguous elements).
    pub c: u64,
    /// Address of the addend `Y` (`M · N` contiguous elements of the same dtype), or 0 for none.
    pub addend: u64,
    /// Element type of all three.
    pub dtype: GemmDType,
    /// Number of products (1: a single GEMM).
    pub batch: usize,
    /// Elements between consecutive `A` matrices (unused when `batch == 1`).
    pub stride_a: usize,
    /// Elements between consecutive `B` matrices (unused when `batch == 1`).
    pub stride_b: usize,
}

impl GemmCall {
    /// `(M, N, K)`, checking that the inner dimensions agree.
    pub fn dims(&self) -> Result<(usize, usize, usize)> {
        let (m, ka) = if self.transpose_a { (self.a.cols, self.a.rows) } else { (self.a.rows, self.a.cols) };
        let (kb, n) = if self.transpose_b { (self.b.cols, self.b.rows) } else { (self.b.rows, self.b.cols) };
        if ka != kb {
            return Err(Error::Shape { what: "gemm", reason: format!("inner dimensions differ: op(A) is {m}×{ka}, op(B) is {kb}×{n}") });
        }
        for (name, op) in [("A", self.a), ("B", self.b)] {
            if op.ld < op.cols.max(1) {
                return Err(Error::Shape { what: "gemm", reason: format!("{name}: row stride {} < {} columns", op.ld, op.cols) });
            }
        }
        Ok((m, n, ka))
    }
}

const OP_N: i32 = 0;
const OP_T: i32 = 1;
/// cuBLASLt workspace per device (NVIDIA recommends 32 MiB on Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AlgoKey {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ta: bool,
    tb: bool,
    dtype: GemmDType,
    align: [u32; 3],
    batch: usize,
    strides: [usize; 2],
    accumulate: bool,
}

struct DeviceState {
    ctx: dsys::CUcontext,
    stream: dsys::CUstream,
    handle: ltsys::cublasLtHandle_t,
    /// One workspace per stream (keyed by the stream's address).
    workspaces: HashMap<u64, dsys::CUdeviceptr>,
    plans: HashMap<AlgoKey, Plan>,
}

/// Where a GEMM is enqueued.
#[derive(Debug, Clone, Copy)]
pub enum Queue {
    /// This module's stream; `wait`: block until the GEMM has finished.
    Own {
        /// Wait for the GEMM before returning.
        wait: bool,
    },
    /// A stream of the device's primary context, given by address (never waited for).
    Stream(u64),
}

// SAFETY: the raw handles are only used while the global mutex is held, with the device's
// context made current on the calling thread first; CUDA and cuBLASLt handles may be used from
// any thread under that discipline.
unsafe impl Send for DeviceState {}

fn states() -> &'static Mutex<HashMap<usize, DeviceState>> {
    static STATES: OnceLock<Mutex<HashMap<usize, DeviceState>>> = OnceLock::new();
    STATES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn drv_err(call: &'static str) -> impl Fn(drv::DriverError) -> Error {
    move |e| Error::Cuda { call, reason: format!("{e:?}") }
}

fn lt_err(call: &'static str) -> impl Fn(lt::CublasError) -> Error {
    move |e| Error::Cuda { call, reason: format!("{e:?}") }
}

/// Whether `libcublasLt` can be loaded.
pub fn cublaslt_present() -> bool {
    // SAFETY: only tries to dlopen the library's candidate names.
    unsafe { ltsys::is_culib_present() }
}

impl DeviceState {
    fn new(ordinal: usize) -> Result<Self> {
        if !cublaslt_present() {
            return Err(Error::Cuda {
                call: "dlopen(libcublasLt)",
                reason: "not found on the loader path (add /usr/local/cuda/lib64 to LD_LIBRARY_PATH)".into(),
            });
        }
        drv::init().map_err(drv_err("cuInit"))?;
        let dev = drv::device::get(ordinal as i32).map_err(drv_err("cuDeviceGet"))?;
        // SAFETY: `dev` comes from cuDeviceGet; the primary context is the one cubecl uses.
        let ctx = unsafe { drv::primary_ctx::retain(dev) }.map_err(drv_err("cuDevicePrimaryCtxRetain"))?;
        // SAFETY: `ctx` is a live primary context.
        unsafe { drv::ctx::set_current(ctx) }.map_err(drv_err("cuCtxSetCurrent"))?;
        let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking).map_err(drv_err("cuStreamCreate"))?;
        let handle = lt::create_handle().map_err(lt_err("cublasLtCreate"))?;
        Ok(Self { ctx, stream, handle, workspaces: HashMap::new(), plans: HashMap::new() })
    }

    /// The workspace of `stream` (allocated on first use, kept for the process).
    fn workspace(&mut self, stream: dsys::CUstream) -> Result<dsys::CUdeviceptr> {
        if let Some(&w) = self.workspaces.get(&(stream as u64)) {
            return Ok(w);
        }
        // SAFETY: a plain device allocation in the current context, never freed (one per stream).
        let w = unsafe { drv::malloc_sync(WORKSPACE_BYTES) }.map_err(drv_err("cuMemAlloc"))?;
        self.workspaces.insert(stream as u64, w);
        Ok(w)
    }
}

/// The primary context of device `ordinal` (made current on this thread).
pub(crate) fn context(ordinal: usize) -> Result<dsys::CUcontext> {
    with_device(ordinal, |state| Ok(state.ctx))
}

/// Runs `f` with the device's state, its context current on this thread.
fn with_device<R>(ordinal: usize, f: impl FnOnce(&mut DeviceState) -> Result<R>) -> Result<R> {
    let mut guard = states().lock().map_err(|_| Error::Cuda { call: "gpu-kernels state", reason: "poisoned lock".into() })?;
    let state = match guard.entry(ordinal) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => v.insert(DeviceState::new(ordinal)?),
    };
    // SAFETY: the context was retained when the state was made.
    unsafe { drv::ctx::set_current(state.ctx) }.map_err(drv_err("cuCtxSetCurrent"))?;
    f(state)
}

/// Largest power of two (≤ 256) dividing the byte address.
fn alignment(ptr: u64) -> u32 {
    if ptr == 0 { 256 } else { (1u64 << ptr.trailing_zeros().min(8)) as u32 }
}

struct Layouts {
    items: Vec<ltsys::cublasLtMatrixLayout_t>,
}

impl Drop for Layouts {
    fn drop(&mut self) {
        for &l in &self.items {
            // SAFETY: each layout was created once and is destroyed once.
            let _ = unsafe { lt::destroy_matrix_layout(l) };
        }
    }
}

struct Desc(ltsys::cublasLtMatmulDesc_t);
impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { lt::destroy_matmul_desc(self.0) };
    }
}

struct Pref(ltsys::cublasLtMatmulPreference_t);
impl Drop for Pref {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { lt::destroy_matmul_pref(self.0) };
    }
}

/// A product's cuBLASLt descriptors and chosen algorithm, made once per [`AlgoKey`] (creating
/// and destroying them per call cost host time on the device's runner thread).
struct Plan {
    desc: Desc,
    layouts: Layouts,
    algo: ltsys::cublasLtMatmulAlgo_t,
}

impl Plan {
    fn new(handle: ltsys::cublasLtHandle_t, call: &GemmCall, key: &AlgoKey) -> Result<Self> {
        let (m, n) = (key.m, key.n);
        let align = key.align;
        let dt = call.dtype.cuda();
        let desc = Desc(
            lt::create_matmul_desc(call.dtype.compute(), ltsys::cudaDataType::CUDA_R_32F).map_err(lt_err("cublasLtMatmulDescCreate"))?,
        );
        // cuBLASLt's first operand is B: op = N when op(B) = B (its column-major view is Bᵀ).
        let trans_first = if call.transpose_b { OP_T } else { OP_N };
        let trans_second = if call.transpose_a { OP_T } else { OP_N };
        let set_desc = |attr, v: &i32| {
            // SAFETY: `desc` is live; the attribute takes a 32-bit int.
            unsafe { lt::set_matmul_desc_attribute(desc.0, attr, (v as *const i32).cast::<c_void>(), 4) }
                .map_err(lt_err("cublasLtMatmulDescSetAttribute"))
        };
        set_desc(ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, &trans_first)?;
        set_desc(ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB, &trans_second)?;

        // Stored column-major views: a row-major [r, c] buffer is a c × r matrix with ld.
        let mut layouts = Layouts { items: Vec::with_capacity(3) };
        for (rows, cols, ld) in [(call.b.cols, call.b.rows, call.b.ld), (call.a.cols, call.a.rows, call.a.ld), (n, m, n)] {
            let l = lt::create_matrix_layout(dt, rows as u64, cols as u64, ld as i64).map_err(lt_err("cublasLtMatrixLayoutCreate"))?;
            layouts.items.push(l);
        }
        let [lb, la, lc] = [layouts.items[0], layouts.items[1], layouts.items[2]];
        if call.batch > 1 {
            let count = i32::try_from(call.batch)
                .map_err(|_| Error::Shape { what: "gemm", reason: format!("batch {} exceeds i32", call.batch) })?;
            for (layout, stride) in [(lb, call.stride_b), (la, call.stride_a), (lc, m * n)] {
                let stride = stride as i64;
                // SAFETY: live layouts; the attributes take an i32 and an i64.
                unsafe {
                    lt::set_matrix_layout_attribute(
                        layout,
                        ltsys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                        (&count as *const i32).cast(),
                        4,
                    )
                    .map_err(lt_err("cublasLtMatrixLayoutSetAttribute"))?;
                    lt::set_matrix_layout_attribute(
                        layout,
                        ltsys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                        (&stride as *const i64).cast(),
                        8,
                    )
                    .map_err(lt_err("cublasLtMatrixLayoutSetAttribute"))?;
                }
            }
        }

        let algo = {
            let pref = Pref(lt::create_matmul_pref().map_err(lt_err("cublasLtMatmulPreferenceCreate"))?);
            let ws = WORKSPACE_BYTES as u64;
            let set_pref = |attr, v: *const c_void, size| {
                // SAFETY: `pref` is live and the value has the attribute's size.
                unsafe { lt::set_matmul_pref_attribute(pref.0, attr, v, size) }.map_err(lt_err("cublasLtMatmulPreferenceSetAttribute"))
            };
            set_pref(ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, (&ws as *const u64).cast(), 8)?;
            // Split-K partial sums in f32 only: the in-place and output-type schemes add
            // partials in bf16/f16 (seen on the H200: one bf16 ulp of a partial sum, 0.11 at
            // rms 22, on a 300×512×136 product).
            let reduction = ltsys::cublasLtReductionScheme_t::CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE as u32;
            set_pref(
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                (&reduction as *const u32).cast(),
                4,
            )?;
            for (attr, a) in [
                (ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align[0]),
                (ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align[1]),
                (ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align[2]),
                (ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align[2]),
            ] {
                set_pref(attr, (a as *const u32).cast(), 4)?;
            }
            // SAFETY: all descriptors are live.
            let heuristic = unsafe { lt::get_matmul_algo_heuristic(handle, desc.0, lb, la, lc, lc, pref.0) }
                .map_err(lt_err("cublasLtMatmulAlgoGetHeuristic"))?;
            heuristic.algo
        };
        Ok(Self { desc, layouts, algo })
    }
}

/// Enqueues the GEMM on device `ordinal`, on `queue`.
///
/// # Safety
/// The pointers (three, four with an addend) must address live device allocations of that
/// device's primary context, large enough for the shapes in `call`, the addend must not overlap
/// `c` unless it is `c`, and nothing may write `a`/`b`/the addend or touch `c` until the
/// GEMM has finished: `Queue::Own { wait: true }`, [`synchronize`], or stream order on the
/// named stream. A named stream must be a live stream of the primary context.
pub unsafe fn gemm(ordinal: usize, call: &GemmCall, queue: Queue) -> Result<()> {
    let (m, n, k) = call.dims()?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let align = [alignment(call.b.ptr), alignment(call.a.ptr), alignment(call.c).min(alignment(call.addend))];
    let key = AlgoKey {
        m,
        n,
        k,
        lda: call.a.ld,
        ldb: call.b.ld,
        ta: call.transpose_a,
        tb: call.transpose_b,
        dtype: call.dtype,
        align,
        batch: call.batch,
        strides: [call.stride_a, call.stride_b],
        accumulate: call.addend != 0,
    };
    with_device(ordinal, |state| {
        if !state.plans.contains_key(&key) {
            let plan = Plan::new(state.handle, call, &key)?;
            state.plans.insert(key, plan);
        }
        let plan = &state.plans[&key];
        let (desc, [lb, la, lc], algo) = (plan.desc.0, [plan.layouts.items[0], plan.layouts.items[1], plan.layouts.items[2]], plan.algo);
        let stream = match queue {
            Queue::Own { .. } => state.stream,
            Queue::Stream(s) => s as dsys::CUstream,
        };
        let workspace = state.workspace(stream)?;
        let alpha = 1.0f32;
        let (beta, addend) = if call.addend != 0 { (1.0f32, call.addend) } else { (0.0f32, call.c) };
        // SAFETY: the caller guarantees the buffers; descriptors and workspace are live.
        unsafe {
            lt::matmul(
                state.handle,
                desc,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                call.b.ptr as *const c_void,
                lb,
                call.a.ptr as *const c_void,
                la,
                addend as *const c_void,
                lc,
                call.c as *mut c_void,
                lc,
                &algo,
                workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream as ltsys::cudaStream_t,
            )
        }
        .map_err(lt_err("cublasLtMatmul"))?;
        if let Queue::Own { wait: true } = queue {
            // SAFETY: the stream is live.
            unsafe { drv::stream::synchronize(state.stream) }.map_err(drv_err("cuStreamSynchronize"))?;
        }
        Ok(())
    })
}

/// Waits for everything enqueued on the module's stream of device `ordinal`.
pub fn synchronize(ordinal: usize) -> Result<()> {
    with_device(ordinal, |state| {
        // SAFETY: the stream is live.
        unsafe { drv::stream::synchronize(state.stream) }.map_err(drv_err("cuStreamSynchronize"))
    })
}

/// Times `iters` back-to-back GEMMs on the module's stream with CUDA events; returns the mean
/// milliseconds per GEMM. For benchmarks: the same safety contract as [`gemm`].
///
/// # Safety
/// As for [`gemm`].
pub unsafe fn time_gemm(ordinal: usize, call: &GemmCall, iters: usize) -> Result<f64> {
    // Warm-up (heuristic lookup, first launch).
    // SAFETY: forwarded contract.
    unsafe { gemm(ordinal, call, Queue::Own { wait: true }) }?;
    let (start, stop, stream) = with_device(ordinal, |state| {
        let flags = dsys::CUevent_flags::CU_EVENT_DEFAULT;
        let start = drv::event::create(flags).map_err(drv_err("cuEventCreate"))?;
        let stop = drv::event::create(flags).map_err(drv_err("cuEventCreate"))?;
        Ok((start, stop, state.stream))
    })?;
    // SAFETY: events and stream are live.
    unsafe { drv::event::record(start, stream) }.map_err(drv_err("cuEventRecord"))?;
    for _ in 0..iters {
        // SAFETY: forwarded contract.
        unsafe { gemm(ordinal, call, Queue::Own { wait: false }) }?;
    }
    let ms = with_device(ordinal, |_| {
        // SAFETY: events and stream are live.
        unsafe {
            drv::event::record(stop, stream).map_err(drv_err("cuEventRecord"))?;
            drv::event::synchronize(stop).map_err(drv_err("cuEventSynchronize"))?;
            let ms = drv::event::elapsed(start, stop).map_err(drv_err("cuEventElapsedTime"))?;
            let _ = drv::event::destroy(start);
            let _ = drv::event::destroy(stop);
            Ok(ms)
        }
    })?;
    Ok(f64::from(ms) / iters.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(rows: usize, cols: usize) -> Operand {
        Operand { ptr: 0, rows, cols, ld: cols }
    }

    #[test]
    fn dims_follow_the_transposes() {
        let call = |a, b, ta, tb| GemmCall {
            a,
            b,
            transpose_a: ta,
            transpose_b: tb,
            c: 0,
            addend: 0,
            dtype: GemmDType::Bf16,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
        };
        assert_eq!(call(op(4, 3), op(5, 3), false, true).dims().ok(), Some((4, 5, 3)));
        assert_eq!(call(op(3, 4), op(3, 5), true, false).dims().ok(), Some((4, 5, 3)));
        assert_eq!(call(op(4, 3), op(3, 5), false, false).dims().ok(), Some((4, 5, 3)));
        assert!(matches!(call(op(4, 3), op(4, 5), false, false).dims(), Err(Error::Shape { .. })));
        let short = Operand { ld: 2, ..op(4, 3) };
        assert!(matches!(call(short, op(3, 5), false, false).dims(), Err(Error::Shape { .. })));
    }

    #[test]
    fn alignment_is_the_largest_power_of_two_up_to_256() {
        assert_eq!(alignment(0x1000), 256);
        assert_eq!(alignment(0x1002), 2);
        assert_eq!(alignment(0x1010), 16);
    }
}
