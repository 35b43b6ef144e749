//! Data parallelism: every rank holds the whole (frozen, packed) model and its own adapter copy,
//! trains on its shard of each global batch, and the adapter gradients are summed across ranks
//! before identical optimizer steps.
//!
//! With per-rank loss `Σ_shard ℓ / N_global` (`N_global` = loss tokens of the global batch,
//! which every rank can count since all ranks know the global batch), the all-reduced sum of
//! the ranks' gradients is exactly the gradient of the global batch's mean loss, so `n` ranks at
//! batch `b` train the same adapter as one rank at batch `n·b`.

use std::sync::{Arc, Condvar, Mutex};

use burn::tensor::{Tensor, TensorData};

use crate::{Error, Result};

/// How ranks exchange gradients.
pub trait Collective: Send {
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// This rank (0-based); rank 0 writes logs and checkpoints.
    fn rank(&self) -> usize;
    /// The element-wise sum of each tensor over all ranks (every rank gets the same result).
    ///
    /// # Errors
    /// A failed exchange.
    fn all_reduce_sum(&mut self, tensors: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>>;
}

/// One rank: nothing to exchange.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn world_size(&self) -> usize {
        1
    }
    fn rank(&self) -> usize {
        0
    }
    fn all_reduce_sum(&mut self, tensors: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>> {
        Ok(tensors)
    }
}

#[derive(Default)]
struct Round {
    /// Contributions of this round, by rank.
    parts: Vec<Option<Vec<Vec<f32>>>>,
    /// The summed result, once every rank contributed.
    result: Option<Arc<Vec<Vec<f32>>>>,
    /// Ranks that have read the result.
    taken: usize,
    generation: u64,
    /// Ranks that left the group (finished or failed); a reduction can no longer complete.
    departed: usize,
}

/// Ranks on threads of one process, exchanging through host memory (sums taken in rank order,
/// so the result does not depend on arrival order). For tests and for devices of one host
/// without a collective library.
pub struct ThreadRank {
    rank: usize,
    world: usize,
    shared: Arc<(Mutex<Round>, Condvar)>,
}

impl ThreadRank {
    /// `world` connected ranks.
    pub fn group(world: usize) -> Vec<ThreadRank> {
        let shared = Arc::new((Mutex::new(Round { parts: vec![None; world], ..Round::default() }), Condvar::new()));
        (0..world).map(|rank| ThreadRank { rank, world, shared: shared.clone() }).collect()
    }
}

impl Drop for ThreadRank {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut round) = lock.lock() {
            round.departed += 1;
            cv.notify_all();
        }
    }
}

fn host(t: Tensor<2>) -> Result<(Vec<f32>, [usize; 2])> {
    let shape = t.dims();
    let v = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))?;
    Ok((v, shape))
}

impl Collective for ThreadRank {
    fn world_size(&self) -> usize {
        self.world
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn all_reduce_sum(&mut self, tensors: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>> {
        let device = tensors.first().map(|t| t.device());
        let dtype = tensors.first().map(|t| t.dtype());
        let mut shapes = Vec::with_capacity(tensors.len());
        let mut mine = Vec::with_capacity(tensors.len());
        for t in tensors {
            let (v, s) = host(t)?;
            shapes.push(s);
            mine.push(v);
        }
        let (lock, cv) = &*self.shared;
        let poisoned = |_| Error::Tensor("a rank panicked during an all-reduce".into());
        let mut round = lock.lock().map_err(poisoned)?;
        // Wait until the previous round's result has been read by everyone.
        while round.result.is_some() {
            if round.departed > 0 {
                return Err(Error::Tensor(format!("rank {}: another rank left the group", self.rank)));
            }
            round = cv.wait(round).map_err(poisoned)?;
        }
        let target = round.generation + 1;
        round.parts[self.rank] = Some(mine);
        if round.parts.iter().all(Option::is_some) {
            let parts: Vec<Vec<Vec<f32>>> = round.parts.iter_mut().map(|p| p.take().unwrap_or_default()).collect();
            let mut sum = parts[0].clone();
            for part in &parts[1..] {
                for (acc, v) in sum.iter_mut().zip(part) {
                    acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                }
            }
            round.result = Some(Arc::new(sum));
            round.generation = target;
            cv.notify_all();
        }
        while round.generation < target {
            if round.departed > 0 {
                return Err(Error::Tensor(format!("rank {}: another rank left the group before this all-reduce completed", self.rank)));
            }
            round = cv.wait(round).map_err(poisoned)?;
        }
        let result = round.result.clone().ok_or_else(|| Error::Tensor("all-reduce result missing".into()))?;
        round.taken += 1;
        if round.taken == self.world {
            round.taken = 0;
            round.result = None;
            cv.notify_all();
        }
        drop(round);
        let (Some(device), Some(dtype)) = (device, dtype) else { return Ok(Vec::new()) };
        Ok(result.iter().zip(shapes).map(|(v, s)| Tensor::<2>::from_data(TensorData::new(v.clone(), s), &device).cast(dtype)).collect())
    }
}
