//! Issue #21, part 2: file uploads. Each attack is sent for real over HTTP
//! and the test asserts the refusal *and* that nothing changed: the handler
//! did not run, nothing was stored, and the temp dir is empty afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis::action::upload::{
    FileKey, FileStore, LocalDisk, Upload, UploadRules, download, refuse_cross_site,
};
use portcullis::prelude::*;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{BuildError, Config, MasterSecret, Portcullis};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";
const CAP: u64 = 64 * 1024;

struct Doc;
impl UploadRules for Doc {
    const MAX_BYTES: u64 = CAP;
    const TYPES: &'static [&'static str] = &["image/png", "application/pdf", "text/plain"];
}

#[derive(Clone)]
struct State {
    runs: Arc<AtomicU64>,
    store: Arc<LocalDisk>,
    store_dir: PathBuf,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
struct Attach {
    #[garde(length(max = 100))]
    note: String,
    #[garde(skip)]
    file: Upload<Doc>,
}

#[derive(Deserialize, garde::Validate)]
struct Maybe {
    #[garde(length(max = 100))]
    title: String,
    #[garde(skip)]
    file: Option<Upload<Doc>>,
}

#[derive(Deserialize, garde::Validate)]
struct Note {
    #[garde(length(max = 100))]
    text: String,
}

#[derive(Serialize, Dto)]
struct Stored {
    key: String,
    name: String,
    kind: String,
    len: u64,
    sha256: String,
    note: String,
}

#[derive(Serialize, Dto)]
struct Seen {
    had_file: bool,
}

const ATTACH: ActionRef<Attach, Stored> = ActionRef::new("files.attach");
const ATTACH_FAILS: ActionRef<Attach, ()> = ActionRef::new("files.attach_fails");
const MAYBE: ActionRef<Maybe, Seen> = ActionRef::new("files.maybe");
const NOTE: ActionRef<Note, ()> = ActionRef::new("notes.add");

struct Setup {
    client: TestClient,
    state: State,
    temp: PathBuf,
    _dirs: Vec<tempdir::Dir>,
}

mod tempdir {
    /// A directory removed when the test ends.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(label: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "portcullis-uploads-test-{label}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn serve_file(
    AxumState(state): AxumState<State>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = refuse_cross_site(&headers) {
        return refused;
    }
    let Some(key) = FileKey::parse(&key) else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    match state.store.get(&key).await {
        Ok(Some(file)) => download(file, "report \"final\".png", "image/png"),
        _ => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

fn app(config: Config, state: State) -> Result<portcullis::App, BuildError> {
    let pages = Router::new()
        .route("/files/{key}", get(serve_file))
        .with_state(state.clone());
    Portcullis::new(config, state)
        .actions(|a| {
            a.add(
                action(ATTACH)
                    .public()
                    .limit(per_ip(10_000).per_minute())
                    .mutates(&["none"])
                    .not_idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, input: Valid<Attach>| async move {
                            let state = cx.state().clone();
                            state.runs.fetch_add(1, Ordering::SeqCst);
                            let Attach { note, file } = input.into_inner();
                            let key = FileKey::random();
                            let dto = Stored {
                                key: key.as_str().to_owned(),
                                name: file.file_name().to_owned(),
                                kind: file.content_type().to_owned(),
                                len: file.len(),
                                sha256: file.sha256_hex().to_owned(),
                                note,
                            };
                            state
                                .store
                                .put(&key, file.into_staged())
                                .await
                                .map_err(|e| ActionError::internal(e.to_string()))?;
                            Ok(dto)
                        },
                    ),
            )
            .add(
                action(ATTACH_FAILS)
                    .public()
                    .limit(per_ip(10_000).per_minute())
                    .mutates(&["none"])
                    .not_idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, _: Valid<Attach>| async move {
                            cx.state().runs.fetch_add(1, Ordering::SeqCst);
                            Err(ActionError::internal("the app's database is down"))
                        },
                    ),
            )
            .add(
                action(MAYBE)
                    .public()
                    .limit(per_ip(10_000).per_minute())
                    .read_only()
                    .handler(
                        |_: Cx<State>, _: MaybeViewer, input: Valid<Maybe>| async move {
                            Ok(Seen {
                                had_file: input.file.is_some(),
                            })
                        },
                    ),
            )
            .add(
                action(NOTE)
                    .public()
                    .limit(per_ip(10_000).per_minute())
                    .mutates(&["none"])
                    .idempotent()
                    .handler(|cx: Cx<State>, _: MaybeViewer, _: Valid<Note>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }),
            );
        })
        .pages(pages)
        .build(tower_sessions::MemoryStore::default())
}

async fn setup_with(tune: impl FnOnce(&mut Config)) -> Setup {
    let temp = tempdir::Dir::new("temp");
    let store = tempdir::Dir::new("store");
    let mut config = Config::new(MasterSecret::from_bytes(vec![21; 32]).unwrap());
    config.uploads.dir = temp.0.clone();
    config.uploads.deadline = Duration::from_secs(3);
    tune(&mut config);
    let state = State {
        runs: Arc::default(),
        store: Arc::new(LocalDisk::new(&store.0).unwrap()),
        store_dir: store.0.clone(),
    };
    let app = app(config, state.clone()).expect("app builds");
    Setup {
        client: TestClient::start(&app).await,
        state,
        temp: temp.0.clone(),
        _dirs: vec![temp, store],
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

impl Setup {
    fn runs(&self) -> u64 {
        self.state.runs.load(Ordering::SeqCst)
    }
    fn stored(&self) -> Vec<String> {
        files_in(&self.state.store_dir)
    }
    /// Temp files are removed when the request's future drops; give the
    /// server a moment after the response before looking.
    async fn assert_temp_empty(&self) {
        for _ in 0..50 {
            if files_in(&self.temp).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("temp files left behind: {:?}", files_in(&self.temp));
    }
    /// Asserts the attack changed nothing.
    async fn assert_nothing_kept(&self) {
        assert_eq!(self.runs(), 0, "the handler ran");
        assert!(
            self.stored().is_empty(),
            "a file was stored: {:?}",
            self.stored()
        );
        self.assert_temp_empty().await;
    }
}

fn field_error(r: &TestResponse, field: &str) -> String {
    r.json()["fieldErrors"][field][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_png_is_stored_and_served_back_only_as_an_attachment() {
    let s = setup().await;
    let r = s
        .client
        .upload(
            ATTACH,
            &[("note", "logo")],
            &[("file", "logo.png", PNG.to_vec())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dto = r.result();
    assert_eq!(dto["name"], "logo.png");
    assert_eq!(dto["kind"], "image/png");
    assert_eq!(dto["len"], PNG.len() as u64);
    assert_eq!(dto["note"], "logo");
    assert_eq!(s.stored(), vec![dto["key"].as_str().unwrap().to_owned()]);
    s.assert_temp_empty().await;

    let file = s
        .client
        .get(&format!("/files/{}", dto["key"].as_str().unwrap()))
        .await;
    assert_eq!(file.status, 200);
    assert_eq!(&file.body[..], PNG);
    let disposition = file.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    // The name is sanitised again (no quotes to break out of the header).
    assert_eq!(
        disposition,
        "attachment; filename=\"report final.png\"; filename*=UTF-8''report%20final.png"
    );
    assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        file.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    assert_eq!(
        file.header("cross-origin-resource-policy"),
        Some("same-origin")
    );
}

#[tokio::test]
async fn a_download_asked_for_by_another_site_is_refused() {
    let s = setup().await;
    let r = s
        .client
        .upload(ATTACH, &[("note", "")], &[("file", "a.png", PNG.to_vec())])
        .await;
    let key = r.result()["key"].as_str().unwrap().to_owned();
    let url = s.client.url(&format!("/files/{key}"));
    let http = reqwest::Client::new();
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let r = http.get(&url).header(header, value).send().await.unwrap();
        assert_eq!(r.status(), 403, "{header}: {value}");
        assert!(!r.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }
    // A path that is not a key never reaches the disk.
    let r = http
        .get(s.client.url("/files/..%2F..%2Fetc%2Fpasswd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_oversized_file_declared_in_content_length_is_refused_before_reading() {
    let s = setup().await;
    let path = s.client.path(ATTACH);
    let mut stream = tokio::net::TcpStream::connect(s.client.addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\norigin: {}\r\nsec-fetch-site: same-origin\r\naccept: application/json\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: {}\r\n\r\n",
        s.client.addr(),
        s.client.origin(),
        50 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Not a byte of the body is sent: the answer comes from the headers.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn an_oversized_file_streamed_without_a_length_is_cut_at_its_cap() {
    let s = setup().await;
    // Chunked: the server learns the size only by reading.
    let mut big = PNG.to_vec();
    big.resize(CAP as usize + 1, 0);
    let body = multipart(
        "B",
        &[
            ("note", None, b"x".to_vec()),
            ("file", Some("big.png"), big),
        ],
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .client
        .post(&s.client.path(ATTACH))
        .header("origin", s.client.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "multipart/form-data; boundary=B")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 KiB"),
        "{}",
        r.text()
    );
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn wrong_magic_bytes_for_the_declared_type_are_refused_before_the_disk() {
    let s = setup().await;
    // A Windows executable named and labelled as a PNG.
    let mut exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    exe.resize(2048, 0);
    let r = s
        .client
        .upload(ATTACH, &[("note", "")], &[("file", "cat.png", exe)])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        field_error(&r, "file").contains("PNG, PDF or plain text"),
        "{}",
        r.text()
    );
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn an_svg_with_a_script_is_not_an_image_nor_text() {
    let s = setup().await;
    for (name, bytes) in [
        (
            "pic.png",
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(document.cookie)\"/>"[..],
        ),
        (
            "pic.svg",
            &b"<?xml version=\"1.0\"?><svg><script>alert(1)</script></svg>"[..],
        ),
        (
            "page.txt",
            &b"\n  <html><script>fetch('/steal')</script>"[..],
        ),
    ] {
        let r = s
            .client
            .upload(ATTACH, &[("note", "")], &[("file", name, bytes.to_vec())])
            .await;
        assert_eq!(r.status, 422, "{name}: {}", r.text());
    }
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn path_traversal_and_control_characters_in_names_stay_labels() {
    let s = setup().await;
    let r = s
        .client
        .upload(
            ATTACH,
            &[("note", "")],
            &[(
                "file",
                "../../../../tmp/evil\tX:1\u{202e}gnp.txt",
                b"plain words".to_vec(),
            )],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dto = r.result();
    assert_eq!(dto["name"], "evilX1gnp.txt");
    assert_eq!(dto["kind"], "text/plain");
    // Stored under the server's key, nowhere else.
    assert_eq!(s.stored(), vec![dto["key"].as_str().unwrap().to_owned()]);
    assert!(!Path::new("/tmp/evil").exists());
    // A raw CR LF in the part's header ends its file name early: the part
    // is no file part any more, and a text part cannot fill a file field.
    let r = raw_multipart(
        &s,
        ATTACH,
        &[
            ("note", None, Vec::new()),
            ("file", Some("a\r\nX-Injected: 1.png"), PNG.to_vec()),
        ],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(s.stored().len(), 1);
    s.assert_temp_empty().await;
}

#[tokio::test]
async fn thousands_of_tiny_parts_are_refused_at_the_part_cap() {
    let s = setup().await;
    let parts: Vec<(String, Option<&str>, Vec<u8>)> = (0..5000)
        .map(|i| (format!("p{i}"), None, b"x".to_vec()))
        .collect();
    let parts: Vec<(&str, Option<&str>, Vec<u8>)> = parts
        .iter()
        .map(|(n, f, b)| (n.as_str(), *f, b.clone()))
        .collect();
    let mut all = vec![("file", Some("a.png"), PNG.to_vec())];
    all.extend(parts);
    let r = raw_multipart(&s, ATTACH, &all).await;
    assert_eq!(r.status, 413, "{}", r.text());
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn a_slow_upload_is_cut_at_the_deadline_and_leaves_nothing() {
    let s = setup_with(|c| c.uploads.deadline = Duration::from_secs(1)).await;
    let path = s.client.path(ATTACH);
    let mut stream = tokio::net::TcpStream::connect(s.client.addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\norigin: {}\r\nsec-fetch-site: same-origin\r\naccept: application/json\r\ncontent-type: multipart/form-data; boundary=B\r\ntransfer-encoding: chunked\r\n\r\n",
        s.client.addr(),
        s.client.origin()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n";
    let mut first = start.to_vec();
    first.extend_from_slice(PNG);
    stream
        .write_all(format!("{:x}\r\n", first.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(&first).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    // The file is on disk now, half received.
    let began = std::time::Instant::now();
    let mut answer = Vec::new();
    // Trickle a byte every 200 ms until the server answers.
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => {
                let n = n.unwrap();
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"1\r\n\0\r\n").await.is_err() { break; }
                assert!(began.elapsed() < Duration::from_secs(10), "no deadline");
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn a_stalled_upload_is_cut_at_the_idle_timeout_and_gives_its_slot_back() {
    let s = setup_with(|c| {
        c.uploads.deadline = Duration::from_secs(60);
        c.uploads.idle = Duration::from_secs(1);
        c.uploads.slots_per_caller = 1;
    })
    .await;
    let path = s.client.path(ATTACH);
    let mut stream = tokio::net::TcpStream::connect(s.client.addr())
        .await
        .unwrap();
    let mut body =
        b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    body.extend_from_slice(PNG);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\norigin: {}\r\nsec-fetch-site: same-origin\r\naccept: application/json\r\ncontent-type: multipart/form-data; boundary=B\r\ncontent-length: 30000\r\n\r\n",
        s.client.addr(),
        s.client.origin()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    // Then nothing: cut after the idle timeout, not the 60 s deadline.
    let began = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("cut long before the deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(10));
    s.assert_nothing_kept().await;
    // The slot is free again for the same caller.
    let r = s
        .client
        .upload(ATTACH, &[("note", "")], &[("file", "b.png", PNG.to_vec())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_dropped_connection_mid_file_leaves_nothing() {
    let s = setup().await;
    let path = s.client.path(ATTACH);
    let mut stream = tokio::net::TcpStream::connect(s.client.addr())
        .await
        .unwrap();
    let mut body =
        b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    body.extend_from_slice(PNG);
    body.resize(body.len() + 20_000, 7);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\norigin: {}\r\nsec-fetch-site: same-origin\r\naccept: application/json\r\ncontent-type: multipart/form-data; boundary=B\r\ncontent-length: 60000\r\n\r\n",
        s.client.addr(),
        s.client.origin()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    // Wait until the temp file exists, then hang up.
    for _ in 0..100 {
        if !files_in(&s.temp).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files_in(&s.temp).len(), 1, "the file was being received");
    drop(stream);
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn a_failing_handler_leaves_no_temp_file() {
    let s = setup().await;
    let r = s
        .client
        .upload(
            ATTACH_FAILS,
            &[("note", "")],
            &[("file", "a.png", PNG.to_vec())],
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(s.runs(), 1);
    assert!(s.stored().is_empty());
    s.assert_temp_empty().await;
}

#[tokio::test]
async fn a_text_part_or_another_encoding_cannot_pose_as_a_file() {
    let s = setup().await;
    // The decoder's own token format, sent as text: refused.
    let r = raw_multipart(
        &s,
        ATTACH,
        &[
            ("note", None, b"".to_vec()),
            ("file", None, b"0.abc".to_vec()),
        ],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        field_error(&r, "file").contains("choose a file"),
        "{}",
        r.text()
    );
    let r = s
        .client
        .call(ATTACH, &[("note", ""), ("file", "0.abc")])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = s
        .client
        .call_json(ATTACH, &serde_json::json!({"note": "", "file": "0.abc"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn files_are_refused_where_no_upload_field_is_declared() {
    let s = setup().await;
    // An action without upload fields.
    let r = s
        .client
        .upload(NOTE, &[("text", "hi")], &[("text2", "a.png", PNG.to_vec())])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    // A text field of an upload action given a file.
    let r = s
        .client
        .upload(
            ATTACH,
            &[],
            &[
                ("note", "a.png", PNG.to_vec()),
                ("file", "b.png", PNG.to_vec()),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        field_error(&r, "note").contains("does not accept a file"),
        "{}",
        r.text()
    );
    // An undeclared field given a file.
    let r = s
        .client
        .upload(
            ATTACH,
            &[("note", "")],
            &[
                ("file", "b.png", PNG.to_vec()),
                ("isAdmin", "c.png", PNG.to_vec()),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    // Two files for one field.
    let r = s
        .client
        .upload(
            ATTACH,
            &[("note", "")],
            &[
                ("file", "a.png", PNG.to_vec()),
                ("file", "b.png", PNG.to_vec()),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(field_error(&r, "file").contains("one file"), "{}", r.text());
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn an_optional_file_input_left_empty_is_absent() {
    let s = setup().await;
    // What a browser sends for a file input with no file chosen.
    let r = raw_multipart(
        &s,
        MAYBE,
        &[
            ("title", None, b"t".to_vec()),
            ("file", Some(""), Vec::new()),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.result()["had_file"], false);
    let r = s
        .client
        .upload(
            MAYBE,
            &[("title", "t")],
            &[("file", "a.pdf", b"%PDF-1.7\n%\xe2\xe3\n".to_vec())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.result()["had_file"], true);
    // A required one left empty is a field error.
    let r = raw_multipart(
        &s,
        ATTACH,
        &[("note", None, b"".to_vec()), ("file", Some(""), Vec::new())],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    s.assert_nothing_kept().await;
}

#[tokio::test]
async fn one_caller_cannot_hold_every_upload_slot() {
    let s = setup_with(|c| {
        c.uploads.slots = 2;
        c.uploads.slots_per_caller = 1;
    })
    .await;
    // The first upload from this address stalls mid-file, holding its slot.
    let path = s.client.path(ATTACH);
    let mut stream = tokio::net::TcpStream::connect(s.client.addr())
        .await
        .unwrap();
    let mut body =
        b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    body.extend_from_slice(PNG);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\norigin: {}\r\nsec-fetch-site: same-origin\r\naccept: application/json\r\ncontent-type: multipart/form-data; boundary=B\r\ncontent-length: 30000\r\n\r\n",
        s.client.addr(),
        s.client.origin()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    for _ in 0..100 {
        if !files_in(&s.temp).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second one from the same address: 429 before its body is read.
    let r = s
        .client
        .upload(ATTACH, &[("note", "")], &[("file", "b.png", PNG.to_vec())])
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    // Another caller still gets the remaining slot.
    let other = s
        .client
        .new_session()
        .from_address("127.0.0.2".parse().unwrap());
    let r = other
        .upload(ATTACH, &[("note", "")], &[("file", "c.png", PNG.to_vec())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.runs(), 1);
    // The stalled one is cut at the deadline; its slot comes back.
    drop(stream);
    s.assert_temp_empty().await;
    let r = s
        .client
        .upload(ATTACH, &[("note", "")], &[("file", "d.png", PNG.to_vec())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_replayed_upload_runs_once_and_a_different_file_cannot_reuse_the_key() {
    let s = setup().await;
    let send = |bytes: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new().text("note", "n");
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("a.txt"),
        );
        s.client
            .post(&s.client.path(ATTACH))
            .header("origin", s.client.origin())
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .header("idempotency-key", "upload-1")
            .multipart(form)
            .send()
    };
    let first = TestResponse::read(send(b"one".to_vec()).await.unwrap()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = TestResponse::read(send(b"one".to_vec()).await.unwrap()).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.result()["key"], first.result()["key"]);
    let other = TestResponse::read(send(b"two".to_vec()).await.unwrap()).await;
    assert_eq!(other.status, 422, "{}", other.text());
    // The same bytes under another name are another request too.
    let mut form = reqwest::multipart::Form::new().text("note", "n");
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(b"one".to_vec()).file_name("b.txt"),
    );
    let renamed = s
        .client
        .post(&s.client.path(ATTACH))
        .header("origin", s.client.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("idempotency-key", "upload-1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 422);
    assert_eq!(s.runs(), 1);
    assert_eq!(s.stored().len(), 1);
    s.assert_temp_empty().await;
}

#[tokio::test]
async fn the_manifest_names_every_upload_field_with_its_cap() {
    let s = setup().await;
    let manifest = serde_json::to_value(s.client.app().manifest()).unwrap();
    let attach = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "files.attach")
        .unwrap();
    assert_eq!(
        attach["uploadFields"],
        serde_json::json!([{"name": "file", "maxBytes": CAP, "types": ["image/png", "application/pdf", "text/plain"], "optional": false}])
    );
    let maybe = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "files.maybe")
        .unwrap();
    assert_eq!(maybe["uploadFields"][0]["optional"], true);
}

struct Svg;
impl UploadRules for Svg {
    const MAX_BYTES: u64 = 1024;
    const TYPES: &'static [&'static str] = &["image/png", "image/svg+xml"];
}

#[derive(Deserialize, garde::Validate)]
#[allow(dead_code)] // never decoded: the app does not build
struct Avatar {
    #[garde(skip)]
    file: Upload<Svg>,
}

#[test]
fn an_upload_field_that_accepts_svg_does_not_build() {
    const AVATAR: ActionRef<Avatar, ()> = ActionRef::new("avatar.set");
    let err = Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![3; 32]).unwrap()),
        (),
    )
    .actions(|a| {
        a.add(
            action(AVATAR)
                .authenticated()
                .mutates(&["none"])
                .idempotent()
                .handler(|_: Cx<()>, _: Viewer, _: Valid<Avatar>| async move { Ok(()) }),
        );
    })
    .build(tower_sessions::MemoryStore::default())
    .err()
    .expect("refused at build");
    assert!(
        matches!(err, BuildError::UploadType { field: "file", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("image/svg+xml"), "{err}");
}

#[tokio::test]
async fn store_conformance_local_disk() {
    let dir = tempdir::Dir::new("conformance");
    let store = LocalDisk::new(&dir.0).unwrap();
    conformance(&store).await;
    assert_eq!(files_in(&dir.0), Vec::<String>::new(), "nothing left");
}

/// What any `FileStore` must do; run it against another store to check
/// it (`store_conformance_local_disk`, `store_conformance_s3`).
async fn conformance(store: &impl FileStore) {
    let key = FileKey::random();
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "nothing under a fresh key"
    );
    let staged_dir = tempdir::Dir::new("staged");
    let staged = stage(&staged_dir.0, b"hello store").await;
    store.put(&key, staged).await.unwrap();
    assert!(
        files_in(&staged_dir.0).is_empty(),
        "the temp file was moved or removed, not left behind"
    );
    let file = store.get(&key).await.unwrap().expect("stored");
    assert_eq!(file.len, 11);
    let bytes = axum::body::to_bytes(file.body, 1024).await.unwrap();
    assert_eq!(&bytes[..], b"hello store");

    // Another key is another file: an empty one, kept while the first goes.
    let other = FileKey::random();
    store
        .put(&other, stage(&staged_dir.0, b"").await)
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "gone after delete"
    );
    store.delete(&key).await.unwrap();
    let file = store.get(&other).await.unwrap().expect("still stored");
    assert_eq!(file.len, 0);
    assert!(
        axum::body::to_bytes(file.body, 1024)
            .await
            .unwrap()
            .is_empty()
    );
    store.delete(&other).await.unwrap();
    assert!(store.get(&other).await.unwrap().is_none());
    assert!(files_in(&staged_dir.0).is_empty());
}

async fn stage(dir: &Path, bytes: &[u8]) -> portcullis::action::upload::StagedFile {
    portcullis::action::upload::StagedFile::from_bytes_in(dir, "t.txt", "text/plain", bytes)
        .await
        .unwrap()
}

/// A multipart body by hand (reqwest's builder cannot send a text part
/// where a file is expected, or five thousand parts quickly).
fn multipart(boundary: &str, parts: &[(&str, Option<&str>, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = file {
            body.extend_from_slice(
                format!("; filename=\"{f}\"\r\ncontent-type: application/octet-stream").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

async fn raw_multipart<I, O>(
    s: &Setup,
    action: ActionRef<I, O>,
    parts: &[(&str, Option<&str>, Vec<u8>)],
) -> TestResponse {
    let r = s
        .client
        .post(&s.client.path(action))
        .header("origin", s.client.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(multipart("XyZ", parts))
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

/// `S3Store` against a real S3-compatible server (s3s-fs, which checks
/// SigV4 signatures; `scripts/test` installs and starts it and sets
/// `TEST_S3_ENDPOINT`). Without a server the tests fail, saying how to
/// start one.
mod s3 {
    use std::time::Instant;

    use portcullis::action::upload::{S3Config, S3Store, StoreError};

    use super::*;

    const BUCKET: &str = "portcullis-test";

    fn env_or(name: &str, default: &str) -> String {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    fn endpoint() -> String {
        env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:8014")
    }

    /// The test server's credentials, each test under a prefix of its own.
    fn config() -> S3Config {
        let mut config = S3Config::new(
            endpoint(),
            "us-east-1",
            BUCKET,
            env_or("TEST_S3_ACCESS_KEY_ID", "portcullis-test"),
            env_or("TEST_S3_SECRET_ACCESS_KEY", "portcullis-test-secret"),
        );
        config.prefix = format!("t-{:016x}/", rand::random::<u64>());
        config
    }

    /// A store on the test bucket (created here if missing).
    async fn store() -> S3Store {
        let store = S3Store::new(config()).unwrap();
        match store.create_bucket().await {
            Ok(()) => {}
            Err(e @ (StoreError::Unreachable { .. } | StoreError::TimedOut { .. })) => panic!(
                "no S3-compatible server answers at {} ({e}). scripts/test starts one; by hand: \
                 cargo install s3s-fs --version 0.14.1 --features binary --locked, then \
                 s3s-fs --host 127.0.0.1 --port 8014 --access-key portcullis-test \
                 --secret-key portcullis-test-secret \"$(mktemp -d)\" \
                 (or set TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY_ID, TEST_S3_SECRET_ACCESS_KEY)",
                endpoint()
            ),
            Err(e) => panic!("the test bucket could not be made at {}: {e}", endpoint()),
        }
        store
    }

    /// Everything a failed request's error shows, for the leak checks.
    fn texts(e: &StoreError) -> String {
        format!("{e} | {e:?}")
    }

    /// No secret, no signed query (`X-Amz-Signature=`, `X-Amz-Credential=`,
    /// any `?`) in what an error shows.
    fn assert_no_leak(e: &StoreError, secret: &str) {
        let t = texts(e);
        assert!(!t.contains(secret), "the secret in the error: {t}");
        let lower = t.to_ascii_lowercase();
        for needle in ["x-amz-", "signature=", "credential=", "?"] {
            assert!(!lower.contains(needle), "`{needle}` in the error: {t}");
        }
    }

    #[tokio::test]
    async fn store_conformance_s3() {
        conformance(&store().await).await;
    }

    #[tokio::test]
    async fn an_8_mib_file_round_trips_byte_identical() {
        let store = store().await;
        let bytes: Vec<u8> = (0..8 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let dir = tempdir::Dir::new("s3-large");
        let key = FileKey::random();
        let started = Instant::now();
        store.put(&key, stage(&dir.0, &bytes).await).await.unwrap();
        let put = started.elapsed();
        let started = Instant::now();
        let file = store.get(&key).await.unwrap().expect("stored");
        assert_eq!(file.len, bytes.len() as u64);
        let back = axum::body::to_bytes(file.body, 16 * 1024 * 1024)
            .await
            .unwrap();
        let get = started.elapsed();
        assert!(back[..] == bytes[..], "the bytes differ");
        eprintln!("8 MiB: put {put:?}, get {get:?}");
        store.delete(&key).await.unwrap();
        assert!(files_in(&dir.0).is_empty());
    }

    #[tokio::test]
    async fn a_put_sends_its_length_and_not_a_chunked_body() {
        // S3 refuses `Transfer-Encoding: chunked` on a plain PUT (411), so
        // the streamed temp file must go out with its `Content-Length`. A
        // listener that records the request head and answers 200.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + len {
                        socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        return (head, request[end + 4..].to_vec());
                    }
                }
            }
        });
        let mut c = config();
        c.endpoint = format!("http://{addr}");
        let store = S3Store::new(c).unwrap();
        let dir = tempdir::Dir::new("s3-length");
        let bytes = vec![7u8; 300 * 1024];
        let key = FileKey::random();
        store.put(&key, stage(&dir.0, &bytes).await).await.unwrap();
        let (head, body) = seen.await.unwrap();
        assert!(head.starts_with("put /portcullis-test/t-"), "{head}");
        assert!(head.contains("content-length: 307200"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(body.len(), bytes.len());
        assert!(files_in(&dir.0).is_empty());
    }

    #[tokio::test]
    async fn wrong_credentials_are_a_store_error_and_store_nothing() {
        let good = store().await;
        let dir = tempdir::Dir::new("s3-wrong");
        let key = FileKey::random();
        let wrong_secret = {
            let mut c = config();
            c.prefix = good.object_key(&key).replace(key.as_str(), "");
            c.secret_access_key = "not-the-secret".to_owned();
            S3Store::new(c).unwrap()
        };
        let unknown_key = {
            let mut c = config();
            c.prefix = good.object_key(&key).replace(key.as_str(), "");
            c.access_key_id = "AKIDNOBODYHAS".to_owned();
            S3Store::new(c).unwrap()
        };
        // AWS says `InvalidAccessKeyId` for an unknown key, s3s `NotSignedUp`.
        for (store, code) in [
            (&wrong_secret, Some("SignatureDoesNotMatch")),
            (&unknown_key, None),
        ] {
            let started = Instant::now();
            let err = store
                .put(&key, stage(&dir.0, b"should not land").await)
                .await
                .unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(10));
            match &err {
                StoreError::Backend {
                    operation: "put",
                    status,
                    code: Some(c),
                } => {
                    assert_eq!(status.as_u16(), 403, "{err}");
                    if let Some(code) = code {
                        assert_eq!(c, code, "{err}");
                    }
                }
                other => panic!("expected a refused put, got {other:?}"),
            }
            assert_no_leak(&err, "not-the-secret");
            assert!(files_in(&dir.0).is_empty(), "the temp file is still gone");
            assert!(
                good.get(&key).await.unwrap().is_none(),
                "nothing was stored"
            );
            let err = store.get(&key).await.err().expect("a refused get");
            assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
        }
        // A refused delete deletes nothing.
        good.put(&key, stage(&dir.0, b"kept").await).await.unwrap();
        let err = wrong_secret.delete(&key).await.unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
        assert!(good.get(&key).await.unwrap().is_some(), "still there");
        good.delete(&key).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_at_once() {
        // A port nothing listens on (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = config();
        c.endpoint = format!("http://127.0.0.1:{port}");
        let store = S3Store::new(c).unwrap();
        let dir = tempdir::Dir::new("s3-unreachable");
        let key = FileKey::random();
        let started = Instant::now();
        let err = store
            .put(&key, stage(&dir.0, b"x").await)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Unreachable {
                    operation: "put",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_no_leak(&err, "portcullis-test-secret");
        assert!(store.get(&key).await.is_err());
        assert!(store.delete(&key).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(files_in(&dir.0).is_empty());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_cut_at_the_timeout() {
        // Accepts connections, reads what comes, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        let mut c = config();
        c.endpoint = format!("http://{addr}");
        c.timeout = Duration::from_millis(800);
        let store = S3Store::new(c).unwrap();
        let dir = tempdir::Dir::new("s3-silent");
        let key = FileKey::random();
        let started = Instant::now();
        let err = store
            .put(&key, stage(&dir.0, b"x").await)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TimedOut {
                    operation: "put",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_no_leak(&err, "portcullis-test-secret");
        let err = store.get(&key).await.err().expect("a get timeout");
        assert!(
            matches!(
                err,
                StoreError::TimedOut {
                    operation: "get",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store.delete(&key).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TimedOut {
                    operation: "delete",
                    ..
                }
            ),
            "{err:?}"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(2400) && elapsed < Duration::from_secs(6),
            "three requests of 0.8 s each took {elapsed:?}"
        );
        assert!(files_in(&dir.0).is_empty());
    }

    #[tokio::test]
    async fn a_refused_request_does_not_leak_the_secret_or_the_signed_url() {
        // The attack: a log line or an error page shows the error text. A
        // refused signature (servers answer with the string they signed)
        // and an unknown key must show the status and code only; the
        // transport errors are checked in the two tests above.
        let secret = "S3cr3t/that+must=never&leak";
        let dir = tempdir::Dir::new("s3-leak");
        let key = FileKey::random();
        let mut c = config();
        c.secret_access_key = secret.to_owned();
        let wrong = S3Store::new(c).unwrap();
        let mut c = config();
        c.access_key_id = "AKIDNOBODYHAS".to_owned();
        c.secret_access_key = secret.to_owned();
        let unknown = S3Store::new(c).unwrap();
        for store in [&wrong, &unknown] {
            let errors = [
                store
                    .put(&key, stage(&dir.0, b"x").await)
                    .await
                    .unwrap_err(),
                store.get(&key).await.err().expect("refused"),
                store.delete(&key).await.unwrap_err(),
            ];
            for err in &errors {
                assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
                assert_no_leak(err, secret);
            }
        }
        let debug = format!("{wrong:?} {:?}", config());
        assert!(!debug.contains(secret), "{debug}");
        assert!(!debug.contains("portcullis-test-secret"), "{debug}");
        assert!(store().await.get(&key).await.unwrap().is_none());
    }
}
