//! File uploads as action input: [`Upload<R>`] fields, received by a
//! streaming multipart decoder ([`receive`]), kept in [`FileStore`]s and
//! served back only as attachments ([`download`]).
//!
//! Why the framework does this and not the app: every peer (Next.js,
//! SvelteKit, Leptos, Rails) hands the app a file and leaves the bounds to
//! it, so the usual upload endpoint buffers whatever arrives, trusts the
//! client's content type and extension, and serves the file back inline
//! from the app's origin (stored XSS through an SVG or HTML "image"). Here:
//!
//! * **Caps before bytes.** Every upload field names its byte cap in its
//!   [`UploadRules`] (`MAX_BYTES` has no default: a field without a cap does
//!   not compile, and `portcullis audit` reports a manifest entry without
//!   one). A request's cap is its text cap plus the sum of its fields' caps;
//!   a larger declared `Content-Length` is 413 before a byte is read, and a
//!   stream that runs over is cut at the cap (413). The whole upload has a
//!   deadline ([`UploadConfig::deadline`], default 120 s; 408), parts are
//!   capped like any multipart body (64), and only [`UploadConfig::slots`]
//!   uploads run at once in the process, at most
//!   [`UploadConfig::slots_per_caller`] per caller (429 beyond).
//! * **Types from bytes.** The declared types are checked against the
//!   file's magic bytes (`infer`) before anything is written to disk; the
//!   client's `Content-Type` and the file name's extension are ignored.
//!   Types a browser would run (HTML, SVG, XML, scripts) cannot be declared
//!   (the app does not build, [`crate::BuildError::UploadType`]).
//! * **Names are labels.** The client's file name is sanitised
//!   ([`sanitize_file_name`]) and kept only as a label; files are stored
//!   under random [`FileKey`]s, never under a name a client chose.
//! * **Nothing left behind.** A file is streamed to a temp file in
//!   [`UploadConfig::dir`] that is deleted when its [`Upload`] drops:
//!   after a refusal, a timeout, a dropped connection, a failed handler, or
//!   a handler that did not [`FileStore::put`] it.
//! * **Kept where the app says.** [`LocalDisk`] keeps files in a
//!   directory; `S3Store` (feature `s3`) in an S3-compatible bucket, whose
//!   files are still served only through [`download`].
//! * **Served as downloads.** [`download`] sends `Content-Disposition:
//!   attachment`, `nosniff`, a sandboxing CSP and `Cross-Origin-Resource-Policy:
//!   same-origin`; [`refuse_cross_site`] turns away downloads another site
//!   asks for.

mod receive;
#[cfg(feature = "s3")]
mod s3;
mod store;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

pub use receive::{
    InputFields, Received, SNIFF_BYTES, SlotGuard, UploadSlots, receive, request_cap, sniff,
};
#[cfg(feature = "s3")]
pub use s3::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_TIMEOUT, S3Config, S3ConfigError,
    S3Store,
};
pub use store::{
    FileKey, FileStore, LocalDisk, StoreError, StoredFile, download, refuse_cross_site,
};

/// The bounds of one upload field. Implement it on a unit struct and use it
/// as the field's type parameter:
///
/// ```rust
/// use portcullis::action::upload::{Upload, UploadRules};
///
/// pub struct Attachment;
/// impl UploadRules for Attachment {
///     const MAX_BYTES: u64 = 5 * 1024 * 1024;
///     const TYPES: &'static [&'static str] = &["image/png", "image/jpeg", "application/pdf"];
/// }
///
/// #[derive(serde::Deserialize, garde::Validate)]
/// struct Attach {
///     #[garde(skip)] // checked by the decoder: cap, type, name
///     file: Upload<Attachment>,
/// }
/// ```
pub trait UploadRules: Send + Sync + 'static {
    /// The largest file accepted, in bytes. No default: every upload field
    /// says how much it accepts.
    const MAX_BYTES: u64;
    /// The accepted types as MIME types, recognised by magic bytes
    /// (`infer`'s list: images, PDF, archives, office documents, audio,
    /// video…) or `text/plain` (UTF-8 text that does not start with `<`).
    /// HTML, SVG, XML and scripts cannot be accepted.
    const TYPES: &'static [&'static str];
}

/// What one upload field declares, for the decoder, the manifest and the
/// audit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadField {
    /// The wire name of the field.
    pub name: &'static str,
    /// [`UploadRules::MAX_BYTES`].
    pub max_bytes: u64,
    /// [`UploadRules::TYPES`].
    pub types: &'static [&'static str],
    /// Whether the field may be left empty (`Option<Upload<R>>`).
    pub optional: bool,
}

/// Why an upload field's declared types cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypeError {
    /// A type that a browser would render or run from the app's origin.
    #[error(
        "`{0}` cannot be an upload type: a browser would run it (serve such content from a separate origin, not through an action)"
    )]
    Active(&'static str),
    /// A type the magic-byte check does not know.
    #[error("`{0}` is not a type the magic-byte check recognises")]
    Unknown(&'static str),
    /// An upload field that accepts nothing.
    #[error("an upload field must accept at least one type and at least one byte")]
    Empty,
}

/// The text type accepted without magic bytes.
pub const PLAIN_TEXT: &str = "text/plain";

/// Checks declared types at build time.
pub fn check_types(field: &UploadField) -> Result<(), TypeError> {
    if field.types.is_empty() || field.max_bytes == 0 {
        return Err(TypeError::Empty);
    }
    for ty in field.types {
        if *ty == PLAIN_TEXT {
            continue;
        }
        let lower = ty.to_ascii_lowercase();
        if lower.contains("html")
            || lower.contains("svg")
            || lower.contains("xml") && !lower.contains("openxmlformats")
            || lower.contains("javascript")
            || lower.contains("script")
        {
            return Err(TypeError::Active(ty));
        }
        if !infer::is_mime_supported(ty) {
            return Err(TypeError::Unknown(ty));
        }
    }
    Ok(())
}

/// Where uploads go while a request runs, and how many may run.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Directory for temp files (default: `portcullis-uploads` in the OS
    /// temp dir; `PORTCULLIS_UPLOAD_DIR`). Files here live only as long as
    /// their request, unless the handler moves them into a store.
    pub dir: PathBuf,
    /// Deadline for receiving a whole upload request (default 120 s;
    /// `PORTCULLIS_UPLOAD_DEADLINE_SECS`).
    pub deadline: Duration,
    /// Upload requests received at once in this process (default 16).
    pub slots: usize,
    /// Upload requests received at once per signed-in caller (default 2).
    pub slots_per_caller: usize,
    /// Upload requests received at once per client address (default 4):
    /// many accounts behind one address share it.
    pub slots_per_address: usize,
    /// How long an upload may send nothing before it is cut (default
    /// 15 s; 408): a stalled upload gives its slot back long before
    /// [`UploadConfig::deadline`].
    pub idle: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            dir: std::env::temp_dir().join("portcullis-uploads"),
            deadline: Duration::from_secs(120),
            slots: 16,
            slots_per_caller: 2,
            slots_per_address: 4,
            idle: Duration::from_secs(15),
        }
    }
}

/// A received file, checked against `R`: its size is within
/// `R::MAX_BYTES`, its magic bytes match one of `R::TYPES`, its name is
/// sanitised. The bytes are in a temp file that is deleted when this value
/// drops, unless a [`FileStore`] took it.
pub struct Upload<R> {
    file: StagedFile,
    _rules: PhantomData<fn() -> R>,
}

impl<R> Upload<R> {
    /// The sanitised file name the client sent (a label; never a path).
    pub fn file_name(&self) -> &str {
        &self.file.file_name
    }
    /// The type recognised from the file's bytes (one of `R::TYPES`).
    pub fn content_type(&self) -> &'static str {
        self.file.content_type
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.file.len
    }
    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.file.len == 0
    }
    /// SHA-256 of the bytes, lowercase hex.
    pub fn sha256_hex(&self) -> &str {
        &self.file.sha256_hex
    }
    /// The temp file (read it, do not keep the path: it is deleted when the
    /// upload drops).
    pub fn path(&self) -> &Path {
        &self.file.path
    }
    /// The received file, for a [`FileStore`].
    pub fn into_staged(self) -> StagedFile {
        self.file
    }
}

impl<R> fmt::Debug for Upload<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("file_name", &self.file.file_name)
            .field("content_type", &self.file.content_type)
            .field("len", &self.file.len)
            .finish()
    }
}

/// A received file in its temp file (deleted on drop).
pub struct StagedFile {
    pub(crate) path: tempfile::TempPath,
    /// The sanitised client file name.
    pub file_name: String,
    /// The type recognised from the bytes.
    pub content_type: &'static str,
    /// Size in bytes.
    pub len: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256_hex: String,
}

impl StagedFile {
    /// The temp file's path (deleted when this value drops).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A staged file from bytes already in memory, in a temp file in `dir`:
    /// for seeding a store, for a store's conformance test, or for a file
    /// the app made itself. No type check runs: `content_type` is trusted.
    pub async fn from_bytes_in(
        dir: &Path,
        file_name: &str,
        content_type: &'static str,
        bytes: &[u8],
    ) -> std::io::Result<Self> {
        use sha2::Digest;
        std::fs::create_dir_all(dir)?;
        let (file, path) = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(dir)?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        Ok(StagedFile {
            path,
            file_name: sanitize_file_name(file_name),
            content_type,
            len: bytes.len() as u64,
            sha256_hex: receive::hex(&sha2::Sha256::digest(bytes)),
        })
    }
}

/// Makes a client's file name safe to show and to put in a
/// `Content-Disposition` header: the last path segment only (`/` and `\`),
/// no control characters, none of `<>:"|?*`, no leading dots or spaces, at
/// most 120 characters; `file` when nothing is left. It is still only a
/// label: nothing uses it as a path.
pub fn sanitize_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        .take(120)
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches([' ', '.']);
    if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

// ---- Deserialization: an `Upload<R>` takes its file from the request. ----
//
// serde gives a field no context, so the received files reach `Upload<R>`
// the way sealed arguments reach `Sealed<T>`: the request's `Opening`
// (`crate::input`) enters them into a thread-local ([`enter`]) around the
// one synchronous serde call, and the guard clears it again, also on error
// or unwind. The second thread-local is registration's: [`probe`] asks an
// input type which of its fields are uploads, and with which rules.
//
// State: both are written only by the decoder and the shape probe on the
// current thread for one synchronous call; nothing is shared between
// requests. The decoder put `name=<index>.<sha256>` into the
// form pairs for each received file; no client can: a text part named like
// an upload field is refused before decoding, and a body that is not
// multipart carries no files, so its `Upload` fields fail.

/// The files of one request, each taken at most once.
#[derive(Default)]
pub struct Staged {
    files: std::sync::Mutex<Vec<Option<(&'static str, StagedFile)>>>,
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Staged")
    }
}

impl Staged {
    /// Files received so far.
    pub(crate) fn len(&self) -> usize {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn push(&self, field: &'static str, file: StagedFile) -> usize {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.push(Some((field, file)));
        files.len() - 1
    }

    pub(crate) fn take(&self, index: usize) -> Option<StagedFile> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.get_mut(index)?.take().map(|(_, f)| f)
    }
}

/// The serde message an `Upload` field fails with when it has no file.
pub(crate) const NEEDS_FILE: &str =
    "choose a file to upload (send the form as multipart/form-data)";

impl<'de, R: UploadRules> Deserialize<'de> for Upload<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if probe_hit(R::MAX_BYTES, R::TYPES) {
            return Err(<D::Error as de::Error>::custom("upload field probe"));
        }
        let token = String::deserialize(d)?;
        let index = token
            .split_once('.')
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .ok_or_else(|| <D::Error as de::Error>::custom(NEEDS_FILE))?;
        take(index)
            .map(|file| Upload {
                file,
                _rules: PhantomData,
            })
            .ok_or_else(|| <D::Error as de::Error>::custom(NEEDS_FILE))
    }
}

/// An upload field's rules as the probe reports them: (cap, types).
type ProbedRules = (u64, &'static [&'static str]);

thread_local! {
    static STAGED: std::cell::RefCell<Option<Arc<Staged>>> = const { std::cell::RefCell::new(None) };
    static PROBE: std::cell::Cell<Option<Option<ProbedRules>>> =
        const { std::cell::Cell::new(None) };
}

/// Makes `staged` visible to `Upload<R>` fields on this thread until the
/// guard drops. The guard is `!Send`, so it cannot span an `.await`.
pub(crate) fn enter(staged: Option<Arc<Staged>>) -> StagedGuard {
    let previous = STAGED.with(|c| c.replace(staged));
    StagedGuard {
        previous,
        _not_send: PhantomData,
    }
}

/// Restores the previous files when dropped.
pub(crate) struct StagedGuard {
    previous: Option<Arc<Staged>>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for StagedGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        STAGED.with(|c| *c.borrow_mut() = previous);
    }
}

/// Takes file number `index` of the request being decoded on this thread.
fn take(index: usize) -> Option<StagedFile> {
    STAGED.with(|c| c.borrow().as_ref().and_then(|s| s.take(index)))
}

fn probe_hit(max_bytes: u64, types: &'static [&'static str]) -> bool {
    PROBE.with(|p| match p.get() {
        Some(_) => {
            p.set(Some(Some((max_bytes, types))));
            true
        }
        None => false,
    })
}

/// Runs `f` (a probe deserialization of one field) and returns the rules
/// of the `Upload<R>` that reported itself, if one did.
pub(crate) fn probe(f: impl FnOnce()) -> Option<ProbedRules> {
    PROBE.with(|p| p.set(Some(None)));
    f();
    PROBE.with(|p| p.take()).flatten()
}

/// Shared handle for the store in app state.
pub type SharedStore = Arc<dyn FileStore>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_controls_and_bidi_overrides() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(
            sanitize_file_name("a\r\nSet-Cookie: x=1.png"),
            "aSet-Cookie x=1.png"
        );
        assert_eq!(sanitize_file_name("report\u{202E}fdp.exe"), "reportfdp.exe");
        assert_eq!(sanitize_file_name("..."), "file");
        assert_eq!(sanitize_file_name(""), "file");
        assert_eq!(sanitize_file_name("<script>.png"), "script.png");
        assert_eq!(sanitize_file_name(&"x".repeat(500)).len(), 120);
    }

    #[test]
    fn active_and_unknown_types_cannot_be_declared() {
        let field = |types| UploadField {
            name: "f",
            max_bytes: 10,
            types,
            optional: false,
        };
        assert_eq!(check_types(&field(&["image/png", "text/plain"])), Ok(()));
        assert_eq!(
            check_types(&field(&["image/svg+xml"])),
            Err(TypeError::Active("image/svg+xml"))
        );
        assert_eq!(
            check_types(&field(&["text/html"])),
            Err(TypeError::Active("text/html"))
        );
        assert_eq!(
            check_types(&field(&["image/x-nope"])),
            Err(TypeError::Unknown("image/x-nope"))
        );
        assert_eq!(check_types(&field(&[])), Err(TypeError::Empty));
    }
}
