//! A bounds-checked big-endian reader over [`Bytes`]: every read of peer data goes through it,
//! so a short buffer is an error value and sub-slices share the input's allocation.

use bytes::Bytes;

use crate::error::{MediaError, Result};

#[derive(Debug, Clone)]
pub(crate) struct ByteReader {
    data: Bytes,
    pos: usize,
    what: &'static str,
}

impl ByteReader {
    pub(crate) fn new(data: Bytes, what: &'static str) -> Self {
        ByteReader { data, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn need(&self, n: usize) -> Result<()> {
        if self.remaining() < n {
            return Err(MediaError::Truncated {
                what: self.what,
                needed: n - self.remaining(),
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        self.need(1)?;
        let v = self.data[self.pos];
        self.pos += 1;
        Ok(v)
    }

    pub(crate) fn be(&mut self, n: usize) -> Result<u64> {
        debug_assert!(n <= 8);
        self.need(n)?;
        let v = self.data[self.pos..self.pos + n]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        self.pos += n;
        Ok(v)
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(self.be(2)? as u16)
    }

    pub(crate) fn u24(&mut self) -> Result<u32> {
        Ok(self.be(3)? as u32)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(self.be(4)? as u32)
    }

    /// Signed 24-bit big-endian (FLV composition time).
    pub(crate) fn i24(&mut self) -> Result<i32> {
        let v = self.u24()?;
        Ok(((v << 8) as i32) >> 8)
    }

    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.be(8)?))
    }

    /// The next `n` bytes, sharing the input's allocation.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes> {
        self.need(n)?;
        let v = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(v)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<()> {
        self.need(n)?;
        self.pos += n;
        Ok(())
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> Bytes {
        let v = self.data.slice(self.pos..);
        self.pos = self.data.len();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_short_input() {
        let mut r = ByteReader::new(Bytes::from_static(&[1, 0xff, 0xff, 0xfe, 9]), "t");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.i24().unwrap(), -2);
        assert_eq!(r.take(1).unwrap().as_ref(), &[9]);
        assert_eq!(
            r.u16(),
            Err(MediaError::Truncated {
                what: "t",
                needed: 2
            })
        );
    }
}
