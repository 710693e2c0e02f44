//! Pictures of operations: a text timeline for a terminal and an SVG file for a browser, one
//! row per operation, a bar from its invocation to its return. Times are drawn by rank (one
//! column per distinct event time), so that which operations overlap is what the eye sees.

use std::fmt::{Debug, Write as _};
use std::path::{Path, PathBuf};

use super::search::At;
use super::{Operation, Outcome, Violation};

/// A timeline could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    /// Writing the file failed.
    #[error("cannot write the timeline to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where an operation's bar starts and ends (a column), and whether it ends (`false`: its
/// outcome is unknown, the bar runs on to the right).
struct Bar {
    from: usize,
    to: usize,
    ends: bool,
}

fn returned_at<Op, Ret>(op: &Operation<Op, Ret>) -> Option<At> {
    match op.outcome {
        Outcome::Ok { at, .. } | Outcome::Failed { at } => Some((at, op.seq.1)),
        Outcome::Unknown { .. } | Outcome::Pending => None,
    }
}

/// The bars of `ops` and the number of columns.
fn bars<Op, Ret>(ops: &[Operation<Op, Ret>]) -> (Vec<Bar>, usize) {
    let mut times: Vec<At> = Vec::with_capacity(2 * ops.len());
    for op in ops {
        times.push((op.invoked, op.seq.0));
        times.extend(returned_at(op));
    }
    times.sort_unstable();
    times.dedup();
    let col = |t: At| times.binary_search(&t).expect("a recorded time");
    let bars = ops
        .iter()
        .map(|op| {
            let from = col((op.invoked, op.seq.0));
            match returned_at(op) {
                Some(r) => Bar {
                    from,
                    to: col(r),
                    ends: true,
                },
                None => Bar {
                    from,
                    to: times.len(),
                    ends: false,
                },
            }
        })
        .collect();
    (bars, times.len())
}

/// What an operation did, in words: `Write(1) -> Done`.
fn label<Op: Debug, Ret: Debug>(op: &Operation<Op, Ret>) -> String {
    match &op.outcome {
        Outcome::Ok { ret, .. } => format!("{:?} -> {ret:?}", op.op),
        Outcome::Failed { .. } => format!("{:?} -> failed", op.op),
        Outcome::Unknown { .. } => format!("{:?} -> ? (outcome unknown)", op.op),
        Outcome::Pending => format!("{:?} -> ? (no outcome)", op.op),
    }
}

/// A text timeline of `ops`, one line each in the order given: its id (with `*` if in
/// `marked`), client, a bar from invocation `[` to return `]` (`>`: the outcome is unknown and
/// it may have taken effect any time later), and what it did with its virtual times.
///
/// ```
/// use std::time::Duration;
/// use kelpie_sim::history::{timeline, History, RegisterOp, RegisterRet};
///
/// let ms = Duration::from_millis;
/// let h = History::new();
/// h.invoke(1, RegisterOp::Write(1), ms(0)).ok(RegisterRet::Done, ms(2));
/// h.invoke(2, RegisterOp::Read, ms(1)).ok(RegisterRet::Value(0u8), ms(3));
/// let text = timeline(&h.operations(), &[1]);
/// let lines: Vec<&str> = text.lines().collect();
/// assert_eq!(lines, [
///     "    #0 client 1  [---]      Write(1) -> Done  (0ns..2ms)",
///     "  * #1 client 2    [---]    Read -> Value(0)  (1ms..3ms)",
/// ]);
/// ```
pub fn timeline<Op: Debug, Ret: Debug>(ops: &[Operation<Op, Ret>], marked: &[usize]) -> String {
    let (bars, columns) = bars(ops);
    let id_width = ops
        .iter()
        .map(|o| format!("#{} client {}", o.id, o.client).len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (op, bar) in ops.iter().zip(&bars) {
        let mark = if marked.contains(&op.id) { "*" } else { " " };
        let name = format!("#{} client {}", op.id, op.client);
        let mut line = vec![' '; 2 * columns + 1];
        line[2 * bar.from] = '[';
        let end = if bar.ends { 2 * bar.to } else { 2 * columns };
        for c in line.iter_mut().take(end).skip(2 * bar.from + 1) {
            *c = '-';
        }
        line[end] = if bar.ends { ']' } else { '>' };
        let line: String = line.into_iter().collect();
        let times = match returned_at(op) {
            Some((at, _)) => format!("{:?}..{:?}", op.invoked, at),
            None => format!("{:?}..", op.invoked),
        };
        let _ = writeln!(
            out,
            "  {mark} {name:<id_width$}  {line}  {}  ({times})",
            label(op)
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG picture of `ops` (a standalone file's content): one row each, a bar from invocation
/// to return (drawn on to the right edge, dashed, for an unknown outcome), operations in
/// `marked` in red, each labelled with what it did and its virtual times. For histories
/// larger than a screen: the picture grows with them and a browser scrolls it.
pub fn svg<Op: Debug, Ret: Debug>(
    ops: &[Operation<Op, Ret>],
    marked: &[usize],
    title: &str,
) -> String {
    const ROW: usize = 22;
    const LEFT: usize = 20;
    const STEP: usize = 14;
    let (bars, columns) = bars(ops);
    let chart = STEP * (columns + 1);
    let labels: Vec<String> = ops
        .iter()
        .map(|op| {
            let times = match returned_at(op) {
                Some((at, _)) => format!("{:?}..{:?}", op.invoked, at),
                None => format!("{:?}..", op.invoked),
            };
            format!("#{} client {}: {}  ({times})", op.id, op.client, label(op))
        })
        .collect();
    let label_width = 7 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let width = LEFT + chart + 10 + label_width + LEFT;
    let height = ROW * (ops.len() + 2);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"monospace\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{}</text>",
        ROW - 6,
        escape(title)
    );
    for c in 0..columns {
        let x = LEFT + STEP * c + STEP / 2;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{ROW}\" x2=\"{x}\" y2=\"{}\" stroke=\"#eee\"/>",
            height - ROW
        );
    }
    for (row, ((op, bar), text)) in ops.iter().zip(&bars).zip(&labels).enumerate() {
        let y = ROW * (row + 1) + 4;
        let x1 = LEFT + STEP * bar.from + STEP / 2;
        let x2 = if bar.ends {
            LEFT + STEP * bar.to + STEP / 2
        } else {
            LEFT + chart
        };
        let colour = if marked.contains(&op.id) {
            "#c0392b"
        } else {
            "#2e6da4"
        };
        let dash = if bar.ends {
            ""
        } else {
            " stroke-dasharray=\"4 3\" fill-opacity=\"0.3\""
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x1}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{colour}\" \
             stroke=\"{colour}\"{dash}/>",
            (x2 - x1).max(2),
            ROW - 8
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            LEFT + chart + 10,
            y + ROW - 10,
            escape(text)
        );
    }
    out.push_str("</svg>\n");
    out
}

impl<Op: Debug, Ret: Debug> Violation<Op, Ret> {
    /// The witness as a text [`timeline`], culprits marked `*`.
    pub fn timeline(&self) -> String {
        timeline(&self.operations, &self.culprits)
    }

    /// The witness as an [`svg`] picture, culprits in red.
    pub fn to_svg(&self) -> String {
        let title = format!(
            "not linearizable: {} operations of partition {:#x} ({} in all)",
            self.operations.len(),
            self.partition,
            self.partition_len
        );
        svg(&self.operations, &self.culprits, &title)
    }

    /// Writes [`Violation::to_svg`] to `path` (e.g. next to a failure report, for a witness
    /// larger than a screen).
    pub fn write_svg(&self, path: impl AsRef<Path>) -> Result<(), TimelineError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_svg()).map_err(|source| TimelineError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}
