//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the
//! functions the fuzz targets call, on stable Rust: every seed, every input
//! the fuzzer kept and every former crash stays a regression test in CI.

use std::path::PathBuf;

use portcullis_bench::harness;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "empty corpus {}", dir.display());
    for path in entries {
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn decode_urlencoded_corpus() {
    replay("decode_urlencoded", harness::decode_urlencoded);
}

#[test]
fn decode_multipart_corpus() {
    replay("decode_multipart", harness::decode_multipart);
}

#[test]
fn decode_json_corpus() {
    replay("decode_json", harness::decode_json);
}

#[test]
fn seal_open_corpus() {
    replay("seal_open", harness::seal_open);
}

#[test]
fn action_id_corpus() {
    replay("action_id", harness::action_id);
}

#[test]
fn origin_corpus() {
    replay("origin", harness::origin);
}
