//! Fuzz harnesses for the importers: what the `cargo fuzz` targets in
//! `fuzz/` run on their input, and what the unit tests below replay on the
//! committed corpus and on every input a fuzzer found a problem with
//! (`fuzz/regressions/`). Importers read files, so the input is written to
//! a temporary file first.

use std::path::PathBuf;

use crate::import::{self, Format};

/// A temporary file of this process and thread, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(ext: &str, data: &[u8]) -> Scratch {
        let name = format!("swarm-fuzz-{}-{:?}.{ext}", std::process::id(), std::thread::current().id());
        let p = std::env::temp_dir().join(name.replace(['(', ')'], ""));
        std::fs::write(&p, data).expect("temp dir writable");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks what an import returned: counts add up, and the frame holds
/// only finite values with the canonical columns.
fn check(r: Result<import::Imported, import::ImportError>) {
    let Ok(i) = r else { return };
    assert!(i.bad_rows <= i.rows, "{} bad rows of {}", i.bad_rows, i.rows);
    let value = i.frame.column("value").expect("a value column").f64().expect("f64 values");
    assert!(value.null_count() == 0, "null value imported");
    assert!(value.into_no_null_iter().all(f64::is_finite), "non-finite value imported");
    for c in ["timestamp", "entity", "metric"] {
        assert!(i.frame.column(c).is_ok(), "no {c} column");
    }
}

/// A CSV file in one of the CSV formats (first byte) or auto-detected.
pub fn import_csv(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let format = match sel % 4 {
        0 => Some(Format::AzureV1),
        1 => Some(Format::Alibaba),
        2 => Some(Format::LongCsv),
        _ => None,
    };
    let f = Scratch::new("csv", body);
    check(quiet(|| import::import(&f.0, format)));
}

/// A Parquet file.
pub fn import_parquet(data: &[u8]) {
    let f = Scratch::new("parquet", data);
    check(quiet(|| import::import(&f.0, Some(Format::Parquet))));
}

/// Runs `f` with a silent panic hook, so that a panic the importer catches
/// (inside Polars) is not taken for a crash by libFuzzer's hook, which
/// aborts on any panic. A panic that escapes `f` still fails the target.
fn quiet<R>(f: impl FnOnce() -> R) -> R {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn replay(target: &str, f: fn(&[u8])) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let r = std::panic::catch_unwind(|| f(&data));
                assert!(r.is_ok(), "{target} fails on {}", e.path().display());
                n += 1;
            }
        }
        assert!(n > 0, "no corpus for {target} in fuzz/corpus/{target}");
    }

    #[test]
    fn the_fuzz_corpora_replay_cleanly() {
        replay("import_csv", super::import_csv);
        replay("import_parquet", super::import_parquet);
    }
}
