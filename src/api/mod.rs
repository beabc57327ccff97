//! The client of the API server: the request/answer codec and the per-shard keep-alive pool.

pub mod codec;
pub mod contract;
pub mod pool;

pub use codec::{Answer, AnswerError, ApiMethod};
pub use pool::{ApiError, ApiPool, ApiRequest, ApiTarget};
