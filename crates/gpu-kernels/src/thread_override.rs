//! A per-thread override of a process-wide setting: the pattern behind
//! [`crate::with_f32_matmul_precision`] (and the LoRA side path's autocast scope).

use std::cell::Cell;
use std::thread::LocalKey;

/// Runs `f` with `slot` (a thread-local override, `None` when unset) holding `value`, and
/// restores the previous override after, also when `f` panics.
///
/// ```
/// use std::cell::Cell;
/// thread_local! { static SLOT: Cell<Option<u8>> = const { Cell::new(None) }; }
/// let inside = gpu_kernels::thread_override::with_override(&SLOT, 3, || SLOT.with(Cell::get));
/// assert_eq!((inside, SLOT.with(Cell::get)), (Some(3), None));
/// ```
pub fn with_override<T: Copy + 'static, R>(slot: &'static LocalKey<Cell<Option<T>>>, value: T, f: impl FnOnce() -> R) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<Option<T>>>, Option<T>);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            let previous = self.1;
            self.0.with(|s| s.set(previous));
        }
    }
    let _restore = Restore(slot, slot.with(|s| s.replace(Some(value))));
    f()
}
