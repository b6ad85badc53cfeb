//! smolsock's own log lines, to `log`, to `defmt`, to both, or to nowhere, as the
//! features say (smoltcp's `src/macros.rs` does the same).
//!
//! Every line is written for both back ends: a format string with positional
//! `{}` arguments only, each argument `Display` (for `log`) and `defmt::Format`
//! (for `defmt`). With neither feature the arguments are evaluated for nothing and
//! the line costs no code.

macro_rules! log_at {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::$level!($fmt $(, $arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::$level!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        {
            $( let _ = &$arg; )*
        }
    }};
}

#[allow(unused_macros)]
macro_rules! net_trace {
    ($($t:tt)*) => { $crate::macros::log_at!(trace, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! net_debug {
    ($($t:tt)*) => { $crate::macros::log_at!(debug, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! net_info {
    ($($t:tt)*) => { $crate::macros::log_at!(info, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! net_warn {
    ($($t:tt)*) => { $crate::macros::log_at!(warn, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! net_error {
    ($($t:tt)*) => { $crate::macros::log_at!(error, $($t)*) };
}

#[allow(unused_imports)]
pub(crate) use {log_at, net_debug, net_error, net_info, net_trace, net_warn};

/// `while let $pat = $e $body`, at most 10,000 rounds: a test that drains a
/// session which never stops giving (bytes to send, frames to take) fails
/// with the expression's text instead of hanging.
#[cfg(test)]
macro_rules! bounded_while_let {
    ($pat:pat = $e:expr => $body:block) => {{
        let mut rounds = 0u32;
        while let $pat = $e {
            rounds += 1;
            assert!(
                rounds <= 10_000,
                "`{}` still going after 10,000 rounds",
                stringify!($e)
            );
            $body
        }
    }};
}

#[cfg(test)]
pub(crate) use bounded_while_let;
