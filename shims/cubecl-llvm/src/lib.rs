//! Offline stand-in for `cubecl-llvm` 0.11.3.
//!
//! `cubecl-cuda` 0.11.3 always links `cubecl-llvm` (feature `nvptx`) for its second kernel
//! compiler, and the real crate's build script downloads a prebuilt LLVM, which an offline
//! machine cannot do. This crate re-implements, from their signatures, only the items
//! `cubecl-cuda` names:
//!
//! - [`nvptx::ptx_version::PtxVersion`] (`for_driver`, `Display`),
//! - [`shared::lowered_features::{GpuTarget, restrict_features}`](shared::lowered_features),
//! - [`PlironCompiler`], [`PlironOptions`], [`PlironArtifact`], [`NvptxModule`], [`LlvmTarget`].
//!
//! # Invariant
//! Nothing here compiles a kernel. With `cubecl-cuda`'s `cpp` feature on, NVRTC is the compiler
//! that runs and none of this is reached except [`PtxVersion::for_driver`] (a cache-key detail).
//! If the LLVM backend is ever selected, [`PlironCompiler::compile`] returns a
//! [`CompilationError`] that says so, at the first kernel launch.

#![warn(missing_docs)]

use cubecl_core::ir::DeviceProperties;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_runtime::compiler::{CompilationError, Compiler};
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};

/// The message every LLVM entry point answers with.
pub const NO_LLVM: &str = "cubecl-llvm is replaced by an offline shim in this build (no LLVM): \
     enable cubecl-cuda's `cpp` feature so that NVRTC compiles the kernels";

/// Where a compiled kernel would run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LlvmTarget {
    /// The host CPU (the real crate's default).
    #[default]
    Cpu,
    /// NVIDIA GPUs through PTX.
    Nvptx,
}

impl LlvmTarget {
    /// Whether the target provides a hardware launch grid.
    pub fn is_gpu(self) -> bool {
        !matches!(self, LlvmTarget::Cpu)
    }
}

/// Options of the LLVM backend; accepted and ignored.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// Minimum CPU buffer alignment (ignored).
    pub cpu_buffer_alignment: Option<u32>,
    /// An AMD GPU architecture name; always `None` from `cubecl-cuda` (ignored).
    pub arch: Option<String>,
    /// The NVIDIA architecture (ignored).
    pub sm_arch: Option<SmArch>,
    /// The PTX version to emit (ignored).
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Whether kernel parameters are `__grid_constant__` (ignored).
    pub grid_constants: bool,
}

/// A PTX module as the real backend returns it. Never built here.
#[derive(Clone, Debug, Default)]
pub struct NvptxModule {
    /// NUL-terminated PTX text.
    pub ptx: Vec<core::ffi::c_char>,
    /// The kernel's entry point.
    pub entrypoint: String,
    /// The IR, for logs and cache keys.
    pub ir: String,
    /// Dynamic shared memory each launch reserves, in bytes.
    pub shared_memory_size: usize,
    /// What the kernel does with each buffer, in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM backend produces.
#[derive(Debug)]
pub enum PlironArtifact {
    /// PTX for the CUDA driver.
    NvptxCode(NvptxModule),
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

/// The LLVM kernel compiler; every compilation fails with [`NO_LLVM`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PlironCompiler {
    /// The target it would compile for.
    pub target: LlvmTarget,
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        drop(kernel);
        Err(CompilationError::Generic {
            reason: NO_LLVM.to_string(),
            backtrace: cubecl_environment::backtrace::BackTrace::capture(),
        })
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match repr {
            PlironArtifact::NvptxCode(module) => Some(module.io.clone()),
        }
    }

    fn extension(&self) -> &'static str {
        "ll"
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "mlir",
            LlvmTarget::Nvptx => "llvm",
        }
    }
}

/// NVPTX-specific items.
pub mod nvptx {
    /// The PTX ISA version a driver accepts.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version written as `10 · major + minor` (PTX 9.0 is `90`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// The newest PTX ISA a CUDA driver of version `driver` (`cuDriverGetVersion`'s
            /// `1000 · major + 10 · minor`, e.g. `13000`) loads, or `None` before CUDA 10.0.
            ///
            /// From NVIDIA's PTX ISA release notes: CUDA 10.x → 6.3 + x, 11.x → 7.x,
            /// 12.0–12.5 → 8.x, 12.6 → 8.5, 12.8 → 8.7, 12.9 → 8.8, 13.x → 9.x.
            pub fn for_driver(driver: i32) -> Option<Self> {
                if driver < 10_000 {
                    return None;
                }
                let major = driver / 1000;
                let minor = (driver % 1000) / 10;
                let isa = match major {
                    10 => 63 + minor.min(2),
                    11 => 70 + minor.min(8),
                    12 => match minor {
                        0..=5 => 80 + minor,
                        6 | 7 => 85,
                        8 => 87,
                        _ => 88,
                    },
                    _ => 90 + minor.min(9),
                };
                u32::try_from(isa).ok().map(Self)
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }

        #[cfg(test)]
        mod tests {
            use super::PtxVersion;

            #[test]
            fn drivers_map_to_their_ptx_isa() {
                let isa = |d| PtxVersion::for_driver(d).map(|v| v.to_string());
                assert_eq!(isa(9_020), None);
                assert_eq!(isa(11_040).as_deref(), Some("ptx74"));
                assert_eq!(isa(12_040).as_deref(), Some("ptx84"));
                assert_eq!(isa(12_060).as_deref(), Some("ptx85"));
                assert_eq!(isa(12_080).as_deref(), Some("ptx87"));
                assert_eq!(isa(13_000).as_deref(), Some("ptx90"));
            }
        }
    }
}

/// Items shared by the real crate's GPU targets.
pub mod shared {
    /// Narrowing a device's advertised features to what the LLVM backend lowers.
    pub mod lowered_features {
        use super::super::DeviceProperties;

        /// A GPU target of the LLVM backend.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            /// NVIDIA PTX.
            Nvptx,
        }

        /// Leaves `props` unchanged: with no LLVM backend, no kernel is ever lowered through it,
        /// so there is nothing to narrow (`cubecl-cuda` calls this only when that backend is
        /// selected, and then every compilation fails anyway).
        pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
            let _ = (props, target);
        }
    }
}
