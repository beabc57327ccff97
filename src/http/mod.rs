//! Sans-IO HTTP/1.1 for the public and control listeners: request heads in, responses out.

pub mod read;
pub mod request;
pub mod response;
