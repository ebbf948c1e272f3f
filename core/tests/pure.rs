//! Architecture invariant, checked: terminus-core stays pure. Its normal dependencies
//! are a fixed list of data crates (parsing, time, regex, quoting); an async runtime, a
//! cluster or Docker client or a process library added here fails this test, so "the
//! detector does no IO" is a fact of the build, not a promise.

const ALLOWED: &[&str] = &[
    "aho-corasick",
    "chrono",
    "clap", // optional (feature "clap"): the agent's argument enums; off by default
    "humantime",
    "memchr",
    "regex",
    "semver",
    "serde",
    "serde_json",
    "serde_yaml_ng",
    "shlex",
    "thiserror",
];

#[test]
fn core_depends_only_on_data_crates() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = "";
    let mut foreign = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', ' ']).next().unwrap_or_default();
        if !ALLOWED.contains(&name) {
            foreign.push(name.to_owned());
        }
    }
    assert!(
        foreign.is_empty(),
        "terminus-core must stay pure (no async runtime, cluster/Docker client or process code); \
         new normal dependencies: {foreign:?}. Put IO in the harness or the agent."
    );
}
