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

/// Fuzz crash (seal_open, 2026-11-25): `Sealer::seal_at` sealed a value
/// whose text was longer than `MAX_SEALED_LEN`, which `open_at` refuses —
/// a seal that could never open (every submit of that form a 400). Now
/// `seal_at` refuses it with `SealError::TooLong`, and whatever it does seal
/// opens.
#[test]
fn regress_seal_longer_than_open_cap() {
    use portcullis::__private::seal::{Binding, MAX_SEALED_LEN, SealError, Sealer};
    use portcullis::security::{KeyRing, MasterSecret};
    let sealer = Sealer::new(&KeyRing::new(&MasterSecret::generate(), None));
    let big = "\u{1}".repeat(2_000); // JSON-escaped to 12 KB
    match sealer.seal_at(&big, "a", &Binding::Anonymous, u64::MAX) {
        Err(SealError::TooLong(n)) => assert!(n > MAX_SEALED_LEN),
        other => panic!("expected TooLong, got {other:?}"),
    }
    // The largest string that fits still round-trips.
    let mut n = MAX_SEALED_LEN;
    let sealed = loop {
        if let Ok(s) = sealer.seal_at(&"x".repeat(n), "a", &Binding::Anonymous, u64::MAX) {
            break s;
        }
        n -= 1;
    };
    assert!(sealed.len() <= MAX_SEALED_LEN);
    let opened: String = sealer
        .open_at(&sealed, "a", &Binding::Anonymous, 0)
        .expect("opens");
    assert_eq!(opened.len(), n);
    replay("seal_open", harness::seal_open);
}

#[test]
fn flash_corpus() {
    replay("flash", harness::flash);
}
