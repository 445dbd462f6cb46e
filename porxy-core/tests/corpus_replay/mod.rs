//! Replaying a fuzzer's corpus on stable (shared by the core's and the binary's replays).

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/target`; at least one must be there.
pub fn replay(target: &str, check: fn(&[u8])) {
    // Both packages sit beside fuzz/.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails its check",
            path.display()
        );
        count += 1;
    }
    assert!(count > 0, "{target}: an empty corpus in {}", dir.display());
}
