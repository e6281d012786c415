//! The container engine's REST API over its unix socket: Podman's libpod
//! API or the Docker Engine API (which Podman also serves). HTTP/1.1 with
//! hyper over tokio's `UnixStream`; every request has a timeout, and a
//! response body has a size limit, so a stuck or confused engine costs one
//! failed cycle, never a stuck task or a memory spike.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::ApiChoice;

/// Largest response body accepted: a list of hundreds of containers is
/// well under 1 MiB.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The API an engine answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Podman's own API.
    Libpod,
    /// The Docker Engine API (Docker, or Podman's compatible endpoint).
    Docker,
}

impl Api {
    /// The list call: every container, whatever its state.
    pub fn list_path(self) -> &'static str {
        match self {
            // v4.0.0 is the oldest libpod API Podman 4 to 6 accept.
            Api::Libpod => "/v4.0.0/libpod/containers/json?all=true",
            // Unversioned: the engine answers in its own current version,
            // and newer Docker refuses versions older than its minimum.
            Api::Docker => "/containers/json?all=true",
        }
    }

    /// The name used in logs and as the `api` config value.
    pub fn name(self) -> &'static str {
        match self {
            Api::Libpod => "libpod",
            Api::Docker => "docker",
        }
    }
}

/// Why the engine could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No socket at the path: no engine here (or it is not started).
    #[error("no container engine socket at {socket}")]
    Missing {
        /// The socket path.
        socket: PathBuf,
    },
    /// The socket is there, but connecting failed (refused, permission denied).
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// What connect(2) said.
        #[source]
        source: std::io::Error,
    },
    /// The engine did not answer in time.
    #[error("{socket}: GET {path}: no answer within {}", humantime::format_duration(*.timeout))]
    TimedOut {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The HTTP exchange failed (connection closed, not HTTP).
    #[error("{socket}: GET {path}: {source}")]
    Http {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be built (a path with characters HTTP refuses).
    #[error("{socket}: GET {path}: invalid request: {message}")]
    Request {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The engine answered with an error status.
    #[error("{socket}: GET {path}: HTTP {status}: {message}")]
    Status {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// The HTTP status code.
        status: u16,
        /// The engine's message (its JSON `message`, or the body's start).
        message: String,
    },
    /// The body was larger than [`MAX_BODY_BYTES`].
    #[error("{socket}: GET {path}: response larger than {limit} bytes")]
    TooLarge {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The body was not the JSON expected (truncated, another shape).
    #[error("{socket}: GET {path}: malformed JSON: {source}")]
    Json {
        /// The socket path.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// serde's description, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    /// A JSON error for the response to `path` from `socket`.
    pub fn json(socket: &Path, path: &str, source: serde_json::Error) -> Self {
        EngineError::Json {
            socket: socket.to_path_buf(),
            path: path.to_string(),
            source,
        }
    }
}

/// An empty request body (GET), so that no body crate is needed.
struct NoBody;

impl Body for NoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}

/// An engine's answer.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The engine said it is Podman (`Libpod-Api-Version` header).
    pub libpod: bool,
    /// The whole body.
    pub body: Vec<u8>,
}

/// One HTTP/1.1 connection to an engine socket, reused for the requests of
/// one cycle (the list, then the stats).
pub struct Connection {
    /// The socket path, for errors.
    socket: PathBuf,
    /// Per-request timeout.
    timeout: Duration,
    /// hyper's request half.
    sender: http1::SendRequest<NoBody>,
    /// The task driving the connection; aborted on drop.
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connects to `socket`; connecting and the HTTP handshake share `timeout`.
    pub async fn open(socket: &Path, timeout: Duration) -> Result<Connection, EngineError> {
        // Most hosts have at most one of the default sockets, and the agent
        // asks again every cycle: one stat(2) says "not there" for less than
        // a socket, a connect and a close would.
        if matches!(rustix::fs::stat(socket), Err(rustix::io::Errno::NOENT)) {
            return Err(EngineError::Missing {
                socket: socket.to_path_buf(),
            });
        }
        let connect = async {
            let stream = UnixStream::connect(socket).await.map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    EngineError::Missing {
                        socket: socket.to_path_buf(),
                    }
                } else {
                    EngineError::Connect {
                        socket: socket.to_path_buf(),
                        source,
                    }
                }
            })?;
            let (sender, conn) =
                http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|source| EngineError::Http {
                        socket: socket.to_path_buf(),
                        path: "(handshake)".into(),
                        source,
                    })?;
            let driver = tokio::spawn(async move {
                // Ends when the engine closes or we drop the sender.
                let _ = conn.await;
            });
            Ok(Connection {
                socket: socket.to_path_buf(),
                timeout,
                sender,
                driver,
            })
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| EngineError::TimedOut {
                socket: socket.to_path_buf(),
                path: "(connect)".into(),
                timeout,
            })?
    }

    /// The socket this connection talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`, the whole exchange within the timeout. A non-2xx status
    /// is an error carrying the engine's message.
    pub async fn get(&mut self, path: &str) -> Result<Response, EngineError> {
        let timeout = self.timeout;
        let response = tokio::time::timeout(timeout, self.exchange(path))
            .await
            .map_err(|_| EngineError::TimedOut {
                socket: self.socket.clone(),
                path: path.to_string(),
                timeout,
            })??;
        if !(200..300).contains(&response.status) {
            return Err(EngineError::Status {
                socket: self.socket.clone(),
                path: path.to_string(),
                status: response.status,
                message: error_message(&response.body),
            });
        }
        Ok(response)
    }

    async fn exchange(&mut self, path: &str) -> Result<Response, EngineError> {
        let http = |source| EngineError::Http {
            socket: self.socket.clone(),
            path: path.to_string(),
            source,
        };
        self.sender.ready().await.map_err(http)?;
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(NoBody)
            .map_err(|e| EngineError::Request {
                socket: self.socket.clone(),
                path: path.to_string(),
                message: e.to_string(),
            })?;
        let response = self.sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let libpod = response.headers().contains_key("libpod-api-version");
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.map_err(http)?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_BODY_BYTES {
                    return Err(EngineError::TooLarge {
                        socket: self.socket.clone(),
                        path: path.to_string(),
                        limit: MAX_BODY_BYTES,
                    });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Response {
            status,
            libpod,
            body: out,
        })
    }
}

/// The engine's error message: `{"message": "…"}` from both APIs, else the
/// start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        /// What went wrong.
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// An engine that answered: where, and which API it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The socket path.
    pub socket: PathBuf,
    /// The API to use.
    pub api: Api,
}

impl Engine {
    /// Asks `socket` for `/_ping` and settles the API: with `Auto`, libpod
    /// when the engine says it is Podman.
    pub async fn probe(socket: &Path, choice: ApiChoice, timeout: Duration) -> Result<Engine, EngineError> {
        let mut conn = Connection::open(socket, timeout).await?;
        let pong = conn.get("/_ping").await?;
        let api = match choice {
            ApiChoice::Libpod => Api::Libpod,
            ApiChoice::Docker => Api::Docker,
            ApiChoice::Auto if pong.libpod => Api::Libpod,
            ApiChoice::Auto => Api::Docker,
        };
        Ok(Engine {
            socket: socket.to_path_buf(),
            api,
        })
    }
}

/// Where engines listen when no socket is configured, in the order tried:
/// the user's rootless Podman, the system's Podman, Docker.
pub fn default_sockets(xdg_runtime_dir: Option<&Path>, uid: u32) -> Vec<PathBuf> {
    let runtime = xdg_runtime_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}")));
    let mut out = Vec::with_capacity(3);
    if uid != 0 {
        out.push(runtime.join("podman/podman.sock"));
    }
    out.push(PathBuf::from("/run/podman/podman.sock"));
    out.push(PathBuf::from("/var/run/docker.sock"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// Serves each accepted connection with `reply` after reading the
    /// request head (a socket that answers the way the test needs).
    async fn serve(path: &Path, reply: &'static [u8]) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(path).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
            }
        })
    }

    #[tokio::test]
    async fn a_missing_socket_is_no_engine_rather_than_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("none.sock");
        let err = Connection::open(&sock, Duration::from_secs(1))
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, EngineError::Missing { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_names_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
        let err = Connection::open(&sock, Duration::from_secs(1))
            .await
            .err()
            .expect("must fail");
        assert!(matches!(err, EngineError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("dead.sock"), "{err}");
    }

    #[tokio::test]
    async fn an_engine_that_never_answers_times_out_naming_socket_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("slow.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut conn = Connection::open(&sock, Duration::from_millis(300))
            .await
            .expect("connects");
        let started = std::time::Instant::now();
        let err = conn
            .get("/v4.0.0/libpod/containers/json?all=true")
            .await
            .expect_err("must time out");
        assert!(started.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.contains("slow.sock") && text.contains("/libpod/containers/json") && text.contains("300ms"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_error_status_carries_the_engines_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("err.sock");
        let _server = serve(
            &sock,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"cause\":\"x\",\"message\":\"boom\",\"response\":500}",
        )
        .await;
        let mut conn = Connection::open(&sock, Duration::from_secs(2))
            .await
            .expect("connects");
        let err = conn.get("/containers/json").await.expect_err("500");
        assert!(
            matches!(&err, EngineError::Status { status: 500, message, .. } if message == "boom"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_a_short_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("cut.sock");
        // Announces 100 bytes, sends 5, closes.
        let _server = serve(&sock, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"Id\"").await;
        let mut conn = Connection::open(&sock, Duration::from_secs(2))
            .await
            .expect("connects");
        let err = conn.get("/containers/json").await.expect_err("truncated");
        assert!(matches!(err, EngineError::Http { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_podman_ping_selects_the_libpod_api_and_a_docker_one_the_docker_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let podman = dir.path().join("podman.sock");
        let docker = dir.path().join("docker.sock");
        // The headers as Podman 4.3.1 and Docker send them (tests/fixtures/podman/4.3.1/ping.txt).
        let _p = serve(
            &podman,
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nLibpod-Api-Version: 4.3.1\r\nContent-Length: 2\r\n\r\nOK",
        )
        .await;
        let _d = serve(
            &docker,
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\nOK",
        )
        .await;
        let t = Duration::from_secs(2);
        assert_eq!(
            Engine::probe(&podman, ApiChoice::Auto, t)
                .await
                .expect("podman")
                .api,
            Api::Libpod
        );
        assert_eq!(
            Engine::probe(&docker, ApiChoice::Auto, t)
                .await
                .expect("docker")
                .api,
            Api::Docker
        );
        assert_eq!(
            Engine::probe(&podman, ApiChoice::Docker, t)
                .await
                .expect("forced")
                .api,
            Api::Docker
        );
    }

    #[test]
    fn default_sockets_try_rootless_podman_then_rootful_podman_then_docker() {
        assert_eq!(
            default_sockets(Some(Path::new("/run/user/1000")), 1000),
            vec![
                PathBuf::from("/run/user/1000/podman/podman.sock"),
                PathBuf::from("/run/podman/podman.sock"),
                PathBuf::from("/var/run/docker.sock"),
            ]
        );
        assert_eq!(
            default_sockets(None, 0)[0],
            PathBuf::from("/run/podman/podman.sock")
        );
    }
}
