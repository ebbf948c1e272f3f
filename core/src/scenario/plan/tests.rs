use std::path::Path;

use super::*;
use crate::scenario::error;

const GOOD: &str = include_str!("../../../../scenarios/finalizer.yaml");

fn error_of(text: &str) -> String {
    match parse(Path::new("s.yaml"), text) {
        Ok(_) => panic!("expected an error for:\n{}", excerpt(text)),
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

/// The error for `GOOD` with `from` replaced by `to`; `from` must be in the fixture.
fn error_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture lacks {from}");
    error_of(&GOOD.replacen(from, to, 1))
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("present")
        + 1
}

#[test]
fn non_string_ids_and_titles_are_refused() {
    for (to, shown) in [
        ("id: null", "null is not a string"),
        ("id: ~", "null is not a string"),
        ("id:", "null is not a string"),
        ("id: 123", "a number (read as `123`), not a string"),
        ("id: true", "a boolean (read as `true`), not a string"),
        ("id: 1.5", "a number (read as `1.5`), not a string"),
        ("id: [a]", "invalid type: sequence, expected a string"),
        ("id: {a: b}", "invalid type: map, expected a string"),
    ] {
        let e = error_with("id: finalizer", to);
        assert!(e.starts_with("s.yaml:3:"), "{to}: {e}");
        assert!(e.contains("field `id`"), "{to}: {e}");
        assert!(e.contains(shown), "{to}: {e}");
    }
    let title = "title: A finalizer nobody removes holds the pod object";
    for to in ["title: null", "title: 7", "title: false"] {
        let e = error_with(title, to);
        assert!(
            e.starts_with("s.yaml:5:") && e.contains("field `title`"),
            "{to}: {e}"
        );
    }
    // Quoted, the same spellings are strings (and then validated as ids).
    assert!(parse(
        Path::new("s.yaml"),
        &GOOD.replace("id: finalizer", "id: \"123\"")
    )
    .is_ok());
    let s = parse(Path::new("s.yaml"), &GOOD.replace(title, "title: \"null\""))
        .expect("quoted null is a title");
    assert_eq!(s.title, "null");
}

#[test]
fn version_ranges_must_be_strings() {
    for to in [
        "  kubernetes: null",
        "  kubernetes: ~",
        "  kubernetes:",
        "  kubernetes: 1.20",
        "  kubernetes: 1",
    ] {
        let e = error_with("  kubernetes: \">=1.20\"", to);
        assert!(
            e.starts_with("s.yaml:14:") && e.contains("field `requires.kubernetes`"),
            "{to}: {e}"
        );
        assert!(e.contains("not a string"), "{to}: {e}");
    }
    let e = error_with(
        "  kubernetes: \">=1.20\"",
        "  kubernetes: \">=1.20\"\n  kernel: 5",
    );
    assert!(
        e.contains("field `requires.kernel`") && e.contains("a number (read as `5`)"),
        "{e}"
    );
    // Left out, a range is simply no constraint.
    let s = parse(
        Path::new("s.yaml"),
        &GOOD.replace("  kubernetes: \">=1.20\"\n", ""),
    )
    .expect("optional");
    assert_eq!(s.requires.kubernetes, None);
}

#[test]
fn other_optional_fields_refuse_null_and_other_strings_refuse_numbers() {
    for (from, to, field) in [
        ("  node: shared", "  node: null", "requires.node"),
        (
            "  grace-period: 2s",
            "  grace-period: null",
            "workload.grace-period",
        ),
        (
            "  grace-period: 2s",
            "  grace-period: 2",
            "workload.grace-period",
        ),
        ("  for: 20s", "  for: ~", "observe.for"),
        ("  clear: 90s", "  clear: 90", "deadlines.clear"),
        ("  level: original", "  level: 1", "fidelity.level"),
        (
            "  action: remove-finalizers",
            "  action: null",
            "remedy.action",
        ),
    ] {
        let e = error_with(from, to);
        let line = line_of(&GOOD.replacen(from, to, 1), to.trim());
        assert!(
            e.starts_with(&format!("s.yaml:{line}:")) && e.contains(&format!("field `{field}`")),
            "{to}: {e}"
        );
    }
    let e = error_with("  finalizers: [terminus.dev/hold]", "  finalizers: [1]");
    assert!(
        e.contains("workload.finalizers") && e.contains("a number (read as `1`)"),
        "{e}"
    );
}

#[test]
fn duplicate_keys_are_refused_at_every_level() {
    let cases = [
        ("id: finalizer", "id: finalizer\nid: other"),
        ("cause: finalizer", "cause: finalizer\ncause: finalizer"),
        ("  level: original", "  level: original\n  level: original"),
        ("  node: shared", "  node: shared\n  node: dedicated"),
        (
            "    name: terminus.dev/hold",
            "    name: terminus.dev/hold\n    name: x/y",
        ),
        ("  recover: 30s", "  recover: 30s\n  recover: 31s"),
        ("remedy:", "remedy:\n  action: free-disk\nremedy:"),
        // Spelled differently, the same key.
        ("id: finalizer", "id: finalizer\n\"id\": finalizer"),
    ];
    for (from, to) in cases {
        let text = GOOD.replacen(from, to, 1);
        let e = error_of(&text);
        let key = to.lines().last().expect("line").trim();
        let key = key.split(':').next().expect("key").trim_matches('"');
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim().trim_start_matches('"').starts_with(key))
            .nth(1)
            .map(|(i, _)| i + 1)
            .expect("repeated");
        assert!(e.contains(&format!("duplicate key `{key}`")), "{to}: {e}");
        assert!(e.starts_with(&format!("s.yaml:{line}:")), "{to}: {e}");
    }
    // Inside a value the schema keeps as a map, and in a nested map within it.
    let e = error_with(
        "    name: terminus.dev/hold",
        "    name: terminus.dev/hold\n    extra:\n      a: 1\n      a: 2",
    );
    assert!(e.contains("duplicate key `a`"), "{e}");
    // Numeric keys compare by spelling too.
    let e = error_with(
        "    name: terminus.dev/hold",
        "    name: terminus.dev/hold\n    1: a\n    \"1\": b",
    );
    assert!(e.contains("duplicate key `1`"), "{e}");
    // A flow mapping.
    let e = error_of("{id: a, id: b}");
    assert!(e.contains("duplicate key `id`"), "{e}");
}

#[test]
fn huge_keys_and_values_are_excerpted() {
    let huge = "k".repeat(10 << 20);
    let big = "k".repeat(1 << 20);
    let mut cases = vec![
        // A 10 MB key, unknown at the top level (explicit: implicit keys stop at 1024).
        format!("{}? {huge}\n: x\n", GOOD),
        // The same key twice inside fault.params.
        GOOD.replace(
            "    name: terminus.dev/hold",
            &format!("    name: terminus.dev/hold\n    ? {huge}\n    : 1\n    ? {huge}\n    : 2"),
        ),
    ];
    // Values of 1 MB (the file cap) in every kind of position.
    cases.extend([
        GOOD.replace("id: finalizer", &format!("id: {big}")),
        GOOD.replace("id: finalizer", &format!("id: \"{big} \"")),
        GOOD.replace("cause: finalizer", &format!("cause: {big}")),
        GOOD.replace("  clear: 90s", &format!("  clear: {big}")),
        GOOD.replace("  kind: finalizer", &format!("  kind: {big}")),
        GOOD.replace("  level: original", &format!("  level: {big}")),
        GOOD.replace(
            "  kubernetes: \">=1.20\"",
            &format!("  kubernetes: \"{big}\""),
        ),
        GOOD.replace("  kind: pod", &format!("  kind: pod\n  ? {big}\n  : 1")),
        GOOD.replace("    name: terminus.dev/hold", &format!("    name: {big}")),
        GOOD.replace(
            "  level: original",
            &format!("  level: {}", "9".repeat(1 << 20)),
        ),
    ]);
    for text in cases {
        let e = error_of(&text);
        assert!(e.len() < 1000, "{} bytes: {}", e.len(), &e[..200]);
        assert!(!e.contains(&"k".repeat(error::EXCERPT_CHARS + 1)), "{e}");
    }
}

#[test]
fn ids_and_titles_are_bounded() {
    let long = "a".repeat(MAX_ID_CHARS + 1);
    let e = error_with("id: finalizer", &format!("id: {long}"));
    assert!(
        e.contains("field `id`: is 64 characters; an id is at most 63"),
        "{e}"
    );
    for bad in ["-x", "x-", "Finalizer", "a_b", "\"\""] {
        let e = error_with("id: finalizer", &format!("id: {bad}"));
        assert!(
            e.contains("must be non-empty lowercase letters"),
            "{bad}: {e}"
        );
    }
    let title = "title: A finalizer nobody removes holds the pod object";
    let e = error_with(title, "title: \"two\\nlines\"");
    assert!(
        e.contains("field `title`: must be one non-empty line"),
        "{e}"
    );
    let e = error_with(
        title,
        &format!("title: {}", "t".repeat(MAX_TITLE_CHARS + 1)),
    );
    assert!(e.contains("a title is at most 200"), "{e}");
}

#[test]
fn control_characters_in_values_are_escaped() {
    let e = error_with("  level: original", "  level: \"\\e[31mred\"");
    assert!(!e.contains('\u{1b}'), "{e:?}");
    assert!(e.contains("\\u{1b}[31mred"), "{e}");
}

#[test]
fn hostile_shapes_fail_without_panicking() {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    for text in [
        nested.as_str(),
        laughs,
        "id: !tag x",
        "? [a, b]\n: c",
        "--- a\n--- b\n",
        "\u{feff}id: x",
        "\0",
        ": :",
        "*unknown",
        "<<: {id: x}",
    ] {
        let e = error_of(text);
        assert!(e.starts_with("s.yaml"), "{e}");
    }
}

#[test]
#[ignore = "prints sample messages; run with --ignored --nocapture"]
fn show_messages() {
    for (from, to) in [
        ("id: finalizer", "id: null"),
        ("id: finalizer", "id: 123"),
        ("  kubernetes: \">=1.20\"", "  kubernetes: 1.20"),
        ("  node: shared", "  node: shared\n  node: dedicated"),
        (
            "    name: terminus.dev/hold",
            "    name: x/y\n    name: x/z",
        ),
        (
            "  kind: pod",
            &format!("  kind: pod\n  ? {}\n  : 1", "k".repeat(5000)),
        ),
    ] {
        println!("{}", error_with(from, to));
    }
}

#[test]
fn a_file_of_comments_is_empty() {
    assert_eq!(
        error_of("# only\n  # comments\n\n"),
        "s.yaml: the file is empty"
    );
}

#[test]
fn fault_params_take_strings_only() {
    for to in [
        "    name: 123",
        "    name: null",
        "    name: true",
        "    name: [a/b]",
    ] {
        let e = error_with("    name: terminus.dev/hold", to);
        assert!(
            e.contains("field `fault.params") && e.contains("invalid type"),
            "{to}: {e}"
        );
    }
}
