//! Fragments, the render cache and revalidation (stage 9's engine).
//!
//! A page is composed of named *fragments*: async maud functions with a name,
//! a parameter (e.g. a project id) and the *tags* of the data they read. The
//! framework renders one fragment by key (`"project:42"`) for the current
//! viewer, or a whole page from fragments, and caches each rendering.
//!
//! * **Composition.** A fragment may contain child fragments through
//!   [`RenderCx::slot`]; the cache keeps the parent's *template* with a
//!   marker where the child goes, and the child is looked up (cached on its
//!   own) when the parent is served. So renaming one project re-renders one
//!   row, not the list around it. Markers are HTML comments that maud's
//!   escaping makes impossible to forge from user text (`<` becomes `&lt;`).
//! * **Expansions.** A fragment with children is also cached *expanded*
//!   (children filled in), so a cached page is one lookup and one version
//!   check per tag its parts read, not one lookup per fragment. It is served
//!   only while every part would itself be served fresh: any moved tag, a
//!   part path-revalidated or gone from the cache, a TTL passed for its
//!   oldest part, and the fragment is expanded from its parts again (see
//!   `Expansion`).
//! * **Hand-off.** A list that has read its rows hands each row to its child
//!   slot ([`RenderCx::slot_with`]); a child rendered in the same expansion
//!   takes it ([`RenderCx::handed`]) instead of querying again, so an
//!   uncached list of 100 rows is one query, not 101. A child rendered on
//!   its own (a rename's re-render, a cache miss under a cached list) gets
//!   nothing and reads its data itself. Handed data never outlives the
//!   expansion, is never cached, never crosses viewers (same request, same
//!   viewer; a per-viewer parent hands nothing to a shared child), and is
//!   refused when a tag the child declared moved after the parent began
//!   rendering — the child then reads fresh data, so a cached row never
//!   holds data older than the tag versions it recorded.
//! * **Scope.** A fragment is either `per_viewer` (its cache key includes the
//!   viewer id; it is never served to anyone else) or `shared` (its render
//!   function is not even given a viewer, so it cannot leak one).
//! * **Tags.** Each cached entry remembers the version of every tag it read.
//!   `update_tag` bumps a tag *hard*: entries that read it are re-rendered
//!   before they are served again, and the fragments the caller's page shows
//!   are re-rendered into the action's own response (read-your-own-writes).
//!   `revalidate_tag` bumps it *soft*: the next reader gets the stale copy
//!   while exactly one background render refreshes it (stale-while-revalidate).
//! * **Bounded.** Entries live in a `moka` cache weighed in bytes, with a TTL.
//! * **Many instances.** With a tag bus ([`crate::store::TagBus`]; Redis
//!   pub/sub when Redis is configured), every bump is published on it;
//!   other instances apply it. If the subscription drops, the
//!   instance clears its cache (it may have missed bumps) and resubscribes.
//!   The bus *degrades* rather than fails: while Redis is down a bump is
//!   applied locally only (publishing runs under the Redis deadline, from a
//!   bounded queue, never on the request path), so other instances may serve
//!   a stale fragment until its TTL ([`CacheConfig::ttl`]) or until Redis is
//!   back — then every instance clears its render cache, because bumps may
//!   have been lost meanwhile. The subscriber reconnects with exponential
//!   backoff and jitter (250 ms doubling to 30 s); the outage is logged once
//!   down, once a minute while it lasts, once up ([`crate::store::Outage`]).
//!
//! Render code gets a [`RenderCx`], which has no effect methods: there is no
//! way to call `update_tag`, set a cookie or redirect from a render function
//! (see `tests/ui/render_cannot_mutate.rs`).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::future::BoxFuture;
use maud::{Markup, PreEscaped};

use crate::error::ActionError;
use crate::form::FormContext;
use crate::store::TagBus;
use crate::viewer::Viewer;

const MARKER_OPEN: &str = "<!--pc-fragment:";
const MARKER_CLOSE: &str = "-->";

/// The searchers for [`MARKER_OPEN`] and [`MARKER_CLOSE`], built once:
/// `str::find` builds a new two-way searcher on every call, which was 11 %
/// of a cached page.
static MARKERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
    std::sync::LazyLock::new(|| {
        [
            memchr::memmem::Finder::new(MARKER_OPEN),
            memchr::memmem::Finder::new(MARKER_CLOSE),
        ]
    });
/// How deep fragments may nest.
const MAX_DEPTH: usize = 8;
/// Bumps queued for publishing on the tag bus, at most.
pub const BUS_QUEUE: usize = 1024;
/// Tag-bus subscriber reconnection: first delay and cap.
const BUS_BACKOFF_MIN: Duration = Duration::from_millis(250);
const BUS_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Sleeps a random time in `[delay/2, delay]` ("equal jitter", so instances
/// that lost Redis together do not reconnect in lock-step) and returns the
/// next delay (doubled, capped).
async fn backoff(delay: &mut Duration) -> Duration {
    let jittered = delay.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    tokio::time::sleep(jittered).await;
    (*delay * 2).min(BUS_BACKOFF_MAX)
}

/// At most this many distinct fragment keys are read from one request's
/// `Portcullis-Fragments` header (the rest are ignored).
pub const MAX_REQUESTED: usize = 256;
/// At most this many bytes of the `Portcullis-Fragments` header are read
/// (keys that end past it are ignored).
pub const MAX_REQUESTED_BYTES: usize = 16 * 1024;
/// The re-rendered fragments of one action response stop at this many bytes
/// of HTML; fragments past it are left out (the client keeps its copy, and a
/// reload shows the fresh one).
pub const MAX_AFFECTED_BYTES: usize = 1024 * 1024;
/// At most this many fragment keys are remembered per page path (for
/// `revalidate_path`).
pub const MAX_KEYS_PER_PATH: usize = 4096;
/// The most a page render reserves up front ([`Engine::page_size_hint`]).
const MAX_SIZE_HINT: usize = 64 * 1024;

/// What a render reserves, given the last page's length.
fn reserve_for(last_page: usize) -> usize {
    last_page.clamp(1024, MAX_SIZE_HINT)
}

/// The fragment keys a client says its page shows, from the
/// `Portcullis-Fragments` header: de-duplicated, well-formed keys only, at
/// most [`MAX_REQUESTED`] of them from the first [`MAX_REQUESTED_BYTES`]
/// bytes. The header is client input: without these caps one 2 KB header
/// naming one fragment a thousand times made a 0.7 MB response.
pub fn requested_keys(header: &str) -> Vec<&str> {
    let mut end = header.len().min(MAX_REQUESTED_BYTES);
    // Cut at a separator so a key is never read half.
    if end < header.len() {
        end = header[..end]
            .rfind(|c: char| c.is_ascii_whitespace())
            .unwrap_or(0);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for key in header[..end].split_ascii_whitespace() {
        if out.len() >= MAX_REQUESTED {
            break;
        }
        if valid_key(key) && seen.insert(key) {
            out.push(key);
        }
    }
    out
}

/// The form of a page path under which its fragment keys are remembered and
/// `revalidate_path` looks them up: no query, no empty or `.` segments, no
/// trailing slash, and leading zeros stripped from all-digit segments
/// (`/projects/0042` and `/projects/42` are one page to the app's id parser,
/// and must not be two entries a client can multiply at will). Merging two
/// paths an app tells apart only makes a `revalidate_path` of either mark
/// both stale (a soft revalidation), never the reverse.
pub fn canonical_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len().min(1024));
    for segment in path.split('/') {
        // `%34%32` is `42` to axum's `Path` extractor, so it is here too.
        let segment = percent_decode(segment);
        let segment = segment.as_ref();
        if segment.is_empty() || segment == "." {
            continue;
        }
        out.push('/');
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            let trimmed = segment.trim_start_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        } else {
            out.push_str(segment);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `%XX` escapes decoded (invalid ones kept as sent); `/` produced by a
/// decoded `%2F` stays inside its segment.
fn percent_decode(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return std::borrow::Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// What a render function gets: the app state, child slots, read-only forms
/// and a way to declare the tags of the data it reads. No effects.
pub struct RenderCx<S> {
    state: S,
    engine: Arc<Engine>,
    io: RenderIo,
}

impl<S> RenderCx<S> {
    /// The app state (read it; a render function must not change anything).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Declares that this rendering reads data tagged `tag`. Call it
    /// *before* reading the data: the tag's version is taken now, so an
    /// update that lands while rendering still expires this entry.
    pub fn tag(&self, tag: impl Into<String>) {
        let tag = tag.into();
        let v = self.engine.version(&tag).version;
        self.io
            .tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((tag, v));
    }

    /// A form for `action`. Cached fragments are shared by all sessions
    /// of a viewer, so values bound with `bind_sealed` here are bound to no
    /// session and will not open; bind sealed values in the page instead.
    /// The no-JS return path defaults to `/`; set it with `return_to`. A
    /// cached fragment does not know the page it is shown on, so a failed
    /// no-JS submission comes back to the return path too (no `_back`).
    pub fn form<In, Out>(&self, action: crate::ActionRef<In, Out>) -> crate::form::Form {
        let mut form = crate::form::Form::for_action(
            &self.engine.forms,
            action.name(),
            "/".to_owned(),
            crate::seal::Binding::Anonymous,
        );
        form.page_known = false;
        form
    }

    /// A child fragment at this point of the template (rendered and cached on
    /// its own, for the same viewer). `key` is `name` or `name:param`.
    pub fn slot(&self, key: &str) -> Markup {
        slot(key)
    }

    /// A child slot like [`RenderCx::slot`] that hands `data` to the child
    /// if it is rendered in this same expansion (not served from the cache):
    /// a list passes each row it has read to that row's fragment, which
    /// takes it with [`RenderCx::handed`] instead of querying again.
    ///
    /// Never cached and never shown to another viewer: the data lives until
    /// this expansion ends; only a child of the same scope gets it (a
    /// per-viewer fragment hands nothing to a shared one).
    pub fn slot_with<T: Send + 'static>(&self, key: &str, data: T) -> Markup {
        let marker = slot(key);
        if !marker.0.is_empty() {
            self.io
                .handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_owned(), Box::new(data));
        }
        marker
    }

    /// What the parent handed to this fragment with
    /// [`RenderCx::slot_with`], if it did, the type matches, and no tag this
    /// rendering declared so far (declare them first, as always) was bumped
    /// since the parent began rendering — otherwise `None`, and the fragment
    /// reads its data itself.
    pub fn handed<T: 'static>(&self) -> Option<T> {
        let given = self
            .io
            .given
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let moved = self
            .io
            .tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(_, seen)| *seen > given.snapshot);
        if moved {
            return None;
        }
        given.data.downcast::<T>().ok().map(|b| *b)
    }

    /// A group of forms alike around `body` ([`crate::render::form_group`]
    /// with this app's sign-in paths): the rows' forms, made with
    /// [`crate::render::Form::in_group`], share its one error region.
    pub fn form_group(&self, body: Markup) -> Markup {
        let forms = &self.engine.forms;
        crate::form::form_group(&forms.login_path, &forms.reauth_path, body)
    }
}

/// A child-fragment placeholder (see [`RenderCx::slot`]); usable from page
/// templates too.
pub fn slot(key: &str) -> Markup {
    if !valid_key(key) {
        tracing::error!(key, "invalid fragment key");
        return PreEscaped(String::new());
    }
    PreEscaped(format!("{MARKER_OPEN}{key}{MARKER_CLOSE}"))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Splits `name:param`.
fn split_key(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

/// What one rendering collects besides its markup (dynamic tags, data for
/// its children) and what its parent handed to it.
///
/// Request-scoped: written by the render function (app code) through its
/// [`RenderCx`]; bounded by what that function renders (one hand-off per
/// slot key, a later one for the same key replaces it); dropped when the
/// expansion of the parent ends (hand-offs no child took) or when the
/// child takes it. Nothing here is cached or shared between requests, so
/// one user's rendering cannot reach another's.
type RenderIo = Arc<RenderState>;

#[derive(Default)]
struct RenderState {
    tags: Mutex<Vec<(String, u64)>>,
    /// Data for child slots, by child key ([`RenderCx::slot_with`]).
    handed: Mutex<Handoffs>,
    /// What the parent handed to this rendering.
    given: Mutex<Option<Handoff>>,
}

type Handoffs = HashMap<String, Box<dyn Any + Send>>;

/// Data a parent handed to one child, with the parent's snapshot of the
/// engine's tag sequence taken before it read anything.
struct Handoff {
    data: Box<dyn Any + Send>,
    snapshot: u64,
}

/// What a parent's fresh rendering leaves for the children of this
/// expansion: its hand-offs, its snapshot, and whether it was per viewer.
struct Handing {
    data: Handoffs,
    snapshot: u64,
    per_viewer: bool,
}

type RenderFn = Arc<
    dyn Fn(
            Arc<Engine>,
            RenderIo,
            Option<Viewer>,
            String,
        ) -> BoxFuture<'static, Result<String, ActionError>>
        + Send
        + Sync,
>;
type TagsFn = Arc<dyn Fn(Option<&Viewer>, &str) -> Vec<String> + Send + Sync>;

/// A fragment definition, made with [`fragment`].
pub struct Fragment<S> {
    name: &'static str,
    per_viewer: bool,
    element: bool,
    tags: TagsFn,
    make: Box<dyn FnOnce(S) -> RenderFn + Send>,
}

/// Starts a fragment definition.
pub fn fragment(name: &'static str) -> FragmentBuilder {
    FragmentBuilder {
        name,
        tags: Arc::new(|_, _| Vec::new()),
        element: false,
    }
}

/// A fragment being defined: its name and tags, until
/// [`FragmentBuilder::per_viewer`] or [`FragmentBuilder::shared`] gives it
/// a render function and a scope.
#[must_use]
pub struct FragmentBuilder {
    name: &'static str,
    tags: TagsFn,
    element: bool,
}

impl FragmentBuilder {
    /// The render function returns exactly one element (a `li`, a `tr`),
    /// which becomes the fragment's root: it carries the `data-fragment`
    /// attribute itself instead of being wrapped in a `div` — valid inside
    /// a `ul` or `table`, and 11 bytes lighter per row. A rendering that
    /// does not start with an element is wrapped as usual.
    pub fn element(mut self) -> Self {
        self.element = true;
        self
    }

    /// The tags of the data this fragment reads, for a viewer and parameter.
    pub fn tags(
        mut self,
        tags: impl Fn(Option<&Viewer>, &str) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.tags = Arc::new(tags);
        self
    }

    /// Rendered per viewer and cached per viewer; anonymous requests get
    /// nothing rendered.
    pub fn per_viewer<S, F, Fut>(self, render: F) -> Fragment<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(RenderCx<S>, Viewer, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Markup, ActionError>> + Send + 'static,
    {
        let render = Arc::new(render);
        Fragment {
            name: self.name,
            per_viewer: true,
            element: self.element,
            tags: self.tags,
            make: Box::new(move |state: S| {
                Arc::new(
                    move |engine: Arc<Engine>,
                          io: RenderIo,
                          viewer: Option<Viewer>,
                          param: String| {
                        let render = render.clone();
                        let rcx = RenderCx {
                            state: state.clone(),
                            engine,
                            io,
                        };
                        Box::pin(async move {
                            let viewer = viewer.ok_or(ActionError::NotFound)?;
                            render(rcx, viewer, param).await.map(|m| m.into_string())
                        }) as BoxFuture<'static, _>
                    },
                )
            }),
        }
    }

    /// Rendered once for everybody; the render function gets no viewer.
    pub fn shared<S, F, Fut>(self, render: F) -> Fragment<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(RenderCx<S>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Markup, ActionError>> + Send + 'static,
    {
        let render = Arc::new(render);
        Fragment {
            name: self.name,
            per_viewer: false,
            element: self.element,
            tags: self.tags,
            make: Box::new(move |state: S| {
                Arc::new(
                    move |engine: Arc<Engine>,
                          io: RenderIo,
                          _viewer: Option<Viewer>,
                          param: String| {
                        let render = render.clone();
                        let rcx = RenderCx {
                            state: state.clone(),
                            engine,
                            io,
                        };
                        Box::pin(async move { render(rcx, param).await.map(|m| m.into_string()) })
                            as BoxFuture<'static, _>
                    },
                )
            }),
        }
    }
}

/// The app's fragment registry (see [`crate::Portcullis::fragments`]).
pub struct Fragments<S> {
    pub(crate) list: Vec<Fragment<S>>,
}

impl<S> Default for Fragments<S> {
    fn default() -> Self {
        Fragments { list: Vec::new() }
    }
}

impl<S> Fragments<S> {
    /// Registers a fragment; a name registered twice makes `build` fail with
    /// [`crate::BuildError::DuplicateFragment`].
    pub fn add(&mut self, f: Fragment<S>) -> &mut Self {
        self.list.push(f);
        self
    }
}

struct Def {
    name: &'static str,
    per_viewer: bool,
    /// Root is the rendered element itself ([`FragmentBuilder::element`]).
    element: bool,
    /// Set once a rendering of this fragment had child slots: only such
    /// fragments look for a cached [`Expansion`] (a leaf would only miss).
    parent: AtomicBool,
    tags: TagsFn,
    render: RenderFn,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    frag: u32,
    param: String,
    /// Viewer id for per-viewer fragments; `None` for shared ones.
    viewer: Option<i64>,
    /// The key of the fragment's [`Expansion`], not of its template.
    expanded: bool,
}

impl Key {
    fn with_expanded(self, expanded: bool) -> Key {
        Key { expanded, ..self }
    }
}

/// One cached rendering: a template (children as markers), or, for a key
/// with `expanded`, a whole expansion (children filled in).
struct Entry {
    template: Arc<str>,
    /// The tags read and their versions then (for an expansion: every
    /// part's, de-duplicated).
    tags: Vec<(String, u64)>,
    refreshing: AtomicBool,
    /// Set by `revalidate_path` for a page showing this entry, and when the
    /// entry leaves the cache (evicted, expired, replaced, cleared): the
    /// expansions holding it see it and are no longer served.
    path_stale: Arc<AtomicBool>,
    /// [`Engine::path_generation`] when rendered: an older entry is soft-stale.
    /// (An expansion: its oldest part's.)
    path_generation: u64,
    /// When rendered, for the TTL (an expansion: its oldest part's, so
    /// it never outlives what it contains).
    rendered: Instant,
    expansion: Option<Box<Expansion>>,
}

impl Entry {
    /// What the cache's bound counts for this entry (a rough byte count).
    fn weight(&self, key: &Key) -> u32 {
        let mut bytes = key.param.len() + self.template.len() + 64 * (1 + self.tags.len());
        if let Some(x) = &self.expansion {
            // (128: the box, and the page-map set `remembered` may keep.)
            bytes +=
                128 + 16 * x.parts.len() + x.keys.iter().map(|k| 64 + k.param.len()).sum::<usize>();
        }
        bytes.min(u32::MAX as usize) as u32
    }
}

/// A fragment with its children filled in, cached beside its template so
/// that a cached page is one lookup and one version check per tag, not one
/// lookup per fragment (a 100-row list was 100 cache lookups, key builds
/// and marker scans per page view).
///
/// * **Who writes it:** the engine, after expanding a fragment that has
///   children from parts that were all fresh; same scope as the fragment
///   (a shared fragment with any per-viewer part is never stored expanded,
///   so no viewer's part reaches another).
/// * **What bounds it:** it is an entry of the render cache, weighed with
///   its html, tags, parts and keys, under the same byte bound and TTL.
/// * **What removes it:** the cache (bound, TTL, `clear`); and it is not
///   served (the fragment is expanded from its parts again, and the
///   expansion rebuilt) once any tag a part read moved, any part was
///   path-revalidated or left the cache, `revalidate_path` could not find a
///   page, or its oldest part is older than the TTL. So it is never
///   fresher-looking than its parts would be served on their own. Nor is
///   it served where its levels would pass [`MAX_DEPTH`], or for a key
///   spelled `name:` (its html would carry that spelling to everyone).
/// * **When one user abuses it:** an expansion of a per-viewer fragment is
///   that viewer's; many of them only compete for the cache's bytes, like
///   templates do.
struct Expansion {
    /// How many levels of fragments it holds below its root: served only
    /// where that stays within [`MAX_DEPTH`], as expanding it would.
    height: usize,
    /// Every part's stale flag ([`Entry::path_stale`]).
    parts: Vec<Arc<AtomicBool>>,
    /// Every part's key, for `revalidate_path`'s page map.
    keys: Vec<Key>,
    /// The page-map set these keys were last added to: when the page's set
    /// is still that one, a page view adds nothing (a `Weak` keeps the
    /// allocation, so another set cannot take its address).
    remembered: Mutex<std::sync::Weak<std::sync::RwLock<HashSet<Key, FastHash>>>>,
}

/// What one expansion used, collected as it goes: the parts of every
/// fragment expanded, in order, so a fragment's own parts are the tail
/// added since it began.
#[derive(Default)]
struct Gather {
    tags: Vec<(String, u64)>,
    /// Per part: stale flag, when rendered, path generation.
    parts: Vec<(Arc<AtomicBool>, Instant, u64)>,
    keys: Vec<Key>,
    /// Parts that were served stale (they make no expansion).
    unfresh: usize,
    /// The deepest level expanded so far.
    deepest: usize,
    /// The root itself was served from its expansion.
    root: Option<Arc<Entry>>,
}

/// Where one fragment's parts begin in a [`Gather`].
#[derive(Clone, Copy, Default)]
struct Mark {
    tags: usize,
    parts: usize,
    keys: usize,
    unfresh: usize,
}

impl Gather {
    fn mark(&self) -> Mark {
        Mark {
            tags: self.tags.len(),
            parts: self.parts.len(),
            keys: self.keys.len(),
            unfresh: self.unfresh,
        }
    }
}

/// The hasher of the engine's maps (render cache, path map, tag versions):
/// aHash, seeded at random per map, instead of std's SipHash, which was an
/// eighth of a cached page's instructions (five lookups per fragment). The
/// keys are partly client-chosen (record ids, paths); random seeds keep a
/// client from precomputing colliding keys, the reason std uses SipHash.
type FastHash = ahash::RandomState;

/// The fragment keys rendered into one page path.
type PathKeys = Arc<std::sync::RwLock<HashSet<Key, FastHash>>>;

#[derive(Clone, Copy, Default)]
struct TagState {
    version: u64,
    /// The version of the last hard bump.
    hard: u64,
}

/// The most tag versions an engine remembers (the default bound of its
/// tag-version table).
pub const MAX_TAGS: usize = 100_000;

/// Tag versions: the current version of every tag that was bumped.
///
/// * **Who writes it:** `update_tag`/`revalidate_tag` from successful actions
///   (tags named by app code, typically after a scoped database write, so a
///   client picks them only indirectly, e.g. by creating records) and the
///   Redis tag bus (other instances' bumps).
/// * **What bounds it:** at most `max` tags ([`MAX_TAGS`] by default). Every
///   version comes from one engine-wide sequence, so versions are unique and
///   only grow.
/// * **What removes it:** when a bump would exceed the bound, the least
///   recently bumped tenth is forgotten — after the `floor` was raised to the
///   highest version among them. A forgotten (or never bumped) tag reads as
///   `floor`, hard. So a fragment cached before a forgotten bump sees a newer
///   hard version and re-renders: forgetting costs re-renders, never a stale
///   page.
/// * **When one user abuses it:** a user who makes many records (many
///   distinct tags) can push the map to its bound; the others then pay one
///   re-render of their cached fragments per eviction round, not stale data.
struct TagVersions {
    map: DashMap<String, TagState, FastHash>,
    /// The engine-wide version sequence.
    sequence: AtomicU64,
    /// What a tag not in `map` reads as (raised before anything is removed).
    floor: AtomicU64,
    max: usize,
    /// One eviction round at a time.
    evicting: Mutex<()>,
}

impl TagVersions {
    fn new(max: usize) -> Self {
        TagVersions {
            map: DashMap::with_hasher(FastHash::new()),
            sequence: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            max: max.max(10),
            evicting: Mutex::new(()),
        }
    }

    fn get(&self, tag: &str) -> TagState {
        match self.map.get(tag) {
            Some(t) => *t,
            None => {
                let floor = self.floor.load(Ordering::Acquire);
                TagState {
                    version: floor,
                    hard: floor,
                }
            }
        }
    }

    fn bump(&self, tag: &str, hard: bool) {
        if self.map.len() >= self.max && !self.map.contains_key(tag) {
            self.evict_oldest();
        }
        let version = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        let floor = self.floor.load(Ordering::Acquire);
        let mut t = self.map.entry(tag.to_owned()).or_insert(TagState {
            version: floor,
            hard: floor,
        });
        t.version = version;
        if hard {
            t.hard = version;
        }
    }

    /// Forgets the least recently bumped tenth of the tags, raising the
    /// floor to their highest version first.
    fn evict_oldest(&self) {
        let _round = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        if self.map.len() < self.max {
            return;
        }
        let mut versions: Vec<u64> = self.map.iter().map(|t| t.version).collect();
        let cut = versions.len() / 10;
        let (_, threshold, _) = versions.select_nth_unstable(cut);
        let threshold = *threshold;
        self.floor.fetch_max(threshold, Ordering::AcqRel);
        self.map.retain(|_, t| t.version > threshold);
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// The newest version handed out so far: every later bump is above it.
    fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }
}

/// Where the tag name of `html`'s first element ends (`<li` → 3), if
/// `html` starts with an element.
fn element_name_end(html: &str) -> Option<usize> {
    let rest = html.strip_prefix('<')?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let len = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .unwrap_or(rest.len());
    // `<li>` or `<li attr…>`: the name is followed by `>` or a space.
    matches!(rest.as_bytes().get(len), Some(b'>' | b' ')).then_some(len + 1)
}

impl Handing {
    /// The hand-off for `child`, if there is one it may have: a per-viewer
    /// parent's data goes to per-viewer children only (a shared child's
    /// cache entry is served to everyone).
    fn take(&mut self, engine: &Engine, child: &str, viewer: Option<&Viewer>) -> Option<Handoff> {
        let data = self.data.remove(child)?;
        let (_, def) = engine.key(child, viewer)?;
        if self.per_viewer && !def.per_viewer {
            tracing::debug!(
                fragment = child,
                "hand-off from a per-viewer fragment to a shared one dropped"
            );
            return None;
        }
        Some(Handoff {
            data,
            snapshot: self.snapshot,
        })
    }
}

/// One fragment's template as [`Engine::template`] found or rendered it.
struct Template {
    html: Arc<str>,
    /// What a fresh rendering hands to its children.
    handing: Option<Handing>,
    /// Its cache entry (none when caching is off).
    entry: Option<Arc<Entry>>,
    /// `false` when served stale (soft) while it is refreshed.
    fresh: bool,
}

enum Freshness {
    Fresh,
    Soft,
    Hard,
}

/// Cache settings.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Upper bound of cached template bytes (default 32 MiB). `0` turns the
    /// cache off: every fragment renders on every request (for measuring
    /// what the cache saves, or debugging a stale fragment).
    pub max_bytes: u64,
    /// Time to live of an entry (default 10 minutes).
    pub ttl: Duration,
    /// Upper bound of the page-path map behind `revalidate_path` (path bytes
    /// plus about 64 bytes per remembered fragment key; default 8 MiB).
    pub max_path_bytes: u64,
    /// Upper bound of remembered tag versions (default [`MAX_TAGS`]); past
    /// it the least recently bumped are forgotten, which re-renders, never
    /// serves stale (see `TagVersions`).
    pub max_tags: usize,
}

impl CacheConfig {
    /// No caching: every fragment renders on every request.
    pub fn disabled() -> Self {
        CacheConfig {
            max_bytes: 0,
            ..CacheConfig::default()
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 32 * 1024 * 1024,
            ttl: Duration::from_secs(600),
            max_path_bytes: 8 * 1024 * 1024,
            max_tags: MAX_TAGS,
        }
    }
}

/// The engine: definitions, cache, tag versions, and the optional bus.
pub struct Engine {
    defs: Vec<Def>,
    by_name: HashMap<&'static str, u32, FastHash>,
    cache: moka::sync::Cache<Key, Arc<Entry>, FastHash>,
    /// `false` when [`CacheConfig::max_bytes`] is 0: nothing is stored.
    caching: bool,
    /// [`CacheConfig::ttl`]: how old the oldest part of a served expansion
    /// may be.
    ttl: Duration,
    tags: TagVersions,
    /// Per page path ([`canonical_path`]), the fragment keys rendered into it,
    /// for `revalidate_path` (a set: a page is rendered again and again, and
    /// a linear `contains` over thousands of keys was most of a cached
    /// page's CPU).
    ///
    /// Written by every page render, so its keys are client-chosen (any
    /// path that renders a fragment). Bounded by weight
    /// ([`CacheConfig::max_path_bytes`]) and [`MAX_KEYS_PER_PATH`]; moka
    /// evicts the least useful paths. Removed by eviction and the cache TTL.
    /// A flood of distinct paths only evicts other paths' entries; since an
    /// evicted path's `revalidate_path` could no longer find its fragments,
    /// a `revalidate_path` of an unknown path after any eviction marks every
    /// cached fragment soft-stale instead ([`Engine::path_generation`]), so
    /// a flood costs background re-renders, never a stale page.
    paths: moka::sync::Cache<Arc<str>, PathKeys, FastHash>,
    /// Set when the path map evicted a path because it was full.
    paths_evicted: Arc<AtomicBool>,
    /// Bumped by a `revalidate_path` that could not find its page.
    path_generation: AtomicU64,
    /// The length of the last page fragment rendered, the capacity the
    /// next one starts with. Written by every page render (so by any
    /// client); bounded to [`MAX_SIZE_HINT`]; never removed. One user's
    /// huge page makes the next renders of others start with up to 64 KiB
    /// reserved, for the length of a render.
    page_size_hint: AtomicUsize,
    renders: AtomicU64,
    background: AtomicU64,
    expanded_hits: AtomicU64,
    /// Bumps waiting to be published: at most [`BUS_QUEUE`]; when full
    /// (Redis slow or down), further bumps stay local.
    bus: Mutex<Option<tokio::sync::mpsc::Sender<String>>>,
    instance: u64,
    /// What [`RenderCx::form`] needs (the app's action directory and
    /// sealing keys): the engine renders forms, not the runtime around it.
    forms: Arc<FormContext>,
}

impl Engine {
    pub(crate) fn new<S: Clone + Send + Sync + 'static>(
        fragments: Fragments<S>,
        state: &S,
        config: &CacheConfig,
        forms: Arc<FormContext>,
    ) -> Result<Self, &'static str> {
        let mut defs = Vec::new();
        let mut by_name = HashMap::with_hasher(FastHash::new());
        for f in fragments.list {
            if by_name.insert(f.name, defs.len() as u32).is_some() {
                return Err(f.name);
            }
            defs.push(Def {
                name: f.name,
                per_viewer: f.per_viewer,
                element: f.element,
                parent: AtomicBool::new(false),
                tags: f.tags,
                render: (f.make)(state.clone()),
            });
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &Key, v: &Arc<Entry>| v.weight(k))
            .time_to_live(config.ttl)
            // An entry that leaves the cache, for whatever reason, is no
            // longer a valid part of any expansion.
            .eviction_listener(|_, v: Arc<Entry>, _| v.path_stale.store(true, Ordering::Release))
            .build_with_hasher(FastHash::new());
        let paths_evicted = Arc::new(AtomicBool::new(false));
        let evicted = paths_evicted.clone();
        let paths = moka::sync::Cache::builder()
            .max_capacity(config.max_path_bytes)
            .weigher(|path: &Arc<str>, keys: &PathKeys| {
                let keys = keys.read().unwrap_or_else(|e| e.into_inner());
                let bytes: usize = keys.iter().map(|k| 64 + k.param.len()).sum();
                (64 + path.len() + bytes).min(u32::MAX as usize) as u32
            })
            .time_to_live(config.ttl)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evicted.store(true, Ordering::Release);
                }
            })
            .build_with_hasher(FastHash::new());
        Ok(Engine {
            defs,
            by_name,
            cache,
            caching: config.max_bytes > 0,
            ttl: config.ttl,
            tags: TagVersions::new(config.max_tags),
            paths,
            paths_evicted,
            path_generation: AtomicU64::new(0),
            page_size_hint: AtomicUsize::new(0),
            renders: AtomicU64::new(0),
            background: AtomicU64::new(0),
            expanded_hits: AtomicU64::new(0),
            bus: Mutex::new(None),
            instance: rand::random(),
            forms,
        })
    }

    /// Fragments rendered so far (foreground and background).
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Background (stale-while-revalidate) renders so far.
    pub fn background_renders(&self) -> u64 {
        self.background.load(Ordering::Relaxed)
    }

    /// Fragments served whole from their cached expansion so far.
    pub fn expanded_hits(&self) -> u64 {
        self.expanded_hits.load(Ordering::Relaxed)
    }

    /// Bytes held by the cache (after pending maintenance).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Renderings held by the cache (after pending maintenance).
    pub fn cached_entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Drops every cached entry.
    pub fn clear(&self) {
        // Also voids every expansion being built from parts read before
        // this (moka drops entries lazily; the generation is immediate).
        self.path_generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    fn version(&self, tag: &str) -> TagState {
        self.tags.get(tag)
    }

    /// How many tag versions are remembered (bounded by
    /// [`CacheConfig::max_tags`]).
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Expires `tag` now, on this instance and (if configured) all others.
    pub fn update_tag(&self, tag: &str) {
        self.bump(tag, true);
        self.publish(true, tag);
    }

    /// Marks `tag` stale: the next reader gets the stale copy once while one
    /// background render refreshes it.
    pub fn revalidate_tag(&self, tag: &str) {
        self.bump(tag, false);
        self.publish(false, tag);
    }

    /// Marks every fragment rendered as part of page `path` stale (soft).
    /// The path is compared in its [`canonical_path`] form. If the page is
    /// not known and the path map has ever evicted (so it may have been
    /// forgotten), every cached fragment is marked soft-stale instead.
    pub fn revalidate_path(&self, path: &str) {
        let path = canonical_path(path);
        match self.paths.get(path.as_str()) {
            Some(keys) => {
                let keys = keys.read().unwrap_or_else(|e| e.into_inner());
                for key in keys.iter() {
                    if let Some(e) = self.cache.get(key) {
                        e.path_stale.store(true, Ordering::Release);
                    }
                }
            }
            None if self.paths_evicted.load(Ordering::Acquire) => {
                self.path_generation.fetch_add(1, Ordering::AcqRel);
            }
            None => {}
        }
    }

    /// Page paths remembered for `revalidate_path`, and their weight in
    /// bytes (after pending maintenance).
    pub fn path_map_usage(&self) -> (u64, u64) {
        self.paths.run_pending_tasks();
        (self.paths.entry_count(), self.paths.weighted_size())
    }

    /// Records that the page at `path` (canonical) shows the parts of the
    /// expansion `entry`: once per page-map set (see [`Expansion`]).
    fn remember_expansion(&self, path: &str, entry: &Entry) {
        let Some(x) = &entry.expansion else { return };
        let mut last = x.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = self.paths.get(path)
            && std::ptr::eq(last.as_ptr(), Arc::as_ptr(&set))
        {
            return;
        }
        if let Some(set) = self.remember_paths(path, x.keys.clone()) {
            *last = Arc::downgrade(&set);
        }
    }

    /// Records that the page at `path` (canonical) shows the fragments `keys` (one
    /// page render's worth: one lookup of the path, one lock, instead of
    /// one per fragment). Returns the page's set.
    fn remember_paths(&self, path: &str, keys: Vec<Key>) -> Option<PathKeys> {
        if keys.is_empty() {
            return None;
        }
        let known = self.paths.get(path);
        if let Some(set) = &known {
            let guard = set.read().unwrap_or_else(|e| e.into_inner());
            if guard.len() >= MAX_KEYS_PER_PATH || keys.iter().all(|k| guard.contains(k)) {
                drop(guard);
                return known;
            }
        }
        let set = known.unwrap_or_default();
        {
            let mut guard = set.write().unwrap_or_else(|e| e.into_inner());
            for k in keys {
                if guard.len() >= MAX_KEYS_PER_PATH {
                    break;
                }
                guard.insert(k);
            }
        }
        // (Re-)inserting (re-)weighs the entry (moka weighs on insert).
        self.paths.insert(Arc::from(path), set.clone());
        Some(set)
    }

    fn bump(&self, tag: &str, hard: bool) {
        self.tags.bump(tag, hard);
    }

    fn freshness(&self, e: &Entry) -> Freshness {
        let mut soft = e.path_stale.load(Ordering::Acquire)
            || e.path_generation < self.path_generation.load(Ordering::Acquire);
        for (tag, seen) in &e.tags {
            let now = self.version(tag);
            if now.version != *seen {
                if now.hard > *seen {
                    return Freshness::Hard;
                }
                soft = true;
            }
        }
        if soft {
            Freshness::Soft
        } else {
            Freshness::Fresh
        }
    }

    fn key(&self, key: &str, viewer: Option<&Viewer>) -> Option<(Key, &Def)> {
        let (name, param) = split_key(key);
        let frag = *self.by_name.get(name)?;
        let def = &self.defs[frag as usize];
        Some((
            Key {
                frag,
                param: param.to_owned(),
                viewer: if def.per_viewer {
                    viewer.map(Viewer::id)
                } else {
                    None
                },
                expanded: false,
            },
            def,
        ))
    }

    /// Renders `def` for `key` and caches the template; `given` is what
    /// the parent handed to it in this expansion. Returns what this
    /// rendering hands to its own children, and the cache entry (none when
    /// caching is off).
    async fn render(
        self: &Arc<Self>,
        def: &Def,
        key: Key,
        viewer: Option<Viewer>,
        given: Option<Handoff>,
    ) -> Result<(Arc<str>, Handing, Option<Arc<Entry>>), ActionError> {
        // Before anything is read: data read after this point is at least
        // as new as every tag version up to here.
        let snapshot = self.tags.sequence();
        let mut tags: Vec<(String, u64)> = (def.tags)(viewer.as_ref(), &key.param)
            .into_iter()
            .map(|t| {
                let v = self.version(&t).version;
                (t, v)
            })
            .collect();
        self.renders.fetch_add(1, Ordering::Relaxed);
        let io: RenderIo = Arc::default();
        // A static tag that moved since the parent's snapshot voids it too.
        if let Some(given) = given
            && tags.iter().all(|(_, v)| *v <= given.snapshot)
        {
            *io.given.lock().unwrap_or_else(|e| e.into_inner()) = Some(given);
        }
        let html: Arc<str> = (def.render)(self.clone(), io.clone(), viewer, key.param.clone())
            .await?
            .into();
        tags.extend(std::mem::take(
            &mut *io.tags.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        let handing = Handing {
            data: std::mem::take(&mut *io.handed.lock().unwrap_or_else(|e| e.into_inner())),
            snapshot,
            per_viewer: def.per_viewer,
        };
        if !self.caching {
            return Ok((html, handing, None));
        }
        let entry = Arc::new(Entry {
            template: html.clone(),
            tags,
            refreshing: AtomicBool::new(false),
            path_stale: Arc::default(),
            path_generation: self.path_generation.load(Ordering::Acquire),
            rendered: Instant::now(),
            expansion: None,
        });
        self.cache.insert(key, entry.clone());
        Ok((html, handing, Some(entry)))
    }

    /// The template of one fragment, from the cache when fresh (then it
    /// hands nothing to its children, and `given` is dropped unused); with
    /// its cache entry, and whether it was fresh.
    async fn template(
        self: &Arc<Self>,
        (key, def): (Key, &Def),
        key_text: &str,
        viewer: Option<&Viewer>,
        given: Option<Handoff>,
    ) -> Result<Template, ActionError> {
        if let Some(entry) = self.cache.get(&key) {
            // Served from the cache unless hard-stale (then rendered below).
            let fresh = match self.freshness(&entry) {
                Freshness::Fresh => Some(true),
                Freshness::Soft => {
                    if !entry.refreshing.swap(true, Ordering::AcqRel) {
                        let engine = self.clone();
                        let viewer = viewer.cloned();
                        let key_text = key_text.to_owned();
                        self.background.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            if let Some((key, def)) = engine.key(&key_text, viewer.as_ref())
                                && let Err(e) = engine.render(def, key, viewer, None).await
                            {
                                tracing::warn!(fragment = key_text, error = ?e, "background render failed");
                            }
                        });
                    }
                    Some(false)
                }
                Freshness::Hard => None,
            };
            if let Some(fresh) = fresh {
                return Ok(Template {
                    html: entry.template.clone(),
                    handing: None,
                    entry: Some(entry),
                    fresh,
                });
            }
        }
        let (html, handing, entry) = self.render(def, key, viewer.cloned(), given).await?;
        Ok(Template {
            html,
            handing: Some(handing),
            entry,
            fresh: true,
        })
    }

    /// The cached expansion of `key`, if there is one that may be served:
    /// every tag its parts read is at the version they read, no part was
    /// path-revalidated or left the cache, and none is older than the TTL
    /// or than the last path-generation bump.
    fn expansion(&self, key: Key, depth: usize) -> (Key, Option<Arc<Entry>>) {
        let key = key.with_expanded(true);
        let found = self.cache.get(&key);
        let key = key.with_expanded(false);
        let Some(e) = found else {
            return (key, None);
        };
        let Some(x) = &e.expansion else {
            return (key, None);
        };
        let usable = depth + x.height <= MAX_DEPTH
            && e.path_generation >= self.path_generation.load(Ordering::Acquire)
            && e.rendered.elapsed() < self.ttl
            && x.parts.iter().all(|p| !p.load(Ordering::Acquire))
            && e.tags.iter().all(|(t, v)| self.version(t).version == *v);
        (key, usable.then_some(e))
    }

    /// Caches the expansion of `key` (its html is `html`, its parts the
    /// tail of `gather` from `mark`), unless a part was stale, a shared
    /// fragment has a per-viewer part, or a part left meanwhile.
    fn store_expansion(
        &self,
        (key, height): (Key, usize),
        per_viewer: bool,
        html: &str,
        gather: &Gather,
        mark: Mark,
    ) {
        if gather.unfresh != mark.unfresh {
            return;
        }
        let keys = &gather.keys[mark.keys..];
        if !per_viewer && keys.iter().any(|k| k.viewer.is_some()) {
            return;
        }
        let parts = &gather.parts[mark.parts..];
        if parts
            .iter()
            .any(|(stale, _, _)| stale.load(Ordering::Acquire))
        {
            return;
        }
        let (Some(rendered), Some(generation)) = (
            parts.iter().map(|p| p.1).min(),
            parts.iter().map(|p| p.2).min(),
        ) else {
            return;
        };
        let mut tags = gather.tags[mark.tags..].to_vec();
        tags.sort_unstable();
        tags.dedup();
        let entry = Entry {
            template: html.into(),
            tags,
            refreshing: AtomicBool::new(false),
            path_stale: Arc::default(),
            path_generation: generation,
            rendered,
            expansion: Some(Box::new(Expansion {
                height,
                parts: parts.iter().map(|p| p.0.clone()).collect(),
                keys: keys.to_vec(),
                remembered: Mutex::default(),
            })),
        };
        self.cache.insert(key.with_expanded(true), Arc::new(entry));
    }

    /// One fragment, children expanded, wrapped in its `data-fragment` root.
    pub(crate) async fn render_key(
        self: &Arc<Self>,
        key: &str,
        viewer: Option<&Viewer>,
        page_path: Option<&str>,
    ) -> Result<String, ActionError> {
        // A page's fragment is about as long as the last one was: sized
        // once instead of doubling its way up (6.8 % of a cached page went
        // to realloc).
        let hint = match page_path {
            Some(_) => self.page_size_hint.load(Ordering::Relaxed),
            None => 0,
        };
        let mut out = String::with_capacity(reserve_for(hint));
        let mut gather = Gather::default();
        self.expand_into(
            key,
            viewer,
            (0, None),
            (&mut out, self.caching.then_some(&mut gather)),
        )
        .await?;
        if let Some(path) = page_path {
            self.page_size_hint.store(out.len(), Ordering::Relaxed);
            if self.caching {
                let path = canonical_path(path);
                match &gather.root {
                    Some(entry) => self.remember_expansion(&path, entry),
                    None => {
                        self.remember_paths(&path, gather.keys);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Expands `key` into `out`. With `gather` (caching on), also collects
    /// the parts used, and caches the expansion of a fragment that has
    /// children, or serves it from there.
    fn expand_into<'a>(
        self: &'a Arc<Self>,
        key: &'a str,
        viewer: Option<&'a Viewer>,
        (depth, given): (usize, Option<Handoff>),
        (out, mut gather): (&'a mut String, Option<&'a mut Gather>),
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(ActionError::internal(format!(
                    "fragments nested deeper than {MAX_DEPTH} at `{key}`"
                )));
            }
            let (mut k, def) = self.key(key, viewer).ok_or(ActionError::NotFound)?;
            if def.per_viewer && viewer.is_none() {
                return Err(ActionError::NotFound);
            }
            let start = out.len();
            let mut mark = Mark::default();
            let mut above = 0;
            // `name:` is the key of `name`, but its html would carry the
            // other spelling: only the plain one is served expanded.
            let plain = !key.ends_with(':');
            if let Some(g) = gather.as_deref_mut() {
                if plain && def.parent.load(Ordering::Relaxed) {
                    let (back, found) = self.expansion(k, depth);
                    k = back;
                    if let Some(e) = found {
                        self.expanded_hits.fetch_add(1, Ordering::Relaxed);
                        out.push_str(&e.template);
                        if depth == 0 {
                            g.root = Some(e);
                        } else if let Some(x) = &e.expansion {
                            g.deepest = g.deepest.max(depth + x.height);
                            g.tags.extend(e.tags.iter().cloned());
                            g.parts.extend(
                                x.parts
                                    .iter()
                                    .map(|p| (p.clone(), e.rendered, e.path_generation)),
                            );
                            g.keys.extend(x.keys.iter().cloned());
                        }
                        return Ok(());
                    }
                }
                mark = g.mark();
                above = std::mem::replace(&mut g.deepest, depth);
                g.keys.push(k.clone());
            }
            let element_root = def.element;
            let Template {
                html: template,
                mut handing,
                entry,
                fresh,
            } = self.template((k, def), key, viewer, given).await?;
            if let Some(g) = gather.as_deref_mut() {
                match &entry {
                    Some(e) => {
                        g.tags.extend(e.tags.iter().cloned());
                        g.parts
                            .push((e.path_stale.clone(), e.rendered, e.path_generation));
                    }
                    None => g.unfresh += 1,
                }
                if !fresh {
                    g.unfresh += 1;
                }
            }
            // The root: the rendered element itself, or a wrapping div.
            let element = element_root.then(|| element_name_end(&template)).flatten();
            let mut rest: &str = &template;
            match element {
                Some(end) => {
                    out.push_str(&template[..end]);
                    out.push(' ');
                    rest = &template[end..];
                }
                None => out.push_str("<div "),
            }
            out.push_str(crate::wire::attr::FRAGMENT);
            out.push_str("=\"");
            out.push_str(key);
            out.push('"');
            if element.is_none() {
                out.push('>');
            }
            let [open, close] = &*MARKERS;
            let mut children = false;
            while let Some(at) = open.find(rest.as_bytes()) {
                out.push_str(&rest[..at]);
                let after = &rest[at + MARKER_OPEN.len()..];
                let Some(end) = close.find(after.as_bytes()) else {
                    out.push_str(&rest[at..]);
                    rest = "";
                    break;
                };
                children = true;
                let child = &after[..end];
                let given = handing.as_mut().and_then(|h| h.take(self, child, viewer));
                self.expand_into(
                    child,
                    viewer,
                    (depth + 1, given),
                    (&mut *out, gather.as_deref_mut()),
                )
                .await?;
                rest = &after[end + MARKER_CLOSE.len()..];
            }
            out.push_str(rest);
            if element.is_none() {
                out.push_str("</div>");
            }
            if let Some(g) = gather.as_deref_mut() {
                let height = g.deepest - depth;
                g.deepest = g.deepest.max(above);
                if children && plain {
                    def.parent.store(true, Ordering::Relaxed);
                    // This fragment's own key is the first it gathered.
                    let own = g.keys[mark.keys].clone();
                    self.store_expansion((own, height), def.per_viewer, &out[start..], g, mark);
                }
            }
            Ok(())
        })
    }

    /// The fragments among `requested` (keys the client's page shows) that
    /// must be re-rendered into this response: all of them on `refresh`,
    /// otherwise those whose tags intersect `updated`.
    pub(crate) async fn affected(
        self: &Arc<Self>,
        requested: &[&str],
        updated: &[String],
        refresh: bool,
        viewer: Option<&Viewer>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut seen = HashSet::new();
        for key in requested.iter().take(MAX_REQUESTED) {
            if !valid_key(key) || !seen.insert(*key) {
                continue;
            }
            let Some((k, def)) = self.key(key, viewer) else {
                continue;
            };
            // A cached entry knows every tag it read (static and dynamic);
            // without one, fall back to the static tags.
            let hit = refresh
                || match self.cache.get(&k) {
                    Some(e) => e.tags.iter().any(|(t, _)| updated.contains(t)),
                    None => (def.tags)(viewer, &k.param)
                        .iter()
                        .any(|t| updated.contains(t)),
                };
            if hit {
                match self.render_key(key, viewer, None).await {
                    Ok(html) if bytes + html.len() > MAX_AFFECTED_BYTES => {
                        tracing::debug!(fragment = key, "fragment left out: response cap reached");
                    }
                    Ok(html) => {
                        bytes += html.len();
                        out.push(((*key).to_owned(), html))
                    }
                    Err(e) => {
                        tracing::debug!(fragment = key, error = ?e, "fragment not re-rendered")
                    }
                }
            }
        }
        out
    }

    fn publish(&self, hard: bool, tag: &str) {
        if let Some(tx) = self.bus.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // Full queue: Redis is slow or down; the bump stays local.
            let _ = tx.try_send(format!(
                "{} {} {tag}",
                self.instance,
                if hard { 'h' } else { 's' }
            ));
        }
    }

    /// One message from the bus: a tag bump (`h`, `s`) of another
    /// instance, or a session-cache message (`r`, `a`) for `sessions`,
    /// whose confirmation is queued for publishing. Other kinds are ignored
    /// (a newer instance's, during a rolling deploy).
    fn apply_remote(&self, payload: &str, sessions: Option<&crate::store::SessionCache>) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(from), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        match kind {
            "h" | "s" if from != self.instance.to_string() => {
                self.bump(rest, kind == "h");
            }
            "r" | "a" => {
                if let Some(reply) = sessions.and_then(|c| c.on_message(from, kind, rest))
                    && let Some(tx) = self.bus.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
                {
                    // Full queue: the change waiting for it fails closed (503).
                    let _ = tx.try_send(reply);
                }
            }
            _ => {}
        }
    }

    /// Connects the engine to a tag bus (multi-instance mode): publishes
    /// every local bump from a bounded queue, applies other instances'
    /// bumps, and clears the render cache whenever bumps may have been lost
    /// (a subscription ended, or the bus recovered from an outage).
    ///
    /// The same subscription carries the session cache's messages
    /// (`sessions`, see [`crate::store::SessionCache`]): it is told when the
    /// subscription is up and when it is lost, and answers changes other
    /// instances announce.
    pub(crate) fn connect_bus(
        self: &Arc<Self>,
        bus: Arc<dyn TagBus>,
        sessions: Option<Arc<crate::store::SessionCache>>,
    ) {
        if let Some(c) = &sessions {
            c.attach(bus.clone());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(BUS_QUEUE);
        *self.bus.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        // Publisher: one bump at a time under the bus's deadline; a failure
        // leaves the bump local (the transport logs the outage).
        let publisher = bus.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let _ = publisher.publish(&msg).await;
            }
        });
        // When the bus comes back after an outage, bumps published meanwhile
        // by other instances may have been lost: start from an empty cache.
        let engine = Arc::downgrade(self);
        let watched = bus.clone();
        let cache = sessions.clone();
        tokio::spawn(async move {
            loop {
                watched.recovered().await;
                let Some(e) = engine.upgrade() else { return };
                e.clear();
                if let Some(c) = &cache {
                    c.lost(true);
                }
                tracing::info!(
                    bus = watched.describe(),
                    "tag bus back: local render cache cleared (bumps may have been missed)"
                );
            }
        });
        // Subscriber: on any loss, clear the local cache and resubscribe,
        // with exponential backoff and jitter between attempts.
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            use futures::StreamExt;
            let outage = crate::store::Outage::new("tag bus subscription");
            let mut first = true;
            let mut delay = BUS_BACKOFF_MIN;
            loop {
                let Some(live) = engine.upgrade() else { return };
                drop(live);
                let mut stream = match bus.subscribe().await {
                    Ok(s) => s,
                    Err(e) => {
                        outage.failed(&e, None);
                        delay = backoff(&mut delay).await;
                        continue;
                    }
                };
                outage.ok();
                if !first && let Some(e) = engine.upgrade() {
                    // Bumps may have been missed while disconnected.
                    e.clear();
                    tracing::debug!("tag bus resubscribed; local render cache cleared");
                }
                if let Some(c) = &sessions {
                    c.subscribed();
                }
                first = false;
                delay = BUS_BACKOFF_MIN;
                while let Some(payload) = stream.next().await {
                    let Some(e) = engine.upgrade() else { return };
                    e.apply_remote(&payload, sessions.as_deref());
                }
                if let Some(c) = &sessions {
                    c.lost(false);
                }
                if let Some(e) = engine.upgrade() {
                    e.clear();
                }
                outage.failed(&"subscription lost; local render cache cleared", None);
                delay = backoff(&mut delay).await;
            }
        });
    }

    /// Name of fragment `key` (for logs and the manifest).
    pub fn names(&self) -> Vec<&'static str> {
        self.defs.iter().map(|d| d.name).collect()
    }
}

#[cfg(test)]
mod tests {
    /// One client's huge page (any client can make one) must not make
    /// every later render reserve as much.
    #[test]
    fn a_huge_page_does_not_inflate_what_later_renders_reserve() {
        assert_eq!(super::reserve_for(50 * 1024 * 1024), 64 * 1024);
        assert_eq!(super::reserve_for(36_000), 36_000);
        assert_eq!(super::reserve_for(0), 1024);
    }
}
