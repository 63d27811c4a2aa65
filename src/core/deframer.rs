//! Splits the decrypted byte stream of a link into whole messages.

use super::wire::LEN_PREFIX;

/// Largest message on the wire, with its length prefix.
pub const MAX_WIRE_MESSAGE: usize = LEN_PREFIX + super::wire::MAX_MSG_LEN;

/// A receive buffer that yields complete length-prefixed messages.
///
/// It starts empty and grows only as far as the traffic needs (at most about
/// two messages plus one read), so idle links cost almost nothing.
#[derive(Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Space for at least `min` more bytes, to read into; follow with
    /// [`Deframer::commit`].
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.buf.len() - self.end < min {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < min {
                self.buf.resize(self.end + min, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the space given by [`Deframer::spare`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes (a convenience for tests and in-memory links).
    pub fn push(&mut self, data: &[u8]) {
        self.spare(data.len())[..data.len()].copy_from_slice(data);
        self.commit(data.len());
    }

    /// The next whole message, with its length prefix, or `None` until more
    /// bytes arrive. A zero-length message is returned too (it is the
    /// protocol layer's job to call it an error); the stream stays in step.
    pub fn next_message(&mut self) -> Option<&mut [u8]> {
        let avail = self.buf.get(self.start..self.end)?;
        if avail.len() < LEN_PREFIX {
            return None;
        }
        let total = LEN_PREFIX + u16::from_be_bytes([avail[0], avail[1]]) as usize;
        if avail.len() < total {
            return None;
        }
        let at = self.start;
        self.start += total;
        if self.start == self.end {
            // Everything consumed: the next read starts at the front again.
            // The bytes returned below stay valid until the next `spare`.
            self.start = 0;
            self.end = 0;
        }
        self.buf.get_mut(at..at + total)
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Releases the buffer's memory when it holds nothing and has grown past
    /// `keep` bytes (called on idle links).
    pub fn shrink(&mut self, keep: usize) {
        if self.start == self.end && self.buf.len() > keep {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Memory held, in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 1) as u16).to_be_bytes().to_vec();
        v.push(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn yields_messages_split_anywhere() {
        let mut stream = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..50u8).map(|i| msg(0x80, &vec![i; i as usize * 37])).collect();
        msgs.iter().for_each(|m| stream.extend_from_slice(m));
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut d = Deframer::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message() {
                    got.push(m.to_vec());
                }
            }
            assert_eq!(got, msgs, "chunk size {chunk}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn zero_length_keeps_the_stream_in_step() {
        let mut d = Deframer::new();
        d.push(&[0, 0]);
        d.push(&msg(1, &[9]));
        assert_eq!(d.next_message().unwrap(), &[0, 0]);
        assert_eq!(d.next_message().unwrap(), &msg(1, &[9])[..]);
        assert!(d.next_message().is_none());
    }

    #[test]
    fn largest_message_fits_and_memory_is_released() {
        let big = msg(0x80, &vec![7; 65534]);
        assert_eq!(big.len(), MAX_WIRE_MESSAGE);
        let mut d = Deframer::new();
        d.push(&big[..1000]);
        assert!(d.next_message().is_none());
        d.push(&big[1000..]);
        assert_eq!(d.next_message().unwrap().len(), MAX_WIRE_MESSAGE);
        assert!(d.capacity() >= MAX_WIRE_MESSAGE);
        d.shrink(16 * 1024);
        assert_eq!(d.capacity(), 0);
    }
}
