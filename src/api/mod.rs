//! The client of the API server: the contract of each event, request encoding, answer
//! decoding, the per-shard keep-alive pool.

pub mod answer;
pub mod contract;
pub mod pool;
pub mod request;

pub use answer::{Answer, AnswerError};
pub use pool::{ApiError, ApiPool, ApiRequest, ApiTarget};
pub use request::ApiMethod;
