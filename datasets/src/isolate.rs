//! Reading Parquet files in a child process first, so a file that crashes
//! Polars' reader costs a clear error instead of the whole program.
//!
//! Why: on some corrupt files Polars' Parquet reader aborts the process (a
//! panic where it cannot unwind, or an allocation of what the file claims;
//! see `fuzz/known-aborts/`), which no error handling inside the process
//! can stop. The footer checks in [`crate::parquet_footer`] stop the
//! classes found so far; this stops the rest: a program that opts in
//! (`swarmctl`, `swarm-train`) first reads the file in a copy of itself,
//! and only reads it in-process when the copy came through. A child that
//! dies on a signal marks the file corrupt. Cost: a Parquet file is read
//! twice.
//!
//! Opting in is explicit ([`serve_or_enable`] at the top of `main`):
//! the child is the program's own executable, which must recognise the
//! request before doing anything else. Test binaries and fuzz targets do
//! not opt in, so they keep reading in-process (an abort there fails the
//! test, which is what a test should do).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first argument that asks an executable to read one file (the second
/// argument) and exit. An argument rather than an environment variable, so
/// a stray variable in a user's shell cannot turn a program into a reader.
const REQUEST: &str = "--swarm-datasets-read-parquet-child";
/// The child's exit code for "read it, and it is an ordinary bad file".
const REFUSED: i32 = 3;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Call first in `main`. In a child started by [`probe`], reads the
/// requested file and exits (0: it reads; 3: an ordinary import error;
/// anything else: it crashed). Otherwise turns child reads on for this
/// process and returns.
pub fn serve_or_enable() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == REQUEST) {
        let Some(path) = args.next() else { std::process::exit(REFUSED) };
        let code = match crate::import::import(Path::new(&path), Some(crate::import::Format::Parquet)) {
            Ok(_) => 0,
            Err(_) => REFUSED,
        };
        std::process::exit(code);
    }
    ENABLED.store(true, Ordering::SeqCst);
}

/// Whether this process reads Parquet files in a child first.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// Reads `path` in a child copy of this executable. `Err` only when the
/// child did not come through (with how it ended); an ordinary import
/// error in the child is `Ok`, and the in-process read reports it.
pub(crate) fn probe(path: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program to start a reader: {e}"))?;
    let out = Command::new(exe)
        .arg(REQUEST)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot start a reader process: {e}"))?;
    match out.status.code() {
        Some(0) | Some(REFUSED) => Ok(()),
        code => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = last_words(&stderr);
            let how = match code {
                Some(c) => format!("exit code {c}"),
                None => {
                    #[cfg(unix)]
                    {
                        use std::os::unix::process::ExitStatusExt;
                        out.status.signal().map_or("a signal".to_string(), |s| format!("signal {s}"))
                    }
                    #[cfg(not(unix))]
                    {
                        "a signal".to_string()
                    }
                }
            };
            Err(if last.is_empty() {
                format!("the reader crashed ({how})")
            } else {
                format!("the reader crashed ({how}: {last})")
            })
        }
    }
}

/// What a crashed reader said: the message of its first panic, else an
/// allocation failure, else its last line.
fn last_words(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
        return lines.get(i + 1).copied().unwrap_or(lines[i]);
    }
    if let Some(l) = lines.iter().find(|l| l.starts_with("memory allocation of")) {
        return l;
    }
    lines.last().copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_message_is_the_panic_or_the_allocation() {
        let panic = "thread 'a' panicked at x.rs:1:2:\nrange end index 2265 out of range\nnote: run with RUST_BACKTRACE=1\nthread caused non-unwinding panic. aborting.\n";
        assert_eq!(last_words(panic), "range end index 2265 out of range");
        assert_eq!(
            last_words("memory allocation of 51254115224 bytes failed\n"),
            "memory allocation of 51254115224 bytes failed"
        );
        assert_eq!(last_words("\n  something else\n\n"), "something else");
        assert_eq!(last_words(""), "");
    }

    /// Without opting in, nothing is read in a child (test binaries and fuzz
    /// targets must not start copies of themselves).
    #[test]
    fn child_reads_are_off_unless_a_program_opts_in() {
        assert!(!enabled());
    }
}
