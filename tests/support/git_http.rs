//! A loopback smart-HTTP Git server: `git http-backend` (CGI) behind a tiny
//! HTTP/1.1 server, so tests exercise libgit2's real HTTP transport and its
//! authentication, not just local file paths.
//!
//! One thread per connection, `Connection: close` after every response.
//! Optional Basic authentication: requests without the right credentials get
//! `401` with a `WWW-Authenticate` challenge, as a forge would answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// When a one-shot hook runs, relative to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Before answering `GET info/refs?service=git-receive-pack`: the pusher
    /// will see the hook's effect in the ref advertisement.
    PushAdvertisement,
    /// Before running `git-receive-pack` on a push's POST: the pusher has
    /// already decided what to send, so the server must refuse it.
    PushPost,
}

type Hook = Box<dyn FnOnce() + Send>;

/// A running server; stops when dropped.
pub struct GitHttpServer {
    hooks: Arc<Mutex<Vec<(Trigger, Hook)>>>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Requests answered with 401.
    pub unauthorized: Arc<AtomicUsize>,
    /// `git-receive-pack` POSTs (pushes) served.
    pub pushes: Arc<AtomicUsize>,
}

impl GitHttpServer {
    /// Serves the bare repositories under `root`; with `credentials`, only to
    /// clients that send them (HTTP Basic).
    pub fn start(root: &Path, credentials: Option<(&str, &str)>) -> GitHttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let pushes = Arc::new(AtomicUsize::new(0));
        let expected =
            credentials.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        let user = credentials.map_or("anonymous".to_string(), |(u, _)| u.to_string());
        let root = root.to_path_buf();
        let hooks: Arc<Mutex<Vec<(Trigger, Hook)>>> = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let hooks = hooks.clone();
            let stop = stop.clone();
            let unauthorized = unauthorized.clone();
            let pushes = pushes.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let ctx = Ctx {
                        root: root.clone(),
                        expected: expected.clone(),
                        user: user.clone(),
                        unauthorized: unauthorized.clone(),
                        pushes: pushes.clone(),
                        hooks: hooks.clone(),
                    };
                    std::thread::spawn(move || {
                        if let Err(e) = serve(conn, &ctx) {
                            eprintln!("git-http test server: {e}");
                        }
                    });
                }
            })
        };
        GitHttpServer {
            hooks,
            addr,
            stop,
            thread: Some(thread),
            unauthorized,
            pushes,
        }
    }

    /// Runs `hook` once, the next time `trigger` happens (before serving it).
    pub fn on_next(&self, trigger: Trigger, hook: impl FnOnce() + Send + 'static) {
        self.hooks
            .lock()
            .expect("hooks lock")
            .push((trigger, Box::new(hook)));
    }

    /// `http://127.0.0.1:<port>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Ctx {
    root: PathBuf,
    expected: Option<String>,
    user: String,
    unauthorized: Arc<AtomicUsize>,
    pushes: Arc<AtomicUsize>,
    hooks: Arc<Mutex<Vec<(Trigger, Hook)>>>,
}

impl Ctx {
    fn run_hook(&self, trigger: Trigger) {
        let hook = {
            let mut hooks = self.hooks.lock().expect("hooks lock");
            hooks
                .iter()
                .position(|(t, _)| *t == trigger)
                .map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }
}

fn serve(conn: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    };
    let mut out = conn;
    if let Some(expected) = &ctx.expected
        && header("authorization") != Some(expected.as_str())
    {
        ctx.unauthorized.fetch_add(1, Ordering::SeqCst);
        let msg = b"authentication required\n";
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"capstan-test\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            msg.len()
        )?;
        out.write_all(msg)?;
        return out.flush();
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if method == "POST" && path.ends_with("/git-receive-pack") {
        ctx.pushes.fetch_add(1, Ordering::SeqCst);
        ctx.run_hook(Trigger::PushPost);
    }
    if method == "GET" && path.ends_with("/info/refs") && query.contains("service=git-receive-pack")
    {
        ctx.run_hook(Trigger::PushAdvertisement);
    }
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &ctx.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &ctx.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ct) = header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = header("git-protocol") {
        cmd.env("HTTP_GIT_PROTOCOL", p);
    }
    if let Some(enc) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = feeder.join();
    if !output.stderr.is_empty() {
        eprintln!(
            "git http-backend: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let raw = output.stdout;
    let split = find(&raw, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(&raw, b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&raw[..i]).into_owned(),
            &raw[i + n..],
        ),
        None => (String::new(), &raw[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !line.trim().is_empty() {
            response.push_str(line.trim_end());
            response.push_str("\r\n");
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// RFC 4648 base64 (checked by the token tests: a wrong encoding fails auth).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
