//! Version cells: which Kubernetes, kind and runtime versions a cluster is made of.
//!
//! The list lives in `ci/cells` (compiled in), the one place a version is written; the
//! shell side reads the same file with `ci/lib/cells.sh`. `TERMINUS_CELL` picks a cell
//! by name; unset, the cell marked `default=yes` applies.
//!
//! Architecture invariant: parsing is pure and total — a bad line is an error naming
//! `ci/cells:LINE`, never a panic — and exactly one cell is the default.

use std::fmt;

/// `ci/cells`, compiled in.
pub const CELLS: &str = include_str!("../../ci/cells");
/// Environment variable naming the cell to use.
pub const CELL_ENV: &str = "TERMINUS_CELL";
/// The repository of the offline node images `images/kind-node/build` makes.
const IMAGE_REPO: &str = "terminus/kind-node";

/// One cell of `ci/cells`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub name: String,
    /// `k8s.io/kubernetes` version, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// `sigs.k8s.io/kind` version, e.g. `v0.32.0`.
    pub kind: String,
    /// Debian suite whose containerd and runc the node runs.
    pub runtime: String,
    /// Debian suite of the rest of the node's root filesystem.
    pub rootfs: String,
    /// Debian package version of containerd, e.g. `2.1.9+ds1-5`.
    pub containerd: String,
    /// Debian package version of runc.
    pub runc: String,
    pub default: bool,
}

impl Cell {
    /// The node image `images/kind-node/build --cell NAME` tags.
    pub fn image(&self) -> String {
        format!("{IMAGE_REPO}:{}-{}", self.kubernetes, self.runtime)
    }

    /// The kind binary bootstrap installs for this cell (`kind-v0.32.0`).
    pub fn kind_binary_name(&self) -> String {
        format!("kind-{}", self.kind)
    }

    /// containerd's upstream version (`2.1.9` of `2.1.9+ds1-5`).
    pub fn containerd_upstream(&self) -> &str {
        upstream(&self.containerd)
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (Kubernetes {}, containerd {}, runc {} from Debian {}, kind {})",
            self.name,
            self.kubernetes,
            self.containerd_upstream(),
            upstream(&self.runc),
            self.runtime,
            self.kind
        )
    }
}

/// The upstream part of a Debian version: no epoch, no `~`/`+`/`-` suffix.
fn upstream(debian: &str) -> &str {
    let v = debian.split_once(':').map_or(debian, |(_, v)| v);
    v.split(['~', '+', '-']).next().unwrap_or(v)
}

/// A line of `ci/cells` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// 1-based; 0 for errors about the whole file.
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "ci/cells: {}", self.problem)
        } else {
            write!(f, "ci/cells:{}: {}", self.line, self.problem)
        }
    }
}

impl std::error::Error for CellError {}

/// Parses the text of `ci/cells`.
pub fn parse(text: &str) -> Result<Vec<Cell>, CellError> {
    let mut cells: Vec<Cell> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let err = |problem: String| CellError { line, problem };
        let mut fields = std::collections::BTreeMap::new();
        for kv in body.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| err(format!("'{kv}' is not key=value")))?;
            if !matches!(
                k,
                "cell"
                    | "kubernetes"
                    | "kind"
                    | "runtime"
                    | "rootfs"
                    | "containerd"
                    | "runc"
                    | "default"
            ) {
                return Err(err(format!("unknown field '{k}'")));
            }
            if fields.insert(k, v).is_some() {
                return Err(err(format!("field '{k}' given twice")));
            }
        }
        let mut take = |k: &str| {
            fields
                .remove(k)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| err(format!("missing field '{k}'")))
        };
        let cell = Cell {
            name: take("cell")?,
            kubernetes: take("kubernetes")?,
            kind: take("kind")?,
            runtime: take("runtime")?,
            rootfs: take("rootfs")?,
            containerd: take("containerd")?,
            runc: take("runc")?,
            default: match fields.remove("default") {
                None | Some("no") => false,
                Some("yes") => true,
                Some(other) => return Err(err(format!("default={other}: write yes or no"))),
            },
        };
        for (what, v) in [("kubernetes", &cell.kubernetes), ("kind", &cell.kind)] {
            let ok = v
                .strip_prefix('v')
                .is_some_and(|s| semver::Version::parse(s).is_ok());
            if !ok {
                return Err(err(format!("{what}={v}: want vMAJOR.MINOR.PATCH")));
            }
        }
        if cells.iter().any(|c| c.name == cell.name) {
            return Err(err(format!("cell {} is listed twice", cell.name)));
        }
        cells.push(cell);
    }
    match cells.iter().filter(|c| c.default).count() {
        1 => Ok(cells),
        n => Err(CellError {
            line: 0,
            problem: format!("{n} cells say default=yes; exactly one must"),
        }),
    }
}

/// Every cell of the compiled-in `ci/cells`.
pub fn all() -> Result<Vec<Cell>, CellError> {
    parse(CELLS)
}

/// The cell in force, and whether `TERMINUS_CELL` named it.
pub fn selected() -> Result<(Cell, bool), CellError> {
    let cells = all()?;
    match std::env::var(CELL_ENV).ok().filter(|s| !s.is_empty()) {
        Some(name) => {
            let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
            let found = cells.iter().find(|c| c.name == name).cloned();
            found.map(|c| (c, true)).ok_or_else(|| CellError {
                line: 0,
                problem: format!(
                    "{CELL_ENV}={name} is not a cell (cells: {})",
                    names.join(", ")
                ),
            })
        }
        None => Ok((default_of(&cells).clone(), false)),
    }
}

fn default_of(cells: &[Cell]) -> &Cell {
    // parse() guarantees exactly one default.
    cells.iter().find(|c| c.default).unwrap_or(&cells[0])
}

/// The default cell of the compiled-in `ci/cells`.
pub fn default_cell() -> Result<Cell, CellError> {
    all().map(|c| default_of(&c).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "cell=a kubernetes=v1.37.2 kind=v0.32.0 runtime=forky rootfs=trixie containerd=2.1.9+ds1-5 runc=1.3.6+ds1-1";

    #[test]
    fn the_shipped_cells_parse_with_one_default() {
        let cells = all().expect("ci/cells parses");
        assert!(cells.len() >= 3, "at least three cells: {cells:?}");
        assert_eq!(cells.iter().filter(|c| c.default).count(), 1);
        let d = default_cell().expect("a default");
        // The default is the newest runtime: what kind users run.
        let newest = cells
            .iter()
            .map(|c| semver::Version::parse(c.containerd_upstream()).expect("x.y.z"))
            .max()
            .expect("cells");
        assert_eq!(
            semver::Version::parse(d.containerd_upstream()).expect("x.y.z"),
            newest
        );
        assert!(cells
            .iter()
            .any(|c| c.containerd_upstream().starts_with("2.")));
    }

    #[test]
    fn fields_and_tags() {
        let cells = parse(&format!("# comment\n\n{LINE} default=yes # trailing\n")).expect("ok");
        let c = &cells[0];
        assert_eq!(c.image(), "terminus/kind-node:v1.37.2-forky");
        assert_eq!(c.kind_binary_name(), "kind-v0.32.0");
        assert_eq!(c.containerd_upstream(), "2.1.9");
        assert_eq!(upstream("1.6.20~ds1-1+deb12u3"), "1.6.20");
        assert_eq!(upstream("1:2.3.4-1"), "2.3.4");
        assert!(c.to_string().contains("containerd 2.1.9, runc 1.3.6"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(&format!("# x\n{LINE} default=yes\n{LINE}\n")).unwrap_err();
        assert_eq!(
            (e.line, e.to_string()),
            (3, "ci/cells:3: cell a is listed twice".into())
        );
        let e = parse(
            "cell=b kubernetes=1.2 kind=v0.30.0 runtime=x rootfs=x containerd=1 runc=1 default=yes",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("ci/cells:1: kubernetes=1.2"),
            "{e}"
        );
        let e = parse(&LINE.replace("runc=1.3.6+ds1-1", "")).unwrap_err();
        assert!(e.to_string().contains("missing field 'runc'"), "{e}");
        let e = parse(&format!("{LINE} colour=red")).unwrap_err();
        assert!(e.to_string().contains("unknown field 'colour'"), "{e}");
        let e = parse(&format!("{LINE} stray")).unwrap_err();
        assert!(e.to_string().contains("'stray' is not key=value"), "{e}");
        let e = parse(LINE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ci/cells: 0 cells say default=yes; exactly one must"
        );
    }
}
