//! Detectors under test: terminus's own rules ([`Detector::Builtin`]) or an external
//! command that speaks the protocol of `docs/detectors.md`. Whatever a detector does —
//! hang, crash, print garbage, name a cause that does not exist — running it yields a
//! value: an [`Answer`] or a [`DetectorFailure`]. It is never a harness error and never
//! a panic, because a broken detector is a result worth scoring, not a reason to stop.
//!
//! # API
//!
//! Running is **synchronous** (it blocks the calling thread until the detector answers or
//! its timeout passes); async callers wrap it in `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use terminus::detectors::{Detector, DetectorContext};
//!
//! let detector = Detector::parse("examples/detectors/grep-detector")?; // or "builtin"
//! let context = DetectorContext { timeout: Duration::from_secs(10), ..DetectorContext::default() }
//!     .with_cluster("/tmp/kubeconfig", "terminus-1", "stuck-0", Some("kind-worker"));
//! match detector.run(Path::new("corpus/disk-full/run-1"), &context) {
//!     Ok(answer) => println!("{} says {:?}", detector.name(), answer.cause),
//!     Err(failure) => println!("{} failed: {failure}", detector.name()),
//! }
//! # Ok::<(), terminus::detectors::DetectorSpecError>(())
//! ```
//!
//! # How an external detector is run
//!
//! The command gets the bundle directory (made absolute) as its only argument, no
//! stdin, and the context in `TERMINUS_*` variables (unset ones are removed, so a value
//! from the harness's own environment never leaks into a trial). It runs in a process
//! group of its own; on timeout the whole group gets SIGKILL, and after a normal exit
//! whatever the detector left behind in its group is killed too, so a detector cannot
//! leave processes running or keep a trial waiting on a pipe.
//!
//! # How the builtin detector is run
//!
//! In-process, on a thread of its own, under the same `context.timeout`: a bundle that
//! stalls it (a FIFO where a log should be, a huge file) is a `timed-out` trial like an
//! external detector's, not a stalled scorecard. A thread cannot be killed, so one that
//! times out is abandoned: it is left to finish (or stay blocked) on its own, its answer
//! is dropped, and it ends with the process.
//!
//! Architecture invariant: running a detector never fails the harness: timeouts,
//! crashes and bad JSON become a [`DetectorFailure`] value.
//! Architecture invariant: every detector run has a deadline (`context.timeout`, the
//! builtin's too); when an external one ends nothing it started is left running (its
//! process group is killed).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

pub use terminus_core::answer::{parse_answer, Answer, DetectorFailure, FailureKind};

use crate::detect;
use crate::evidence::Evidence;

/// How long a detector (builtin or external) may take when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer is one small JSON object; anything bigger than this is not an answer.
const MAX_STDOUT_BYTES: usize = 1 << 20;
/// How much of a detector's stderr is kept for the failure report.
const STDERR_TAIL_BYTES: usize = 4096;
/// After SIGKILL, how long to wait for the kernel to reap the process.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the detector exited, how long its output pipes may stay open (held by a process
/// that escaped its group) before the harness stops reading them.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// The environment variables of the protocol.
pub const ENV_BUNDLE: &str = "TERMINUS_BUNDLE";
pub const ENV_KUBECONFIG: &str = "TERMINUS_KUBECONFIG";
pub const ENV_NAMESPACE: &str = "TERMINUS_NAMESPACE";
pub const ENV_POD: &str = "TERMINUS_POD";
pub const ENV_NODE: &str = "TERMINUS_NODE";

/// A detector to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detector {
    /// terminus's own rules ([`crate::detect::diagnose`]), run in-process.
    Builtin,
    /// An external command speaking the protocol of `docs/detectors.md`.
    Command {
        /// As the user wrote it; names the detector in scorecards.
        spec: String,
        /// Absolute, so the detector runs the same from any working directory.
        program: PathBuf,
    },
}

/// Why a `--detector` value names no runnable detector. Bad input, reported before any
/// trial runs.
#[derive(Debug, thiserror::Error)]
pub enum DetectorSpecError {
    #[error("an empty detector name; pass `builtin` or a path to an executable")]
    Empty,
    #[error("detector `{spec}`: no such file; pass `builtin` or a path to an executable (e.g. ./examples/detectors/grep-detector)")]
    NotFound { spec: String },
    #[error("detector `{spec}` is not a regular file")]
    NotAFile { spec: String },
    #[error("detector `{spec}` is not executable (chmod +x {spec})")]
    NotExecutable { spec: String },
    #[error("detector `{spec}`: {source}")]
    Unreadable {
        spec: String,
        source: std::io::Error,
    },
}

impl Detector {
    /// `builtin`, or a path to an executable file (relative to the working directory).
    pub fn parse(spec: &str) -> Result<Detector, DetectorSpecError> {
        if spec == "builtin" {
            return Ok(Detector::Builtin);
        }
        if spec.is_empty() {
            return Err(DetectorSpecError::Empty);
        }
        let path = Path::new(spec);
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DetectorSpecError::NotFound {
                    spec: spec.to_owned(),
                })
            }
            Err(source) => {
                return Err(DetectorSpecError::Unreadable {
                    spec: spec.to_owned(),
                    source,
                })
            }
        };
        if !meta.is_file() {
            return Err(DetectorSpecError::NotAFile {
                spec: spec.to_owned(),
            });
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(DetectorSpecError::NotExecutable {
                spec: spec.to_owned(),
            });
        }
        let program =
            std::fs::canonicalize(path).map_err(|source| DetectorSpecError::Unreadable {
                spec: spec.to_owned(),
                source,
            })?;
        Ok(Detector::Command {
            spec: spec.to_owned(),
            program,
        })
    }

    /// The name scorecards show: `builtin`, or the path as given.
    pub fn name(&self) -> &str {
        match self {
            Detector::Builtin => "builtin",
            Detector::Command { spec, .. } => spec,
        }
    }

    /// Runs the detector over one bundle directory. Blocks until it answers, fails or
    /// times out (`context.timeout`, for the builtin detector too).
    pub fn run(&self, bundle: &Path, context: &DetectorContext) -> Result<Answer, DetectorFailure> {
        match self {
            Detector::Builtin => run_in_thread(bundle, context.timeout, builtin_answer),
            Detector::Command { program, .. } => run_command(program, bundle, context),
        }
    }
}

impl std::str::FromStr for Detector {
    type Err = DetectorSpecError;
    fn from_str(spec: &str) -> Result<Detector, DetectorSpecError> {
        Detector::parse(spec)
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a detector is told besides the bundle directory. The cluster fields are set when
/// a cluster is up (a live trial) and exported as `TERMINUS_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorContext {
    pub timeout: Duration,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
}

impl Default for DetectorContext {
    fn default() -> Self {
        DetectorContext {
            timeout: DEFAULT_TIMEOUT,
            kubeconfig: None,
            namespace: None,
            pod: None,
            node: None,
        }
    }
}

impl DetectorContext {
    /// The context of a live trial: where the cluster is and which pod is stuck.
    pub fn with_cluster(
        mut self,
        kubeconfig: impl Into<PathBuf>,
        namespace: impl Into<String>,
        pod: impl Into<String>,
        node: Option<impl Into<String>>,
    ) -> Self {
        self.kubeconfig = Some(kubeconfig.into());
        self.namespace = Some(namespace.into());
        self.pod = Some(pod.into());
        self.node = node.map(Into::into);
        self
    }

    /// Every protocol variable with its value, `None` for those to remove.
    fn env(&self, bundle: &Path) -> [(&'static str, Option<std::ffi::OsString>); 5] {
        [
            (ENV_BUNDLE, Some(bundle.as_os_str().to_owned())),
            (
                ENV_KUBECONFIG,
                self.kubeconfig.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
            (ENV_NAMESPACE, self.namespace.as_ref().map(Into::into)),
            (ENV_POD, self.pod.as_ref().map(Into::into)),
            (ENV_NODE, self.node.as_ref().map(Into::into)),
        ]
    }
}

fn builtin_answer(bundle: &Path) -> Answer {
    let evidence = Evidence::load(bundle);
    let report = detect::diagnose(&evidence);
    match report.diagnoses.first() {
        Some(first) => Answer {
            cause: Some(first.cause),
            confidence: first.confidence,
            evidence: first
                .evidence
                .iter()
                .map(|q| format!("{}:{}: {}", q.source, q.line, q.text))
                .collect(),
        },
        None => Answer {
            cause: None,
            confidence: 0.0,
            evidence: Vec::new(),
        },
    }
}

/// Runs `answer` over `bundle` on a thread of its own and waits at most `timeout` for it.
/// Past the timeout the thread is abandoned (left to finish on its own; its answer is
/// dropped) and the trial is `timed-out`. A panic in `answer` is a failure too, never a
/// panic of the caller. `answer` is a parameter so tests can put a slow one in.
fn run_in_thread(
    bundle: &Path,
    timeout: Duration,
    answer: fn(&Path) -> Answer,
) -> Result<Answer, DetectorFailure> {
    let failure = |kind| DetectorFailure {
        kind,
        stderr_tail: String::new(),
    };
    let (answered_tx, answered) = mpsc::channel();
    let bundle = bundle.to_path_buf();
    let spawned = thread::Builder::new()
        .name("builtin-detector".into())
        .spawn(move || {
            let _ = answered_tx.send(answer(&bundle));
        });
    if let Err(e) = spawned {
        return Err(failure(FailureKind::Spawn {
            reason: format!("cannot start a thread for the builtin detector: {e}"),
        }));
    }
    match answered.recv_timeout(timeout) {
        Ok(answer) => Ok(answer),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(failure(FailureKind::TimedOut {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(failure(FailureKind::Spawn {
            reason: "internal: the builtin detector panicked".into(),
        })),
    }
}

fn run_command(
    program: &Path,
    bundle: &Path,
    context: &DetectorContext,
) -> Result<Answer, DetectorFailure> {
    let bundle = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    let mut command = Command::new(program);
    command
        .arg(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, value) in context.env(&bundle) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command.spawn().map_err(|e| DetectorFailure {
        kind: FailureKind::Spawn {
            reason: e.to_string(),
        },
        stderr_tail: String::new(),
    })?;
    let group = rustix::process::Pid::from_child(&child);
    let stdout = Capture::start(child.stdout.take(), Keep::Head(MAX_STDOUT_BYTES));
    let stderr = Capture::start(child.stderr.take(), Keep::Tail(STDERR_TAIL_BYTES));

    // `wait` runs on its own thread so this one can keep the deadline; the child stays
    // unreaped until it really exits, so its pid (= the group id) cannot be reused
    // while the group is being killed.
    let (exited_tx, exited) = mpsc::channel();
    thread::spawn(move || {
        let _ = exited_tx.send(child.wait());
    });
    let status = match exited.recv_timeout(context.timeout) {
        Ok(status) => status,
        Err(_) => {
            kill_group(group);
            let _ = exited.recv_timeout(KILL_GRACE);
            let timeout_ms = u64::try_from(context.timeout.as_millis()).unwrap_or(u64::MAX);
            return Err(DetectorFailure {
                kind: FailureKind::TimedOut { timeout_ms },
                stderr_tail: stderr.finish(PIPE_GRACE).text_tail(),
            });
        }
    };
    // Anything the detector started in its group and left running goes with it.
    kill_group(group);
    let stdout = stdout.finish(PIPE_GRACE);
    let stderr_tail = stderr.finish(PIPE_GRACE).text_tail();
    let fail = |kind| {
        Err(DetectorFailure {
            kind,
            stderr_tail: stderr_tail.clone(),
        })
    };
    match status {
        Err(e) => {
            return fail(FailureKind::Spawn {
                reason: format!("could not wait for it: {e}"),
            })
        }
        Ok(status) => {
            if let Some(kind) = exit_failure(status) {
                return fail(kind);
            }
        }
    }
    if stdout.overflowed {
        return fail(FailureKind::InvalidJson {
            reason: format!(
                "more than {MAX_STDOUT_BYTES} bytes on stdout; the answer is one small JSON object"
            ),
        });
    }
    match parse_answer(&stdout.bytes) {
        Ok(answer) => Ok(answer),
        Err(kind) => fail(kind),
    }
}

fn exit_failure(status: ExitStatus) -> Option<FailureKind> {
    if let Some(signal) = status.signal() {
        return Some(FailureKind::Signalled { signal });
    }
    match status.code() {
        Some(0) => None,
        Some(code) => Some(FailureKind::Exited { code }),
        None => Some(FailureKind::Spawn {
            reason: format!("ended without an exit status ({status})"),
        }),
    }
}

fn kill_group(group: rustix::process::Pid) {
    // ESRCH (nothing left in the group) is the normal case after a clean exit.
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

enum Keep {
    /// The first N bytes; more sets `overflowed`.
    Head(usize),
    /// The last N bytes.
    Tail(usize),
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Captured {
    /// The last few lines, as text, for a failure report.
    fn text_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(20);
        let mut tail = lines[start..].join("\n");
        if self.overflowed || start > 0 {
            tail.insert_str(0, "…\n");
        }
        tail
    }
}

/// Reads one of the detector's pipes on a thread of its own, so a detector filling one
/// pipe never blocks on the other, and the result is available even if the pipe is
/// never closed.
struct Capture {
    captured: Arc<Mutex<Captured>>,
    done: mpsc::Receiver<()>,
}

impl Capture {
    fn start(pipe: Option<impl Read + Send + 'static>, keep: Keep) -> Capture {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let (done_tx, done) = mpsc::channel();
        let sink = Arc::clone(&captured);
        thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut buf = [0u8; 8192];
                loop {
                    let n = match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut c = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    match keep {
                        Keep::Head(max) => {
                            let room = max.saturating_sub(c.bytes.len());
                            c.bytes.extend_from_slice(&buf[..n.min(room)]);
                            c.overflowed |= n > room;
                        }
                        Keep::Tail(max) => {
                            c.bytes.extend_from_slice(&buf[..n]);
                            if c.bytes.len() > max {
                                let excess = c.bytes.len() - max;
                                c.bytes.drain(..excess);
                                c.overflowed = true;
                            }
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
        Capture { captured, done }
    }

    /// What was read, once the pipe closed or `grace` passed.
    fn finish(self, grace: Duration) -> Captured {
        let _ = self.done.recv_timeout(grace);
        let mut c = self
            .captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *c)
    }
}

#[cfg(test)]
mod tests {
    use crate::cause::CauseId;
    use std::time::Instant;

    use super::*;

    fn test_detector(name: &str) -> Detector {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/detectors")
            .join(name);
        Detector::parse(path.to_str().expect("utf-8 path"))
            .expect("test detector exists and is executable")
    }

    fn seed_bundle() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/seed/handbook-disk-full")
    }

    fn quick() -> DetectorContext {
        DetectorContext {
            timeout: Duration::from_secs(20),
            ..DetectorContext::default()
        }
    }

    #[test]
    fn a_slow_builtin_run_is_abandoned_at_the_timeout() {
        fn slow(_: &Path) -> Answer {
            std::thread::sleep(Duration::from_secs(30));
            Answer {
                cause: None,
                confidence: 0.0,
                evidence: vec![],
            }
        }
        fn panics(_: &Path) -> Answer {
            panic!("a bug in a rule")
        }
        let started = Instant::now();
        let failure = run_in_thread(&seed_bundle(), Duration::from_millis(200), slow)
            .expect_err("it sleeps past the timeout");
        assert_eq!(failure.kind, FailureKind::TimedOut { timeout_ms: 200 });
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let failure = run_in_thread(&seed_bundle(), Duration::from_secs(20), panics)
            .expect_err("a panic is a failure");
        assert!(failure.to_string().contains("panicked"), "{failure}");
        let answer = run_in_thread(&seed_bundle(), Duration::from_secs(20), builtin_answer)
            .expect("the seed bundle is diagnosed in time");
        assert_eq!(answer.cause, Some(CauseId::DiskFull));
    }

    #[test]
    fn a_fifo_in_a_bundle_is_refused_not_waited_on() {
        // Opening a FIFO with no writer blocks forever: the bundle that stalled `score`.
        // The bundle reader refuses it unopened, so the answer comes at once (the
        // timeout stays as the backstop, tested with a slow answer above).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            seed_bundle().join("runtime.log"),
            dir.path().join("runtime.log"),
        )
        .expect("copy runtime.log");
        nix::unistd::mkfifo(
            &dir.path().join("kubelet.log"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .expect("mkfifo");
        let context = DetectorContext {
            timeout: Duration::from_secs(20),
            ..DetectorContext::default()
        };
        let started = Instant::now();
        let answer = Detector::Builtin.run(dir.path(), &context);
        assert!(answer.is_ok(), "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn answers_are_parsed_per_the_protocol() {
        let a = parse_answer(
            br#" {"cause": "mount-held", "confidence": 0.8, "evidence": ["a", "b"], "extra": 1} "#,
        )
        .expect("valid");
        assert_eq!(
            a,
            Answer {
                cause: Some(CauseId::MountHeld),
                confidence: 0.8,
                evidence: vec!["a".into(), "b".into()]
            }
        );
        let none = parse_answer(br#"{"cause": null}"#).expect("null cause needs no confidence");
        assert_eq!(
            none,
            Answer {
                cause: None,
                confidence: 0.0,
                evidence: vec![]
            }
        );
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "nothing on stdout"),
            (b"disk-full", "not one JSON object"),
            (
                br#"{"cause": "disk-full", "confidence": 1} {"cause": null}"#,
                "trailing characters",
            ),
            (br#"["disk-full"]"#, "not an object"),
            (br#"{"confidence": 1}"#, "no `cause` field"),
            (br#"{"cause": "disk-full"}"#, "no `confidence` field"),
            (
                br#"{"cause": "disk-full", "confidence": 1.5}"#,
                "from 0 to 1",
            ),
            (
                br#"{"cause": 4, "confidence": 1}"#,
                "cause id string or null",
            ),
            (
                br#"{"cause": "disk-full", "confidence": 1, "evidence": [1]}"#,
                "must hold strings",
            ),
        ];
        for (stdout, want) in cases {
            match parse_answer(stdout) {
                Err(FailureKind::InvalidJson { reason }) => {
                    assert!(
                        reason.contains(want),
                        "{:?}: reason `{reason}` lacks `{want}`",
                        String::from_utf8_lossy(stdout)
                    )
                }
                other => panic!(
                    "{:?}: expected invalid-json, got {other:?}",
                    String::from_utf8_lossy(stdout)
                ),
            }
        }
        assert_eq!(
            parse_answer(br#"{"cause": "disk_full", "confidence": 1}"#),
            Err(FailureKind::UnknownCause {
                cause: "disk_full".into()
            })
        );
    }

    #[test]
    fn specs_name_builtin_or_an_executable_file() {
        assert_eq!(Detector::parse("builtin").ok(), Some(Detector::Builtin));
        assert!(matches!(Detector::parse(""), Err(DetectorSpecError::Empty)));
        assert!(matches!(
            Detector::parse("no/such/detector"),
            Err(DetectorSpecError::NotFound { .. })
        ));
        assert!(matches!(
            Detector::parse(env!("CARGO_MANIFEST_DIR")),
            Err(DetectorSpecError::NotAFile { .. })
        ));
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let err = Detector::parse(manifest).expect_err("Cargo.toml is not executable");
        assert!(err.to_string().contains("chmod +x"), "{err}");
    }

    #[test]
    fn builtin_names_the_first_diagnosis_with_its_proof() {
        let answer = Detector::Builtin
            .run(&seed_bundle(), &quick())
            .expect("builtin never fails");
        assert_eq!(answer.cause, Some(CauseId::DiskFull));
        assert!(answer
            .evidence
            .iter()
            .any(|l| l.starts_with("runtime.log:1: ") && l.contains("no space left on device")));
    }

    #[test]
    fn a_detector_sees_the_bundle_and_only_the_context_it_was_given() {
        let detector = test_detector("echo-context");
        let bundle = seed_bundle();
        // Only the bundle: the cluster variables must be absent even if this process has them.
        let answer = detector
            .run(&bundle, &quick())
            .expect("echo-context answers");
        assert_eq!(
            answer.evidence,
            vec![
                format!("arg={}", bundle.display()),
                format!("bundle={}", bundle.display()),
                "cluster=".into()
            ]
        );
        let live = quick().with_cluster("/k/config", "ns-1", "pod-1", Some("node-1"));
        let answer = detector.run(&bundle, &live).expect("echo-context answers");
        assert_eq!(answer.evidence[2], "cluster=/k/config ns-1 pod-1 node-1");
    }

    #[test]
    fn a_hung_detector_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("record-sleeper-pid"), "").expect("marker");
        let detector = test_detector("sleep-past-timeout");
        let context = DetectorContext {
            timeout: Duration::from_millis(500),
            ..DetectorContext::default()
        };
        let started = Instant::now();
        // The bundle argument doubles as a place for the script to write its child's pid.
        let failure = detector
            .run(dir.path(), &context)
            .expect_err("it sleeps past the timeout");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(failure.kind, FailureKind::TimedOut { timeout_ms: 500 });
        assert_eq!(failure.to_string(), "timed out after 500ms (killed)");
        assert!(
            failure.stderr_tail.contains("sleeping"),
            "stderr tail: {:?}",
            failure.stderr_tail
        );
        wait_until_gone(&dir.path().join("sleeper.pid"))
            .expect("the detector's child dies with it at the timeout");
    }

    /// Waits up to 5 s for the process named in `pid_file` to be dead. A zombie counts
    /// as dead: an orphan is reparented to pid 1, which on some machines (a bare
    /// container init) never reaps it.
    fn wait_until_gone(pid_file: &Path) -> Result<(), String> {
        let pid = std::fs::read_to_string(pid_file).map_err(|e| format!("no pid file: {e}"))?;
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        let alive = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                // The state is the first field after the parenthesised command name.
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        };
        crate::wait::until_blocking(
            &format!("process {} to be gone", pid.trim()),
            Duration::from_secs(5),
            Duration::from_millis(20),
            || {
                if alive() {
                    crate::wait::Check::Pending("still running".into())
                } else {
                    crate::wait::Check::Done(())
                }
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn what_a_detector_leaves_running_is_killed_and_not_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("record-sleeper-pid"), "").expect("marker");
        let started = Instant::now();
        let answer = test_detector("leave-child-behind")
            .run(dir.path(), &quick())
            .expect("answers");
        assert_eq!(answer.cause, None);
        // The child holds stdout open for 300 s; the answer must not wait for it.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        wait_until_gone(&dir.path().join("sleeper.pid")).expect("the left-behind child is killed");
    }

    #[test]
    fn a_flood_on_stdout_is_not_an_answer() {
        let failure = test_detector("print-too-much")
            .run(&seed_bundle(), &quick())
            .expect_err("2 MB is too much");
        assert_eq!(failure.kind.name(), "invalid-json");
        assert!(
            failure
                .to_string()
                .contains("more than 1048576 bytes on stdout"),
            "{failure}"
        );
    }

    #[test]
    fn crashes_and_garbage_are_failures_with_stderr() {
        let bundle = seed_bundle();
        let failure = test_detector("exit-nonzero")
            .run(&bundle, &quick())
            .expect_err("exits 3");
        assert_eq!(failure.kind, FailureKind::Exited { code: 3 });
        assert_eq!(
            failure.stderr_tail,
            "exit-nonzero: cannot make sense of this bundle"
        );
        let failure = test_detector("print-garbage")
            .run(&bundle, &quick())
            .expect_err("prints garbage");
        assert_eq!(failure.kind.name(), "invalid-json");
        assert!(
            failure
                .to_string()
                .contains("it begins `I think it is the disk"),
            "{failure}"
        );
        let failure = test_detector("kill-itself")
            .run(&bundle, &quick())
            .expect_err("dies by SIGTERM");
        assert_eq!(failure.kind, FailureKind::Signalled { signal: 15 });
    }
}
