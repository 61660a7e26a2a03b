//! Bit-level writing (and the little reading the SPS rewrite needs) of H.264 and AAC syntax:
//! most-significant bit first, Exp-Golomb codes, and emulation prevention for NAL units.
//!
//! `media` has its own private reader for parsing peer input (and exports the removal of
//! emulation prevention, `media::annexb::rbsp`); this one also writes, and reads only the
//! encoder's own output, whose layout is known.

use crate::error::SlateError;

/// Writes bits most-significant first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    pub(crate) fn bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 0x80 >> self.used;
            }
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the `n` low bits of `value` (n <= 32).
    pub(crate) fn bits(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    /// Unsigned Exp-Golomb `ue(v)`.
    #[cfg(test)]
    pub(crate) fn ue(&mut self, value: u32) {
        let coded = u64::from(value) + 1;
        let len = 64 - coded.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit((coded >> i) & 1 == 1);
        }
    }

    /// Pads with zero bits to a byte boundary.
    pub(crate) fn align_zero(&mut self) {
        while self.used != 0 {
            self.bit(false);
        }
    }

    /// `rbsp_trailing_bits()`: a one, then zeros to the byte boundary.
    pub(crate) fn trailing_bits(&mut self) {
        self.bit(true);
        self.align_zero();
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads bits most-significant first from an RBSP (emulation prevention already removed).
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bits left.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    pub(crate) fn bit(&mut self) -> Result<bool, SlateError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| SlateError::Encoder("the encoder's SPS ends early".into()))?;
        self.pos += 1;
        Ok((byte >> (7 - (self.pos - 1) % 8)) & 1 == 1)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, SlateError> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    pub(crate) fn ue(&mut self) -> Result<u32, SlateError> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(SlateError::Encoder(
                    "the encoder's SPS has an Exp-Golomb code over 32 bits".into(),
                ));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    pub(crate) fn se(&mut self) -> Result<i32, SlateError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }

    /// Copies the bits from `from` up to the current position into `out`.
    pub(crate) fn copy_span(&self, from: usize, out: &mut BitWriter) {
        for p in from..self.pos {
            out.bit((self.data[p / 8] >> (7 - p % 8)) & 1 == 1);
        }
    }
}

/// Inserts emulation-prevention bytes so that no `00 00 0x` (x <= 3) appears.
pub(crate) fn from_rbsp(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_round_trips() {
        let mut w = BitWriter::default();
        for v in [0u32, 1, 2, 3, 7, 8, 255, 65_535, u32::MAX - 1] {
            w.ue(v);
        }
        w.bits(5, 0b10110);
        w.trailing_bits();
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        for v in [0u32, 1, 2, 3, 7, 8, 255, 65_535, u32::MAX - 1] {
            assert_eq!(r.ue().unwrap(), v);
        }
        assert_eq!(r.bits(5).unwrap(), 0b10110);
        assert!(r.bit().unwrap(), "the stop bit");
        assert!(r.remaining() < 8);
    }

    #[test]
    fn emulation_prevention_round_trips() {
        let rbsp = [0u8, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0xff];
        let escaped = from_rbsp(&rbsp);
        assert_eq!(
            escaped,
            [0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 0xff]
        );
        assert_eq!(media::annexb::rbsp(&escaped), rbsp);
    }
}
