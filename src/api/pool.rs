//! The per-shard keep-alive pool of connections to the API server, and one request
//! through it.
//!
//! At most `api_max_conns` requests of a shard are in flight (a semaphore); each takes
//! an idle connection or opens one, writes the request, reads the answer with the
//! sans-IO [`AnswerDecoder`], and gives the connection back if the answer allows
//! keep-alive. A reused connection that the server had already closed (EOF or reset
//! before the first answer byte) is retried once on a fresh connection. The whole
//! exchange is bounded by `api_timeout`.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;

use super::answer::{Answer, AnswerDecoder, AnswerError};
use super::request::{encode_request, ApiMethod};
use crate::config::ApiClient;
use crate::side::Side;

/// Where the API server is.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub host: String,
    /// Path prefix the ClientId is appended to; starts and ends with `/`.
    pub base: String,
}

/// Why a request to the API server failed: the upstream side's fault (or its absence), but
/// for [`ApiError::Closed`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection could be opened (refused, unreachable).
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The connection broke while sending or receiving.
    #[error("connection broke: {0}")]
    Io(io::Error),
    /// No complete answer within `api_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer could not be understood or was too large.
    #[error("bad answer: {0}")]
    BadAnswer(#[from] AnswerError),
    /// The pool is closed (the shard is stopping).
    #[error("shard is stopping")]
    Closed,
}

impl ApiError {
    /// The label of this failure in `ws2api_api_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Connect(_) => "connect",
            ApiError::Io(_) => "broken",
            ApiError::Timeout(_) => "timeout",
            ApiError::BadAnswer(_) => "bad_answer",
            ApiError::Closed => "stopping",
        }
    }

    /// Who failed: the API server, or the gateway itself when its shard is stopping.
    pub fn side(&self) -> Side {
        match self {
            ApiError::Closed => Side::Internal,
            _ => Side::Upstream,
        }
    }
}

/// One request to the API server.
pub struct ApiRequest<'a> {
    /// The method.
    pub method: ApiMethod,
    /// Appended to the base path.
    pub client_id: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Extra headers.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body.
    pub body: &'a [u8],
}

/// A shard's pool of keep-alive connections to the API server.
pub struct ApiPool {
    target: ApiTarget,
    idle: RefCell<Vec<TcpStream>>,
    permits: Semaphore,
    open: Rc<Cell<usize>>,
    timeout: Duration,
    max_answer: usize,
    /// Woken when a connection goes back to the idle list or is closed.
    returned: Notify,
}

/// Wakes tasks waiting for a pooled connection to come back.
#[derive(Default)]
struct Notify {
    waiters: RefCell<std::collections::VecDeque<std::task::Waker>>,
    generation: Cell<u64>,
}

impl Notify {
    fn notify_one(&self) {
        self.generation.set(self.generation.get() + 1);
        if let Some(waker) = self.waiters.borrow_mut().pop_front() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        let start = self.generation.get();
        let mut queued = false;
        std::future::poll_fn(|cx| {
            if self.generation.get() != start {
                return std::task::Poll::Ready(());
            }
            if !queued {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                queued = true;
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23) | Some(24))
}

enum Failure {
    /// A reused connection was already closed by the server: safe to retry.
    Stale,
    Failed(ApiError),
}

impl ApiPool {
    /// The pool `--api-url`, `--api-max-conns`, `--api-timeout` and `--max-answer-size` describe.
    pub fn for_client(client: &ApiClient) -> Self {
        let target = ApiTarget {
            addr: client.url.addr,
            host: client.url.authority(),
            base: client.url.path.clone(),
        };
        ApiPool::new(
            target,
            client.max_conns,
            client.timeout,
            client.max_answer_size,
        )
    }

    /// A pool of at most `max_conns` connections.
    pub fn new(target: ApiTarget, max_conns: usize, timeout: Duration, max_answer: usize) -> Self {
        ApiPool {
            target,
            idle: RefCell::new(Vec::new()),
            permits: Semaphore::new(max_conns as u64),
            open: Rc::new(Cell::new(0)),
            timeout,
            max_answer,
            returned: Notify::default(),
        }
    }

    /// Connections open now (idle or busy).
    pub fn open_connections(&self) -> usize {
        self.open.get()
    }

    /// Sends one request and waits for its answer.
    pub async fn send(&self, req: &ApiRequest<'_>) -> Result<Answer, ApiError> {
        let _permit = self
            .permits
            .acquire_permit(1)
            .await
            .map_err(|_| ApiError::Closed)?;
        let mut path = String::with_capacity(self.target.base.len() + req.client_id.len() + 16);
        path.push_str(&self.target.base);
        path.push_str(req.client_id);
        if let Some(query) = req.query {
            path.push('?');
            path.push_str(query);
        }
        let mut bytes = Vec::with_capacity(192 + req.body.len());
        encode_request(
            &mut bytes,
            req.method,
            &self.target.host,
            &path,
            req.headers,
            req.body,
        );
        match glommio::timer::timeout(self.timeout, async { Ok(self.exchange(&bytes).await) }).await
        {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout(self.timeout)),
        }
    }

    /// Closes the pool: waiting and later requests fail with [`ApiError::Closed`].
    pub fn close(&self) {
        self.permits.close();
        self.idle.borrow_mut().clear();
    }

    async fn exchange(&self, bytes: &[u8]) -> Result<Answer, ApiError> {
        loop {
            let reused = self.idle.borrow_mut().pop();
            let (mut stream, was_reused) = match reused {
                Some(stream) => (stream, true),
                None => match self.connect().await {
                    Ok(stream) => (stream, false),
                    Err(ApiError::Connect(e)) if out_of_descriptors(&e) && self.open.get() > 0 => {
                        // The process is out of file descriptors, but this pool has
                        // connections of its own: wait for one of them to come back
                        // instead of failing the request (bounded by `api_timeout`).
                        self.returned.wait().await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let guard = OpenGuard(self.open.clone());
            match self.round_trip(&mut stream, bytes).await {
                Ok(answer) => {
                    if answer.keep_alive {
                        std::mem::forget(guard);
                        self.idle.borrow_mut().push(stream);
                    } else {
                        drop(stream);
                        drop(guard);
                    }
                    self.returned.notify_one();
                    return Ok(answer);
                }
                Err(Failure::Stale) if was_reused => continue,
                Err(Failure::Stale) => {
                    return Err(ApiError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed before answering",
                    )))
                }
                Err(Failure::Failed(e)) => {
                    drop(stream);
                    drop(guard);
                    self.returned.notify_one();
                    return Err(e);
                }
            }
        }
    }

    async fn connect(&self) -> Result<TcpStream, ApiError> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| ApiError::Connect(io::Error::from(e)))?;
        let _ = stream.set_nodelay(true);
        self.open.set(self.open.get() + 1);
        Ok(stream)
    }

    async fn round_trip(&self, stream: &mut TcpStream, bytes: &[u8]) -> Result<Answer, Failure> {
        if let Err(e) = stream.write_all(bytes).await {
            return Err(match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failure::Stale,
                _ => Failure::Failed(ApiError::Io(e)),
            });
        }
        let mut decoder = AnswerDecoder::new(self.max_answer, false);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                Err(e) if !decoder.started() && e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Failure::Stale)
                }
                Err(e) => return Err(Failure::Failed(ApiError::Io(e))),
            };
            if n == 0 {
                if !decoder.started() {
                    return Err(Failure::Stale);
                }
                return decoder
                    .finish()
                    .map_err(|e| Failure::Failed(ApiError::BadAnswer(e)));
            }
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, answer) = decoder
                    .feed(input)
                    .map_err(|e| Failure::Failed(ApiError::BadAnswer(e)))?;
                if let Some(mut answer) = answer {
                    if used < input.len() {
                        // Bytes after the answer: the connection is out of step; do not reuse it.
                        answer.keep_alive = false;
                    }
                    return Ok(answer);
                }
                if used == 0 {
                    break;
                }
                input = &input[used..];
            }
        }
    }
}

/// Counts a connection as open until dropped (a connection that is not returned to the
/// idle list is closed when its stream drops).
struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
