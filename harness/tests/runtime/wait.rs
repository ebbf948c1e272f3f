//! Every wait has a deadline and says what it waited for.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Poll `ready` every 100 ms until it holds; past `deadline`, fail naming `what`.
pub fn wait_for(deadline: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
