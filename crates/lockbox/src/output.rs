//! Printing results: JSON exactly as the API answers, or tables and
//! key-value listings that fit the terminal.

use serde::Serialize;

use crate::CliError;

/// How client commands print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// For people.
    Table,
    /// For programs: the API's JSON.
    Json,
}

/// Prints `value` as the API's JSON.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Io(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// The terminal's width (`COLUMNS`, else 120), or none when standard
/// output is not a terminal (a pipe or a file gets whole lines).
fn width() -> Option<usize> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    Some(
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&c: &usize| c >= 40)
            .unwrap_or(120),
    )
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Prints rows under headers. On a terminal, the widest columns but the
/// first (the ids people copy) are narrowed until the table fits.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    if let Some(width) = width() {
        let room = width.saturating_sub(2 * widths.len().saturating_sub(1));
        while widths.iter().sum::<usize>() > room {
            let Some(widest) = widths.iter_mut().skip(1).max() else {
                break;
            };
            if *widest <= 8 {
                break;
            }
            *widest -= 1;
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, &w)| format!("{:<w$}", clip(&cell, w)))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(&mut headers.iter().map(|h| (*h).to_owned()));
    for row in rows {
        line(&mut row.iter().cloned());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// A value shown as one row of a table, under headers of its kind.
pub(crate) trait Row {
    /// The column headers.
    const HEADERS: &'static [&'static str];
    /// The cells, one per header.
    fn cells(&self) -> Vec<String>;
}

/// Prints `items` as a table, one row each.
pub(crate) fn rows<T: Row>(items: &[T]) {
    let rows: Vec<Vec<String>> = items.iter().map(Row::cells).collect();
    table(T::HEADERS, &rows);
}

/// Prints `name: value` lines.
pub(crate) fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<w$}  {v}");
    }
}

/// A time as people read it.
pub(crate) fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// An optional value, or `-`.
pub(crate) fn or_dash(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), str::to_owned)
}
