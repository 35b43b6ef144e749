//! The last kernel of a decoding step that a CUDA graph replays: one thread copies the chosen id
//! into the step's input buffer, records it in the history at `position − base`, and advances
//! the position by one — all in place, so the recorded step's buffers serve every replay. Its
//! counterpart starts a kept step over: the input id and the position set, in place.

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

#[cube(launch_unchecked)]
fn advance_kernel<I: Int>(chosen: &[I], ids: &mut [I], history: &mut [I], position: &mut [I], base: usize, slots: usize) {
    if UNIT_POS == 0 {
        let pos = usize::cast_from(position[0]);
        let id = chosen[0];
        ids[0] = id;
        if pos >= base && pos - base < slots {
            history[pos - base] = id;
        }
        position[0] = I::cast_from(pos + 1);
    }
}

/// Launches the kernel (see the module docs) on the buffers as they are: `chosen`, `ids` and
/// `position` hold one element, `history` `slots`, all of one integer dtype (i32/i64). Returns
/// `false` (launching nothing) when they do not fit.
pub(crate) fn advance_decoding(chosen: &CubeTensor, ids: &CubeTensor, history: &CubeTensor, position: &CubeTensor, base: usize) -> bool {
    let slots = history.meta.num_elements();
    let fits = chosen.meta.num_elements() == 1
        && ids.meta.num_elements() == 1
        && position.meta.num_elements() == 1
        && [&ids.dtype, &history.dtype, &position.dtype].iter().all(|d| **d == chosen.dtype)
        && matches!(chosen.dtype, DType::I32 | DType::I64)
        && history.is_contiguous();
    if !fits {
        return false;
    }
    let client = chosen.client.clone();
    macro_rules! launch {
        ($i:ty) => {
            // SAFETY: one element in `chosen`, `ids` and `position`, `slots` in `history`, every
            // history write guarded by `pos − base < slots`; a single unit writes.
            unsafe {
                advance_kernel::launch_unchecked::<$i>(
                    &client,
                    CubeCount::Static(1, 1, 1),
                    CubeDim::new_1d(32),
                    BufferArg::from_raw_parts(chosen.handle.clone(), 1),
                    BufferArg::from_raw_parts(ids.handle.clone(), 1),
                    BufferArg::from_raw_parts(history.handle.clone(), slots),
                    BufferArg::from_raw_parts(position.handle.clone(), 1),
                    base,
                    slots,
                )
            }
        };
    }
    match chosen.dtype {
        DType::I64 => launch!(i64),
        _ => launch!(i32),
    }
    true
}

#[cube(launch_unchecked)]
fn start_kernel<I: Int>(first: &[I], ids: &mut [I], position: &mut [I], base: usize) {
    if UNIT_POS == 0 {
        ids[0] = first[0];
        position[0] = I::cast_from(base);
    }
}

/// `ids ← first`, `position ← base` in place (see the module docs): one element each, one
/// integer dtype (i32/i64). Returns `false` (launching nothing) when they do not fit.
pub(crate) fn start_decoding(first: &CubeTensor, ids: &CubeTensor, position: &CubeTensor, base: usize) -> bool {
    let fits = [first, ids, position].iter().all(|t| t.meta.num_elements() == 1 && t.dtype == first.dtype)
        && matches!(first.dtype, DType::I32 | DType::I64);
    if !fits {
        return false;
    }
    let client = first.client.clone();
    macro_rules! launch {
        ($i:ty) => {
            // SAFETY: one element in each buffer; a single unit writes.
            unsafe {
                start_kernel::launch_unchecked::<$i>(
                    &client,
                    CubeCount::Static(1, 1, 1),
                    CubeDim::new_1d(32),
                    BufferArg::from_raw_parts(first.handle.clone(), 1),
                    BufferArg::from_raw_parts(ids.handle.clone(), 1),
                    BufferArg::from_raw_parts(position.handle.clone(), 1),
                    base,
                )
            }
        };
    }
    match first.dtype {
        DType::I64 => launch!(i64),
        _ => launch!(i32),
    }
    true
}
