//! Plain-text files of one record per line that several harness processes may append to at
//! once (the regression file, the trace-hash record): each line is one `write` under an
//! exclusive file lock, and a reader skips a bad line with a warning instead of the whole file.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::Path;

/// Appends `line` (without its newline) to the file at `path`, creating the file and its
/// directory if needed and writing `header` first into a file that is still empty. With
/// `unique`, a line the file already holds (another process may have written it since this one
/// read the file) is not written again.
///
/// Safe with any number of concurrent writers, threads or processes: the check and the whole
/// line (with the header) happen while holding the file's exclusive lock, and the line goes out
/// in one `write` on an `O_APPEND` descriptor, so lines never interleave and none is lost.
pub(crate) fn append_line(
    path: &Path,
    header: &str,
    line: &str,
    unique: bool,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    file.lock()?;
    let result = (|| {
        let mut existing = Vec::new();
        if unique {
            file.read_to_end(&mut existing)?;
            if existing
                .split(|&b| b == b'\n')
                .any(|l| l.strip_suffix(b"\r").unwrap_or(l).trim_ascii() == line.as_bytes())
            {
                return Ok(());
            }
        }
        let mut record = String::with_capacity(header.len() + line.len() + 1);
        if file.metadata()?.len() == 0 {
            record.push_str(header);
        }
        record.push_str(line);
        record.push('\n');
        file.write_all(record.as_bytes())
    })();
    // Closing the descriptor releases the lock too; unlocking first makes the order explicit.
    let unlocked = file.unlock();
    result.and(unlocked)
}

/// A usable line and its 1-based number.
pub(crate) type NumberedLine = (usize, String);

/// One line that [`read_lines`] could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadLine {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong with it.
    pub(crate) reason: String,
}

/// Reads the file at `path` under a shared lock (so that no half-appended line is seen) and
/// returns its lines that are neither blank nor `#` comments, numbered from 1, plus the lines
/// that are not valid UTF-8. A missing file has no lines.
pub(crate) fn read_lines(path: &Path) -> std::io::Result<(Vec<NumberedLine>, Vec<BadLine>)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    file.lock_shared()?;
    let mut bytes = Vec::new();
    let read = file.read_to_end(&mut bytes);
    let _ = file.unlock();
    read?;
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() && !text.starts_with('#') {
                    lines.push((i + 1, text.to_string()));
                }
            }
            Err(_) => bad.push(BadLine {
                line: i + 1,
                reason: "not valid UTF-8".to_string(),
            }),
        }
    }
    Ok((lines, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kelpie-line-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn concurrent_appends_keep_every_line_whole() {
        let path = temp("concurrent.txt");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let line = format!("some::fairly::long::test::path_{t} {i}");
                        append_line(&path, "# header\n", &line, false).unwrap();
                        // The same line again, as another process would: written once.
                        append_line(&path, "# header\n", &line, true).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (lines, bad) = read_lines(&path).unwrap();
        assert!(bad.is_empty());
        assert_eq!(lines.len(), 8 * 200);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("# header").count(), 1, "one header");
        for t in 0..8 {
            for i in 0..200 {
                let want = format!("some::fairly::long::test::path_{t} {i}");
                assert_eq!(lines.iter().filter(|(_, l)| *l == want).count(), 1);
            }
        }
    }

    #[test]
    fn a_bad_byte_costs_only_its_line() {
        let path = temp("bad-byte.txt");
        std::fs::write(&path, b"# c\na 1\nb \xff 2\n\nc 3\n").unwrap();
        let (lines, bad) = read_lines(&path).unwrap();
        assert_eq!(lines, vec![(2, "a 1".to_string()), (5, "c 3".to_string())]);
        assert_eq!(
            bad,
            vec![BadLine {
                line: 3,
                reason: "not valid UTF-8".to_string()
            }]
        );
    }

    #[test]
    fn a_missing_file_has_no_lines() {
        let path = temp("missing.txt");
        assert_eq!(read_lines(&path).unwrap(), (Vec::new(), Vec::new()));
    }
}
