//! A/B switches read from the environment once per process, so that two variants of a kernel
//! or a layer can be compared in one device session without rebuilding.

use std::sync::OnceLock;

/// An environment variable that turns a variant on when it holds one given value.
///
/// ```
/// use gpu_kernels::env_switch::EnvSwitch;
/// static WHOLE: EnvSwitch = EnvSwitch::new("KINDLING_DOCTEST_UNSET_SWITCH", "on");
/// assert!(!WHOLE.is_on());
/// ```
#[derive(Debug)]
pub struct EnvSwitch {
    name: &'static str,
    on: &'static str,
    value: OnceLock<bool>,
}

impl EnvSwitch {
    /// The switch `name=on`.
    pub const fn new(name: &'static str, on: &'static str) -> Self {
        Self { name, on, value: OnceLock::new() }
    }

    /// Whether the variable held the value when first asked (later changes are not seen).
    pub fn is_on(&self) -> bool {
        *self.value.get_or_init(|| std::env::var(self.name).is_ok_and(|v| v == self.on))
    }

    /// The variable's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_value_once() {
        static SWITCH: EnvSwitch = EnvSwitch::new("KINDLING_TEST_ENV_SWITCH_ONCE", "yes");
        // SAFETY: this test alone touches this variable, before anything reads it.
        unsafe { std::env::set_var(SWITCH.name(), "yes") };
        assert!(SWITCH.is_on());
        // SAFETY: as above.
        unsafe { std::env::set_var(SWITCH.name(), "no") };
        assert!(SWITCH.is_on(), "the first reading holds for the process");
    }

    #[test]
    fn another_value_leaves_it_off() {
        static SWITCH: EnvSwitch = EnvSwitch::new("KINDLING_TEST_ENV_SWITCH_OTHER", "yes");
        // SAFETY: this test alone touches this variable, before anything reads it.
        unsafe { std::env::set_var(SWITCH.name(), "1") };
        assert!(!SWITCH.is_on());
    }
}
