//! The one polling wait everything uses: a deadline is mandatory, and a timeout says
//! what was awaited. Callers that want to say what they saw last keep it themselves.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] checks.
pub const POLL: Duration = Duration::from_millis(500);

/// Polls `check` until it returns `Some`, an error, or `deadline` passes.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_or_says_what_timed_out() {
        let mut n = 0;
        let got = wait_for("n to reach 2", Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { Ok((v >= 2).then_some(v)) }
        })
        .await;
        assert_eq!(got, Ok(2));
        let err =
            wait_for::<(), _, _>("never", Duration::from_millis(10), || async { Ok(None) }).await;
        assert_eq!(
            err,
            Err("timed out after 10ms waiting for never".to_owned())
        );
    }
}
