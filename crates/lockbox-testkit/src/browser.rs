//! A small WebDriver client for end-to-end tests: it starts `chromedriver`
//! on a free loopback port with a headless Chromium session over a fresh
//! profile, and speaks the W3C WebDriver protocol (JSON over HTTP) to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lockbox_testkit::browser::BrowserError> {
//! use lockbox_testkit::browser::Browser;
//! let Some(browser) = Browser::launch().await? else {
//!     eprintln!("skipped: chromium or chromedriver is not installed");
//!     return Ok(());
//! };
//! browser.goto("http://127.0.0.1:8080/login").await?;
//! browser.fill("input[name=user]", "alice").await?;
//! browser.click("button[type=submit]").await?;
//! assert_eq!(browser.text("h1").await?, "Cases");
//! browser.quit().await
//! # }
//! ```
//!
//! Nothing outlives a [`Browser`](crate::browser::Browser): `quit` ends
//! the session (chromedriver closes Chromium), kills and reaps chromedriver
//! and removes the profile; dropping it without quitting does the same,
//! ending the session with a short blocking request. Chromium is connected
//! to chromedriver by a pipe, so it exits by itself if chromedriver dies
//! (chromedriver itself outlives only a test process killed outright).
//! Every HTTP call is bounded ([`HTTP_TIMEOUT`](crate::browser::HTTP_TIMEOUT);
//! page loads and scripts time out in chromedriver first).

// Held to the workspace's rules for library code, whatever the crate allows.
#![deny(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long [`Browser::find`] (and what uses it) waits for an element.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(15);
/// The bound on every HTTP call to chromedriver.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver has to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Chromium or chromedriver is missing, and `CI` is set.
    #[error("chromium and chromedriver must be installed (CI is set: no skipping)")]
    NotInstalled,
    /// chromedriver did not start or get ready.
    #[error("cannot start chromedriver: {0}")]
    Launch(String),
    /// No answer from chromedriver (refused, timed out, not JSON).
    #[error("{0}")]
    Http(String),
    /// chromedriver answered with a WebDriver error.
    #[error("webdriver error `{error}`: {message}")]
    WebDriver {
        /// The error code, e.g. `no such element`.
        error: String,
        /// chromedriver's message.
        message: String,
    },
    /// No element matched the selector within the wait.
    #[error("no element matches `{selector}` on {url} (waited {waited:?})")]
    NotFound {
        /// The CSS selector.
        selector: String,
        /// The page's URL then.
        url: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A local file or socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// chromedriver answered something unexpected.
    #[error("unexpected answer from chromedriver: {0}")]
    Protocol(String),
}

impl BrowserError {
    fn is_no_such_element(&self) -> bool {
        matches!(self, Self::WebDriver { error, .. } if error == "no such element")
    }
}

/// A headless Chromium driven through chromedriver, which it owns.
#[derive(Debug)]
pub struct Browser {
    session: Arc<Session>,
    session_id: String,
    port: u16,
    /// chromedriver, until [`Browser::quit`].
    driver: Option<Child>,
    /// Held to be removed on drop, after `driver`, once Chromium is gone.
    _profile: Profile,
}

/// Chromium's arguments, but for `--user-data-dir`. With
/// `--remote-debugging-pipe` it exits by itself when chromedriver dies.
const CHROMIUM_ARGS: &str = "--headless=new --no-sandbox --disable-gpu \
    --disable-background-networking --disable-component-update --disable-sync --no-first-run \
    --disable-dev-shm-usage --window-size=1280,900 --remote-debugging-pipe";

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// session. `Ok(None)` when `chromium` or `chromedriver` is not
    /// installed (on `PATH` or in `/usr/bin`), unless the environment
    /// variable `CI` is set (non-empty): then that is an error.
    pub async fn launch() -> Result<Option<Self>, BrowserError> {
        let (Some(chromium), Some(driver)) = (find("chromium"), find("chromedriver")) else {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            return if ci {
                Err(BrowserError::NotInstalled)
            } else {
                Ok(None)
            };
        };
        // reqwest cannot build a client without a crypto provider, even for
        // plain HTTP; a second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .no_proxy()
            .build();
        let http = http.map_err(|e| BrowserError::Launch(e.to_string()))?;
        let profile = Profile::create()?;
        let (child, port) = start_driver(&driver, &http).await?;
        let mut args: Vec<String> = CHROMIUM_ARGS
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Below HTTP_TIMEOUT, so these fail as WebDriver errors.
            "timeouts": {"pageLoad": 20_000, "script": 20_000},
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
        }}});
        let root = format!("http://127.0.0.1:{port}");
        let url = format!("{root}/session");
        let created = send(&http, Method::POST, &url, Some(capabilities)).await?;
        let id = created.get("sessionId").and_then(Value::as_str);
        let id = id.ok_or_else(|| BrowserError::Protocol(format!("new session: {created}")))?;
        let base = format!("{root}/session/{id}");
        Ok(Some(Self {
            session: Arc::new(Session { http, base }),
            session_id: id.to_owned(),
            port,
            driver: Some(child),
            _profile: profile,
        }))
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.session.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    /// The current page's URL.
    pub async fn url(&self) -> Result<String, BrowserError> {
        string(self.session.get("/url").await?)
    }

    /// The current page's title.
    pub async fn title(&self) -> Result<String, BrowserError> {
        string(self.session.get("/title").await?)
    }

    /// The current page's source (its DOM, serialized).
    pub async fn source(&self) -> Result<String, BrowserError> {
        string(self.session.get("/source").await?)
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`]
    /// for one to appear.
    pub async fn find(&self, css: &str) -> Result<Element, BrowserError> {
        let started = Instant::now();
        loop {
            match self.session.post("/element", by_css(css)).await {
                Ok(found) => return Element::new(&self.session, &found),
                Err(e) if !e.is_no_such_element() => return Err(e),
                Err(_) if started.elapsed() >= FIND_TIMEOUT => {
                    return Err(self.not_found(css.to_owned(), FIND_TIMEOUT).await);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Every element matching `css` now (no wait).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, BrowserError> {
        let found = array(self.session.post("/elements", by_css(css)).await?)?;
        found
            .iter()
            .map(|e| Element::new(&self.session, e))
            .collect()
    }

    /// Whether an element matches `css` now (no wait).
    pub async fn exists(&self, css: &str) -> Result<bool, BrowserError> {
        Ok(!self.find_all(css).await?.is_empty())
    }

    /// The visible text of the element matching `css` (see [`Browser::find`]).
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        self.find(css).await?.text().await
    }

    /// Clears the field matching `css`, then types `value` into it.
    pub async fn fill(&self, css: &str, value: &str) -> Result<(), BrowserError> {
        self.find(css).await?.fill(value).await
    }

    /// Chooses the `<option value="value">` of the `<select>` matching
    /// `css`, by clicking it.
    pub async fn select(&self, css: &str, value: &str) -> Result<(), BrowserError> {
        let select = self.find(css).await?;
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        let option = format!("option[value=\"{escaped}\"]");
        match self
            .session
            .post(&select.path("element"), by_css(&option))
            .await
        {
            Ok(found) => Element::new(&self.session, &found)?.click().await,
            Err(e) if !e.is_no_such_element() => Err(e),
            Err(_) => Err(self
                .not_found(format!("{css} {option}"), Duration::ZERO)
                .await),
        }
    }

    /// Clicks the element matching `css` (see [`Browser::find`]).
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        self.find(css).await?.click().await
    }

    /// Runs `script` as a function body with `args` as `arguments`; what
    /// it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        let body = json!({ "script": script, "args": args });
        self.session.post("/execute/sync", body).await
    }

    /// Saves a PNG screenshot of the viewport at `path`, creating its
    /// parent directories.
    pub async fn screenshot(&self, path: &Path) -> Result<(), BrowserError> {
        let encoded = string(self.session.get("/screenshot").await?)?;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded);
        let png = png.map_err(|e| BrowserError::Protocol(format!("screenshot: {e}")))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(std::fs::write(path, png)?)
    }

    /// Deletes the current page's cookies.
    pub async fn delete_cookies(&self) -> Result<(), BrowserError> {
        self.session.call(Method::DELETE, "/cookie", None).await?;
        Ok(())
    }

    /// The current page's cookies, as W3C cookie objects (`name`, `value`,
    /// `path`, `domain`, `secure`, `httpOnly`, `sameSite`, `expiry`).
    pub async fn cookies(&self) -> Result<Vec<Value>, BrowserError> {
        array(self.session.get("/cookie").await?)
    }

    /// Ends the session (closing Chromium), then kills and reaps
    /// chromedriver, even if ending the session failed.
    pub async fn quit(mut self) -> Result<(), BrowserError> {
        let ended = self.session.call(Method::DELETE, "", None).await;
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.kill().await;
        }
        ended.map(drop)
    }

    async fn not_found(&self, selector: String, waited: Duration) -> BrowserError {
        let url = self
            .url()
            .await
            .unwrap_or_else(|e| format!("an unknown page ({e})"));
        BrowserError::NotFound {
            selector,
            url,
            waited,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            // Not quit: end the session, blocking (there is no awaiting
            // here), so Chromium is gone before its profile is removed.
            end_session_blocking(self.port, &self.session_id);
            drop(driver); // killed on drop, reaped by tokio
        }
    }
}

/// An element of the page, found by [`Browser::find`] or [`Browser::find_all`].
#[derive(Debug, Clone)]
pub struct Element {
    session: Arc<Session>,
    id: String,
}

impl Element {
    fn new(session: &Arc<Session>, reference: &Value) -> Result<Self, BrowserError> {
        let id = reference.get(ELEMENT_KEY).and_then(Value::as_str);
        let id = id.ok_or_else(|| BrowserError::Protocol(format!("element: {reference}")))?;
        Ok(Self {
            session: Arc::clone(session),
            id: id.to_owned(),
        })
    }

    fn path(&self, what: &str) -> String {
        format!("/element/{}/{what}", self.id)
    }

    /// Its visible text.
    pub async fn text(&self) -> Result<String, BrowserError> {
        string(self.session.get(&self.path("text")).await?)
    }

    /// Its attribute `name` as written in the HTML, if it has it.
    pub async fn attr(&self, name: &str) -> Result<Option<String>, BrowserError> {
        match self
            .session
            .get(&self.path(&format!("attribute/{name}")))
            .await?
        {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Ok(Some(other.to_string())),
        }
    }

    /// Its DOM property `name` (e.g. `value`, `checked`), `null` if unset.
    pub async fn property(&self, name: &str) -> Result<Value, BrowserError> {
        self.session
            .get(&self.path(&format!("property/{name}")))
            .await
    }

    /// Clicks it (scrolling it into view first).
    pub async fn click(&self) -> Result<(), BrowserError> {
        self.session.post(&self.path("click"), json!({})).await?;
        Ok(())
    }

    /// Clears it, then types `value` into it.
    pub async fn fill(&self, value: &str) -> Result<(), BrowserError> {
        self.session.post(&self.path("clear"), json!({})).await?;
        self.session
            .post(&self.path("value"), json!({ "text": value }))
            .await?;
        Ok(())
    }

    /// Whether it is a selected `<option>`, or a checked box or radio button.
    pub async fn is_selected(&self) -> Result<bool, BrowserError> {
        let selected = self.session.get(&self.path("selected")).await?;
        let selected = selected.as_bool();
        selected.ok_or_else(|| BrowserError::Protocol("`selected` is not a boolean".into()))
    }
}

/// The HTTP side of a session, shared with its elements.
#[derive(Debug)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    base: String,
}

impl Session {
    async fn get(&self, path: &str) -> Result<Value, BrowserError> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, BrowserError> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        send(&self.http, method, &format!("{}{path}", self.base), body).await
    }
}

/// A WebDriver command: its answer's `value`, or its error.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, BrowserError> {
    let what = format!("{method} {url}");
    let request = http.request(method, url);
    let request = if let Some(body) = body {
        request.json(&body)
    } else {
        request
    };
    let failed = |e: reqwest::Error| BrowserError::Http(format!("{what}: {e}"));
    let response = request.send().await.map_err(failed)?;
    let ok = response.status().is_success();
    let mut answer: Value = response.json().await.map_err(failed)?;
    let value = answer.get_mut("value").map(Value::take).unwrap_or_default();
    if ok {
        return Ok(value);
    }
    let field = |k| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Err(BrowserError::WebDriver {
        error: field("error"),
        message: field("message"),
    })
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string(value: Value) -> Result<String, BrowserError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(BrowserError::Protocol(format!("not a string: {other}"))),
    }
}

fn array(value: Value) -> Result<Vec<Value>, BrowserError> {
    match value {
        Value::Array(values) => Ok(values),
        other => Err(BrowserError::Protocol(format!("not an array: {other}"))),
    }
}

/// The program `name` on `PATH`, else in `/usr/bin`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]);
    dirs.map(|dir| dir.join(name))
        .find(|program| program.is_file())
}

/// chromedriver, ready, and its port: a few tries, in case another process
/// takes the free port first.
async fn start_driver(
    program: &Path,
    http: &reqwest::Client,
) -> Result<(Child, u16), BrowserError> {
    let mut failure = String::new();
    for _ in 0..3 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut child = Command::new(program)
            .arg(format!("--port={port}"))
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Launch(format!("{}: {e}", program.display())))?;
        failure = format!("not ready on port {port} after {READY_TIMEOUT:?}");
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = child.try_wait()? {
                failure = format!("exited ({status}) on port {port}");
                break;
            }
            let status = http.get(format!("http://127.0.0.1:{port}/status"));
            if let Ok(response) = status.timeout(Duration::from_secs(1)).send().await
                && let Ok(status) = response.json::<Value>().await
                && status.pointer("/value/ready") == Some(&Value::Bool(true))
            {
                return Ok((child, port));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill().await;
    }
    Err(BrowserError::Launch(failure))
}

/// `DELETE /session/ID` over a plain socket, best effort, bounded.
fn end_session_blocking(port: u16, session_id: &str) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once Chromium has exited.
        let _ = stream.read(&mut [0; 256]);
    }
}

/// A fresh Chromium profile directory, removed on drop.
#[derive(Debug)]
struct Profile(PathBuf);

impl Profile {
    fn create() -> Result<Self, BrowserError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("lockbox-browser-{}-{n}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                // Left by an earlier process with the same id.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `html` as a `data:` URL.
    fn data_url(html: &str) -> String {
        let escaped: String = html.bytes().map(|b| format!("%{b:02X}")).collect();
        format!("data:text/html,{escaped}")
    }

    /// Serves, forever, a page setting an HttpOnly cookie; its URL.
    fn cookie_server() -> String {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.read(&mut [0; 4096]);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\
                      Set-Cookie: sid=s3cret; Path=/; HttpOnly; SameSite=Strict\r\n\
                      Connection: close\r\n\r\nhello",
                );
            }
        });
        url
    }

    const PAGE: &str = r#"<title>Smoke</title><input id="name" value="old">
        <button id="go" onclick="document.getElementById('out').textContent =
            'Hello, ' + document.getElementById('name').value">Go</button><p id="out"></p>
        <select id="pick"><option value="a">A</option><option value="b &quot;2&quot;">B</option></select>"#;

    #[tokio::test]
    async fn browser_smoke() {
        let Some(browser) = Browser::launch().await.unwrap() else {
            eprintln!("skipped: chromium or chromedriver is not installed (CI is unset)");
            return;
        };
        let profile = browser._profile.0.clone();
        assert!(profile.is_dir());
        browser.goto(&data_url(PAGE)).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "Smoke");
        assert!(browser.url().await.unwrap().starts_with("data:text/html,"));
        assert!(browser.source().await.unwrap().contains("<p id=\"out\">"));
        browser.fill("#name", "Lockbox").await.unwrap();
        browser.click("#go").await.unwrap();
        assert_eq!(browser.text("#out").await.unwrap(), "Hello, Lockbox");
        let name = browser.find("#name").await.unwrap();
        assert_eq!(name.property("value").await.unwrap(), json!("Lockbox"));
        assert_eq!(name.attr("value").await.unwrap().as_deref(), Some("old"));
        assert_eq!(name.attr("missing").await.unwrap(), None);

        browser.select("#pick", "b \"2\"").await.unwrap();
        let options = browser.find_all("#pick option").await.unwrap();
        assert_eq!(options.len(), 2);
        assert!(!options[0].is_selected().await.unwrap());
        assert!(options[1].is_selected().await.unwrap());
        let wrong = browser.select("#pick", "c").await.unwrap_err().to_string();
        assert!(wrong.contains(r#"#pick option[value="c"]"#), "{wrong}");

        let sum = browser.execute("return arguments[0] + 1;", vec![json!(41)]);
        assert_eq!(sum.await.unwrap(), json!(42));
        assert!(!browser.exists("#missing").await.unwrap());
        let started = Instant::now();
        let missing = browser.find("#missing").await.unwrap_err().to_string();
        assert!(started.elapsed() >= FIND_TIMEOUT);
        assert!(
            missing.contains("`#missing` on data:text/html,"),
            "{missing}"
        );

        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        );
        let shot = target.join("browser-smoke/smoke.png");
        browser.screenshot(&shot).await.unwrap();
        assert!(
            std::fs::read(&shot)
                .unwrap()
                .starts_with(b"\x89PNG\r\n\x1a\n")
        );

        browser.goto(&cookie_server()).await.unwrap();
        let cookies = browser.cookies().await.unwrap();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert_eq!(cookies[0]["name"], "sid");
        assert_eq!(cookies[0]["httpOnly"], true);
        assert_eq!(cookies[0]["sameSite"], "Strict");
        browser.delete_cookies().await.unwrap();
        assert_eq!(browser.cookies().await.unwrap(), Vec::<Value>::new());

        browser.quit().await.unwrap();
        assert!(!profile.exists());
    }

    #[tokio::test]
    async fn browser_dropped_without_quit_cleans_up() {
        let Some(browser) = Browser::launch().await.unwrap() else {
            eprintln!("skipped: chromium or chromedriver is not installed (CI is unset)");
            return;
        };
        let profile = browser._profile.0.clone();
        browser.goto("about:blank").await.unwrap();
        drop(browser);
        assert!(!profile.exists());
    }
}
