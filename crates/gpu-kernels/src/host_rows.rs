//! Rows of a `[vocab, d]` table held in host memory, gathered by the device ([`HostRows`]).
//!
//! On CUDA the table's pages are pinned and mapped into the device's address space once, and a
//! kernel copies row `ids[b, i]` to `[b, i, :]` of a fresh `[batch, len, d]` tensor over the
//! bus, queued behind the ids on burn's stream — the ids are never read back and the host does
//! no per-row work. Elsewhere there is nothing to map ([`HostRows::map`] gives `None`) and the
//! caller gathers on the host.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A host table the device reads rows of (CUDA only; see the module docs).
#[derive(Debug)]
pub struct HostRows {
    #[cfg(feature = "cuda")]
    mapped: crate::cuda::host_rows::MappedTable,
    #[cfg(feature = "cuda")]
    device: Device,
}

impl HostRows {
    /// Maps `data` (`[vocab, d]`, its rows a multiple of 16 bytes, 16-byte aligned) for lookups
    /// on `device`; `None` off CUDA, for another layout, or when the driver refuses to pin the
    /// pages (with one warning naming the reason).
    pub fn map(data: Arc<TensorData>, device: &Device) -> Option<Self> {
        #[cfg(feature = "cuda")]
        if let Some(ordinal) = crate::gemm::cuda_index(device) {
            return match crate::cuda::host_rows::MappedTable::register(data, ordinal) {
                Ok(mapped) => mapped.map(|mapped| Self { mapped, device: device.clone() }),
                Err(e) => {
                    eprintln!("gpu-kernels: embedding rows are gathered on the host: {e}");
                    None
                }
            };
        }
        let _ = (data, device);
        None
    }

    /// `[batch, len, d]` rows `ids[b, i]` of the table in its dtype on the mapped device (an
    /// autodiff tensor, with the device's checkpointing strategy, when the device is one);
    /// `None` when the ids are elsewhere or the kernel cannot be queued — gather on the host
    /// then. An id outside `0..vocab` gives a row of zeros: validate ids first.
    ///
    /// # Shapes
    /// - ids: `[batch, len]` → `[batch, len, d]`
    pub fn gather(&self, ids: &Tensor<2, Int>) -> Option<Tensor<3>> {
        #[cfg(feature = "cuda")]
        {
            type B = burn_cubecl::CubeBackend;
            let prim = ids.clone().without_autodiff().try_into_primitive::<B>().ok()?;
            let rows = match self.mapped.gather(&prim) {
                Ok(rows) => rows?,
                Err(e) => {
                    eprintln!("gpu-kernels: an embedding gather fell back to the host: {e}");
                    return None;
                }
            };
            let t = Tensor::<3>::from_primitive::<B>(rows);
            // An autodiff device always has a checkpointing strategy.
            Some(match self.device.gradient_checkpointing_strategy() {
                Some(strategy) => t.autodiff().with_gradient_checkpointing_strategy(strategy),
                None => t,
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ids;
            None
        }
    }
}
