//! The one tracing setup, for the `terminus` binary and the test tiers that drive the
//! library: progress and diagnostics on stderr, so stdout carries results only.
//!
//! Architecture invariant: library modules log through `tracing` and never install a
//! subscriber; only binaries (and test mains) call [`init`].

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber: `RUST_LOG` when set, else `default` (an EnvFilter
/// directive such as `terminus=info,warn`). A second call is a no-op.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
