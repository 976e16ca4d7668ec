//! Triggers: what turns an outside event into a call on a fresh component instance.

pub mod http;
pub mod mqtt;
pub mod redis;
