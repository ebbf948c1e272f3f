use std::path::Path;

use super::*;

const GOOD: &str = include_str!("../../../../scenarios/finalizer.yaml");

fn error_of(text: &str) -> String {
    match parse(Path::new("s.yaml"), text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_repository_scenario_is_valid_and_each_cause_has_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    for cause in CauseId::ALL {
        assert!(
            scenarios.iter().any(|s| s.cause == cause),
            "no scenario for {cause}"
        );
    }
}

#[test]
fn good_file_parses_into_a_plan() {
    let s = parse(Path::new("finalizer.yaml"), GOOD).expect("valid");
    assert_eq!(s.cause, CauseId::Finalizer);
    assert_eq!(
        s.fault,
        FaultSpec::Finalizer {
            name: "terminus.dev/hold".into()
        }
    );
    assert_eq!(s.deadlines.clear, Duration::from_secs(90));
    assert_eq!(s.workload.finalizers, vec!["terminus.dev/hold".to_owned()]);
}

#[test]
fn unknown_field_names_file_line_column_and_field() {
    let text = GOOD.replace("  grace-period: 2s", "  grace-period: 2s\n  colour: red");
    let line = text
        .lines()
        .position(|l| l.contains("colour"))
        .expect("inserted")
        + 1;
    assert_eq!(
        error_of(&text),
        format!("s.yaml:{line}:3: field `workload.colour`: unknown field `colour`, expected one of `kind`, `image`, `command`, `volume`, `grace-period`, `finalizers`")
    );
}

#[test]
fn unknown_fault_parameter_is_refused_in_stage_two() {
    let text = GOOD.replace(
        "    name: terminus.dev/hold",
        "    name: terminus.dev/hold\n    colour: red",
    );
    let e = error_of(&text);
    assert!(
        e.contains("field `fault.params.colour`: unknown field `colour`"),
        "{e}"
    );
    let line = text
        .lines()
        .position(|l| l.contains("colour"))
        .expect("inserted")
        + 1;
    assert!(e.starts_with(&format!("s.yaml:{line}:5:")), "{e}");
}

#[test]
fn bad_values_point_at_their_field() {
    let cases = [
        (
            "cause: finalizer",
            "cause: finaliser",
            "field `cause`: unknown cause id `finaliser`",
        ),
        (
            "  clear: 90s",
            "  clear: soon",
            "field `deadlines.clear`: `soon` is not a duration",
        ),
        (
            "  action: remove-finalizers",
            "  action: free-disk",
            "field `remedy.action`: `free-disk` clears disk-full, not finalizer",
        ),
        (
            "  kind: finalizer",
            "  kind: fill-disk",
            "field `fault.params.name`: unknown field `name`, expected `size` or `mode`",
        ),
        (
            "  for: 20s",
            "  for: 1s",
            "field `observe.for`: must be longer than the workload's grace period",
        ),
        (
            "  kubernetes: \">=1.20\"",
            "  kubernetes: \"one point twenty\"",
            "field `requires.kubernetes`",
        ),
        (
            "  level: original",
            "  level: faithful",
            "field `fidelity.level`: `faithful` is not one of: original, nearest-equivalent",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(GOOD.contains(from), "fixture lacks {from}");
        let e = error_of(&GOOD.replace(from, to));
        assert!(e.contains(expected), "{from} -> {to}: {e}");
        assert!(e.starts_with("s.yaml:"), "{e}");
    }
}

#[test]
fn wrong_type_and_missing_section_are_located() {
    let e = error_of(&GOOD.replace("  grace-period: 2s", "  grace-period: [2s]"));
    assert!(
        e.contains("workload.grace-period") && e.contains("invalid type"),
        "{e}"
    );
    let without_remedy: String = GOOD
        .lines()
        .filter(|l| !l.starts_with("remedy") && !l.contains("action:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(error_of(&without_remedy).contains("missing field `remedy`"));
    assert_eq!(error_of(""), "s.yaml: the file is empty");
    assert!(error_of("- a\n- list\n").starts_with("s.yaml:1:1:"));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64Mi"), Some(64 << 20));
    assert_eq!(parse_size("1Gi"), Some(1 << 30));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("64MB"), None);
    assert_eq!(parse_size("99999999999999Gi"), None);
}
