//! Which side of the gateway a failure came from, as every layer's error reports it.

/// Which side of the gateway an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The WebSocket client (or a control caller): bad request, slow, gone.
    Client,
    /// The API server: refused, broke, too slow, said no.
    Upstream,
    /// The gateway itself: stopping, full, a bug.
    Internal,
}
