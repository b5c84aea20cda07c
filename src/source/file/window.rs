//! A read buffer that keeps the unread bytes of its input in one slice, so that a
//! reader can find a whole line or record in place and borrow it without copying.

use std::io::{self, Read};

/// The unread bytes `buf[pos..len]` of `input`, whose offset in the input is known.
pub struct Window<R> {
    pub input: R,
    pub buf: Vec<u8>,
    /// Where unread bytes start in `buf`, and where they end.
    pub pos: usize,
    pub len: usize,
    /// The input offset of `buf[0]`.
    pub offset: u64,
    /// Whether the input has ended (after `len`).
    pub eof: bool,
    /// The buffer's size before any long line grew it.
    capacity: usize,
}

impl<R: Read> Window<R> {
    /// A window on `input` (whose first byte is at `offset`) with a buffer of `capacity`
    /// bytes, grown for longer lines.
    pub fn new(input: R, capacity: usize, offset: u64) -> Window<R> {
        let capacity = capacity.max(1);
        Window {
            input,
            buf: vec![0; capacity],
            pos: 0,
            len: 0,
            offset,
            eof: false,
            capacity,
        }
    }

    /// The unread bytes.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// The input offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.offset + self.pos as u64
    }

    /// Forgets what was buffered: the input now stands at `offset`. Reads go back to
    /// the first buffer size, should one long line have grown it.
    pub fn restart(&mut self, offset: u64) {
        self.buf.truncate(self.capacity);
        self.pos = 0;
        self.len = 0;
        self.offset = offset;
        self.eof = false;
    }

    /// Moves the unread bytes to the front of the buffer (growing it when they fill it)
    /// and reads more after them; marks the end of the input.
    pub fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.offset += self.pos as u64;
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
