//! Sizes as people write them, in scenario files (`size: 64Mi`) and on the agent's
//! command line (`--max-size 2G`).
//!
//! Architecture invariant: there is one size syntax in terminus, this one. Every unit
//! is a power of 1024: `K`/`Ki` = 2^10, `M`/`Mi` = 2^20, `G`/`Gi` = 2^30 (the
//! single-letter forms also in lower case, as `dd` and `df` users write them). Decimal
//! units (`MB`, Kubernetes' `M`) are not accepted rather than guessed.

/// Bytes in `text`: digits, optionally followed by one unit of the module's table.
/// `None` when it is not such a size or does not fit in a u64.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "K" | "k" | "Ki" => 1 << 10,
        "M" | "m" | "Mi" => 1 << 20,
        "G" | "g" | "Gi" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn binary_units_in_both_spellings() {
        assert_eq!(parse_size("64Mi"), Some(64 << 20));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1Gi"), Some(1 << 30));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size(" 4096 "), Some(4096));
    }

    #[test]
    fn rejects_what_it_would_have_to_guess() {
        for bad in [
            "",
            "lots",
            "64MB",
            "1.5G",
            "G",
            "-1",
            "99999999999999Gi",
            "99999999999999G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
