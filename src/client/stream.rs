//! What a client connection runs over: a TCP socket, or TLS on one.

use std::io::{Read, Write};

/// A byte stream both ways.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}
