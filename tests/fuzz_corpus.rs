//! The fuzz targets' bodies (fuzz/targets.rs) on every saved input: the seed
//! corpus (fuzz/corpus/<target>/*) and the inputs that once crashed a target
//! (fuzz/regressions/<target>-*). A panic fails the test, naming the file.
//! Real fuzzing, which needs cargo-fuzz, is `fuzz/run` (fuzz/README.md).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files in DIR, sorted, without the README.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Runs TARGET's body on FILE; Err names the file and the panic.
fn replay(target: &str, file: &Path) -> Result<(), String> {
    let body =
        targets::by_name(target).ok_or_else(|| format!("{}: no fuzz target {target:?}", file.display()))?;
    let data = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    std::panic::catch_unwind(|| body(&data)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{} (target {target}) panics: {msg}", file.display())
    })
}

#[test]
fn every_corpus_input_runs_clean() {
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in inputs_dirs(&fuzz_dir().join("corpus")) {
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        for file in inputs(&dir) {
            count += 1;
            failures.extend(replay(&target, &file).err());
        }
    }
    assert!(count > 0, "no corpus under fuzz/corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_regression_input_runs_clean() {
    // Named <target>-<what>: the target is the part before the first dash.
    let failures: Vec<String> = inputs(&fuzz_dir().join("regressions"))
        .iter()
        .filter_map(|file| {
            let name = file.file_name()?.to_str()?;
            let target = name.split('-').next().unwrap_or_default();
            replay(target, file).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The target directories under fuzz/corpus.
fn inputs_dirs(corpus: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
