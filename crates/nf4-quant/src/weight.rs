//! [`Nf4Weight`]: the packed weight of an [`crate::Nf4Linear`] as a parameter-free burn module.
//!
//! burn's `#[derive(Module)]` needs every field to be a module; this one holds the packed bytes
//! (host `Arc<Nf4Tensor>` or device tensors) and implements `Module` by hand: moved by
//! `to_device`/`fork`, invisible to visitors and mappers (so optimizers, `freeze`/`unfreeze`
//! and records never see it).

use std::sync::Arc;

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::tensor::{Device, FloatDType, Tensor};

use crate::dequant::host_dense;
use crate::device::DeviceNf4Tensor;
use crate::tensor::Nf4Tensor;

#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// Packed bytes in host memory; dense weights are decoded by the codec and uploaded to `device`.
    Host { tensor: Arc<Nf4Tensor>, device: Device },
    /// Packed bytes on the device.
    Device(Box<DeviceNf4Tensor>),
}

/// The packed weight of an [`crate::Nf4Linear`]: a module with no parameters, moved by
/// `to_device`/`fork` like the tensors of any module, never visited by optimizers.
#[derive(Debug, Clone)]
pub struct Nf4Weight {
    pub(crate) storage: Storage,
    pub(crate) shape: [usize; 2],
    pub(crate) compute_dtype: FloatDType,
}

impl Nf4Weight {
    pub(crate) fn device(&self) -> Device {
        match &self.storage {
            Storage::Host { device, .. } => device.clone(),
            Storage::Device(d) => d.device(),
        }
    }

    fn moved(self, device: &Device) -> Self {
        let storage = match self.storage {
            Storage::Host { tensor, .. } => Storage::Host { tensor, device: device.clone().without_autodiff() },
            Storage::Device(d) => Storage::Device(Box::new(d.to_device(device))),
        };
        Self { storage, ..self }
    }

    /// The dense `[out, in]` weight in the compute dtype, on `device`, without autodiff.
    pub(crate) fn dense(&self, device: &Device) -> Tensor<2> {
        match &self.storage {
            Storage::Host { tensor, .. } => host_dense(tensor, self.shape, device, self.compute_dtype),
            Storage::Device(d) => d.dense(device, self.compute_dtype),
        }
    }
}

impl Module for Nf4Weight {
    fn collect_devices(&self, mut devices: Devices) -> Devices {
        let device = self.device();
        if !devices.contains(&device) {
            devices.push(device);
        }
        devices
    }

    fn fork(self, device: &Device) -> Self {
        self.moved(device)
    }

    fn to_device(self, device: &Device) -> Self {
        self.moved(device)
    }

    fn train(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, _visitor: &mut V) {}

    fn map<M: ModuleMapper>(self, _mapper: &mut M) -> Self {
        self
    }
}

impl ModuleDisplayDefault for Nf4Weight {
    fn content(&self, content: Content) -> Option<Content> {
        let path = match self.storage {
            Storage::Host { .. } => "host",
            Storage::Device(_) => "device",
        };
        content.add_formatted(&format!("Nf4Weight {{ shape: {:?}, dequant: {path} }}", self.shape)).optional()
    }
}

impl ModuleDisplay for Nf4Weight {}
