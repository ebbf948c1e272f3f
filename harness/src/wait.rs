//! Waiting: the one polling wait ([`until`], and [`wait_for`] for checks with nothing to
//! report), its blocking twin for synchronous teardown code ([`until_blocking`]), and
//! deletion waits on Kubernetes objects through kube's runtime wait conditions
//! ([`deleted`], [`pod_deleted`], [`namespace_deleted`]).
//!
//! Architecture invariant: no wait without a deadline; every function here takes one and
//! none can wait past it.
//! Architecture invariant: a timeout names what it waited for and, when the check
//! reported one, what it saw last ([`Timeout`]); nothing is retried silently forever.
//! Architecture invariant: deletion of a pod or namespace is awaited through
//! `kube::runtime::wait::await_condition` + `conditions::is_deleted` (a watch, not a
//! poll), so a recreated object with the same name does not count as still present.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// How often [`until`] and [`wait_for`] check.
pub const POLL: Duration = Duration::from_millis(500);

/// One look by a polling check: done with a value, or not yet and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    Done(T),
    /// Not there yet; the text is what the check saw, quoted in the timeout.
    Pending(String),
}

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}{}", last_seen(last))]
pub struct Timeout {
    pub what: String,
    pub waited: Duration,
    /// What the check saw last; empty when it reported nothing.
    pub last: String,
}

fn last_seen(last: &str) -> String {
    if last.is_empty() {
        String::new()
    } else {
        format!("; last seen: {last}")
    }
}

/// Why [`until`] stopped without a value: the deadline, or the check's own error.
#[derive(Debug, thiserror::Error)]
pub enum WaitError<E> {
    #[error(transparent)]
    Timeout(#[from] Timeout),
    /// The check failed; waiting stopped at once.
    #[error("{0}")]
    Check(E),
}

/// Polls `check` every [`POLL`] until it returns [`Check::Done`], an error, or
/// `deadline` passes; the timeout carries the last [`Check::Pending`] observation.
pub async fn until<T, E, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> Result<T, WaitError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, E>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await.map_err(WaitError::Check)? {
            Check::Done(v) => return Ok(v),
            Check::Pending(seen) => seen,
        };
        if tokio::time::Instant::now() >= until {
            return Err(Timeout {
                what: what.to_owned(),
                waited: deadline,
                last,
            }
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for checks that report nothing while pending (`None`) and fail with text.
/// Kept for existing callers; new code returns [`Check`] so timeouts say what was seen.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    until(what, deadline, || {
        let look = check();
        async move {
            Ok(look
                .await?
                .map_or(Check::Pending(String::new()), Check::Done))
        }
    })
    .await
    .map_err(|e: WaitError<String>| e.to_string())
}

/// The blocking form of [`until`] for synchronous code (teardown in `Drop`, signal
/// escalation): polls `check` every `every` until it is done or `deadline` passes.
pub fn until_blocking<T>(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut check: impl FnMut() -> Check<T>,
) -> Result<T, Timeout> {
    let until = Instant::now() + deadline;
    loop {
        let last = match check() {
            Check::Done(v) => return Ok(v),
            Check::Pending(seen) => seen,
        };
        if Instant::now() >= until {
            return Err(Timeout {
                what: what.to_owned(),
                waited: deadline,
                last,
            });
        }
        std::thread::sleep(every);
    }
}

/// Why a deletion wait ended without the object gone.
#[derive(Debug, thiserror::Error)]
pub enum DeletedError {
    #[error(transparent)]
    Timeout(#[from] Timeout),
    #[error("looking up {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("watching {what}: {source}")]
    Watch {
        what: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
}

/// Waits until object `name` of `api` is gone (or replaced by one with another uid),
/// at most `deadline`. Absent from the start counts as deleted. On timeout, `describe`
/// words the object as it was still seen (finalizers, phase, ...).
pub async fn deleted<K>(
    api: Api<K>,
    name: &str,
    deadline: Duration,
    describe: impl Fn(&K) -> String,
) -> Result<(), DeletedError>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
    K::DynamicType: Default,
{
    let what = format!("{} {name} to be deleted", K::kind(&Default::default()));
    let api_err = |source| DeletedError::Api {
        what: what.clone(),
        source,
    };
    let Some(present) = api.get_opt(name).await.map_err(api_err)? else {
        return Ok(());
    };
    let uid = present.meta().uid.clone().unwrap_or_default();
    let watched = tokio::time::timeout(
        deadline,
        await_condition(api.clone(), name, conditions::is_deleted(&uid)),
    )
    .await;
    match watched {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(DeletedError::Watch { what, source }),
        Err(_elapsed) => {
            let last = match api.get_opt(name).await {
                Ok(Some(obj)) => describe(&obj),
                Ok(None) => "gone just after the deadline".to_owned(),
                Err(e) => format!("lookup failed: {e}"),
            };
            Err(Timeout {
                what,
                waited: deadline,
                last,
            }
            .into())
        }
    }
}

/// How a deletion wait words an object still present: its deletion timestamp and
/// finalizers, the usual reasons it stays.
pub fn describe_still_present<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "still present, deletionTimestamp {:?}, finalizers {:?}",
        meta.deletion_timestamp.as_ref().map(|t| t.0.to_string()),
        meta.finalizers.clone().unwrap_or_default()
    )
}

/// Waits until pod `namespace/name` is deleted, at most `deadline`.
pub async fn pod_deleted(
    client: &Client,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<(), DeletedError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    deleted(pods, name, deadline, |p: &Pod| {
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        format!("{}, phase {phase:?}", describe_still_present(p))
    })
    .await
}

/// Waits until namespace `name` is deleted, at most `deadline`.
pub async fn namespace_deleted(
    client: &Client,
    name: &str,
    deadline: Duration,
) -> Result<(), DeletedError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    deleted(namespaces, name, deadline, |ns: &Namespace| {
        let phase = ns.status.as_ref().and_then(|s| s.phase.clone());
        format!("{}, phase {phase:?}", describe_still_present(ns))
    })
    .await
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

    #[tokio::test]
    async fn a_timeout_quotes_the_last_observation() {
        let mut n = 0;
        let err = until::<(), String, _, _>("n to reach 100", Duration::from_millis(10), || {
            n += 1;
            let seen = format!("n = {n}");
            async move { Ok(Check::Pending(seen)) }
        })
        .await
        .expect_err("never done");
        assert!(matches!(&err, WaitError::Timeout(t) if t.last.starts_with("n = ")));
        assert!(err
            .to_string()
            .starts_with("timed out after 10ms waiting for n to reach 100; last seen: n = "));
    }

    #[tokio::test]
    async fn a_failing_check_stops_the_wait() {
        let err = until::<(), _, _, _>("anything", Duration::from_secs(60), || async {
            Err("docker is not running")
        })
        .await
        .expect_err("check fails");
        assert!(matches!(err, WaitError::Check("docker is not running")));
    }

    #[test]
    fn the_blocking_wait_has_a_deadline_too() {
        let mut n = 0;
        let got = until_blocking(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                if n >= 3 {
                    Check::Done(n)
                } else {
                    Check::Pending(format!("n = {n}"))
                }
            },
        );
        assert_eq!(got, Ok(3));
        let err = until_blocking::<()>("never", Duration::ZERO, Duration::ZERO, || {
            Check::Pending("still not".into())
        })
        .expect_err("times out");
        assert_eq!(err.last, "still not");
    }
}
