//! HTTP/1.1 for the public and control listeners: sans-IO request heads, PROXY
//! protocol headers and responses, and the socket loop that reads a head within a bound.

pub mod forwarded;
pub mod proxy;
pub mod read;
pub mod request;
pub mod response;
pub mod upgrade;
