//! Pure functions from what agents observed to what the user reads:
//! audit's findings, `ls node/NODE`'s inventory, and the `sessions`
//! listing.

pub mod findings;
pub mod inventory;
pub mod sessions;

/// Columns padded to their widest cell, as kubectl prints them.
pub fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

/// `s` with its control characters shown as `?`: what an agent or another
/// user sent (a version, a command line) cannot move the cursor, rewrite
/// rows or talk to the terminal of whoever reads the report.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
