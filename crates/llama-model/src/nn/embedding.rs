//! Token embeddings: row `id` of a `[vocab, d]` table for every token id, with the table on the
//! model's device or in host memory.
//!
//! The host table serves training, where the frozen embeddings are read once per step: the rows
//! of the step's `batch · len` ids are gathered on the host and only that `[batch, len, d]`
//! block is uploaded, so the table (`vocab · d` elements, 1 GiB in bf16 for Llama-3-8B) never
//! takes device memory. Both give the same values: the host rows are the table's own bytes.
//!
//! On CUDA the host table is pinned and mapped into the device's address space at load
//! (`gpu_kernels::HostRows`), and the device gathers the rows itself, behind the ids on the
//! stream: no read-back of the ids, no host gather, no upload of the block
//! (`KINDLING_EMBED=host-gather` keeps the host's gather, to compare).

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gpu_kernels::HostRows;
use gpu_kernels::env_switch::EnvSwitch;

/// `KINDLING_EMBED=host-gather`: the host gathers the rows even where the device could.
static HOST_GATHER: EnvSwitch = EnvSwitch::new("KINDLING_EMBED", "host-gather");

/// A `[vocab, d]` table held in host memory for a device.
#[derive(Debug, Clone)]
pub struct HostTable {
    data: Arc<TensorData>,
    device: Device,
    /// The same pages mapped for the device's own gathers, where it can (CUDA).
    mapped: Option<Arc<HostRows>>,
}

/// The token-embedding table, looked up by id.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// `[vocab, d]` on the device, or `None` when the table is in host memory.
    pub weight: Option<Param<Tensor<2>>>,
    #[module(skip)]
    host: Option<HostTable>,
}

/// Where the table lives.
enum Table<'a> {
    Device(&'a Param<Tensor<2>>),
    Host(&'a HostTable),
}

impl TokenEmbedding {
    fn table(&self) -> Table<'_> {
        match (&self.weight, &self.host) {
            (Some(w), _) => Table::Device(w),
            (None, Some(h)) => Table::Host(h),
            (None, None) => unreachable!("a token embedding holds its table on the device or the host"),
        }
    }

    /// A table on the device.
    ///
    /// # Shapes
    /// - weight: `[vocab, d]`
    pub fn new(weight: Tensor<2>) -> Self {
        Self { weight: Some(Param::from_tensor(weight)), host: None }
    }

    /// A table kept in host memory for lookups on `device`.
    ///
    /// # Panics
    /// If `data` is not 2-D.
    pub fn host(data: TensorData, device: &Device) -> Self {
        assert_eq!(data.shape().num_dims(), 2, "token embeddings: a [vocab, d] table");
        let data = Arc::new(data);
        let mapped = if HOST_GATHER.is_on() { None } else { HostRows::map(data.clone(), device).map(Arc::new) };
        Self { weight: None, host: Some(HostTable { data, device: device.clone(), mapped }) }
    }

    /// The device the looked-up rows land on.
    pub fn device(&self) -> Device {
        match self.table() {
            Table::Device(w) => w.device(),
            Table::Host(h) => h.device.clone(),
        }
    }

    /// The rows' dtype.
    pub fn dtype(&self) -> DType {
        match self.table() {
            Table::Device(w) => w.val().dtype(),
            Table::Host(h) => h.data.dtype(),
        }
    }

    /// `[vocab, d]`.
    pub fn dims(&self) -> [usize; 2] {
        match self.table() {
            Table::Device(w) => w.val().dims(),
            Table::Host(h) => {
                let s = h.data.shape();
                [s[0], s[1]]
            }
        }
    }

    /// Whether the table is in host memory.
    pub fn is_host(&self) -> bool {
        self.weight.is_none()
    }

    /// The table on the device, when it lives there.
    pub fn device_weight(&self) -> Option<Tensor<2>> {
        self.weight.as_ref().map(Param::val)
    }

    /// The whole table as host data (a device read for a device table).
    pub fn to_data(&self) -> TensorData {
        match self.table() {
            Table::Device(w) => w.val().into_data(),
            Table::Host(h) => (*h.data).clone(),
        }
    }

    /// Row `tokens[b, i]` of the table at `[b, i, :]`.
    ///
    /// # Shapes
    /// - tokens: `[batch, len]` → `[batch, len, d]`
    ///
    /// # Panics
    /// If an id is negative or not below `vocab` (host table gathered on the host; a device
    /// table's behaviour for such ids is the backend's, a mapped host table's a row of zeros).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self.table() {
            Table::Device(w) => burn::tensor::module::embedding(w.val(), tokens),
            Table::Host(h) => {
                if let Some(rows) = h.mapped.as_ref().and_then(|m| m.gather(&tokens)) {
                    return rows;
                }
                let [batch, len] = tokens.dims();
                let ids = tokens.into_data().convert::<i64>();
                let ids = ids.as_slice::<i64>().expect("i64 ids after conversion");
                let data = gather_rows(&h.data, ids, [batch, len]);
                let dtype = data.dtype();
                Tensor::from_data(data, (&h.device, dtype))
            }
        }
    }
}

/// Rows `ids` of the row-major `[vocab, d]` `table` as `[batch, len, d]` data of its dtype (the
/// rows' bytes copied as they are).
///
/// # Panics
/// If an id is outside `0..vocab` or `ids` does not hold `batch · len` entries.
fn gather_rows(table: &TensorData, ids: &[i64], [batch, len]: [usize; 2]) -> TensorData {
    assert_eq!(ids.len(), batch * len, "token embeddings: {} ids for [{batch}, {len}]", ids.len());
    let (vocab, d) = (table.shape()[0], table.shape()[1]);
    let row = d * table.dtype().size();
    let bytes = table.as_bytes();
    let mut out = Vec::with_capacity(ids.len() * row);
    for (k, &id) in ids.iter().enumerate() {
        let i = usize::try_from(id).ok().filter(|&i| i < vocab);
        let Some(i) = i else { panic!("token embeddings: id {id} at position {k} is outside the vocabulary of {vocab}") };
        out.extend_from_slice(&bytes[i * row..(i + 1) * row]);
    }
    TensorData::from_bytes_vec(out, [batch, len, d], table.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dtype: DType) -> TensorData {
        let values: Vec<f32> = (0..5 * 3).map(|i| i as f32 * 0.37 - 2.0).collect();
        TensorData::new(values, [5, 3]).convert_dtype(dtype)
    }

    #[test]
    fn host_rows_equal_the_device_lookup() {
        let d = Device::flex();
        for dtype in [DType::F32, DType::BF16] {
            let data = table(dtype);
            let device = TokenEmbedding::new(Tensor::from_data(data.clone(), (&d, dtype)));
            let host = TokenEmbedding::host(data, &d);
            let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![4i64, 0, 2, 2, 1, 3], [2, 3]), &d);
            let a = device.forward(ids.clone()).into_data();
            let b = host.forward(ids).into_data();
            assert_eq!(a.shape(), b.shape());
            assert_eq!(a.dtype(), dtype);
            assert_eq!(a.as_bytes(), b.as_bytes(), "{dtype:?}");
            assert_eq!((host.dims(), host.dtype(), host.is_host()), ([5, 3], dtype, true));
            assert_eq!(host.to_data().as_bytes(), device.to_data().as_bytes());
        }
    }

    #[test]
    #[should_panic(expected = "id 5 at position 1 is outside the vocabulary of 5")]
    fn host_lookup_names_an_id_outside_the_vocabulary() {
        let d = Device::flex();
        let host = TokenEmbedding::host(table(DType::F32), &d);
        let _ = host.forward(Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5], [1, 2]), &d));
    }
}
