//! Annex-B byte streams (start-code delimited NAL units), as raw `.h264`/`.h265` files and
//! MPEG-TS video carry them.

/// The RBSP of a NAL unit payload: emulation-prevention bytes (`00 00 03` -> `00 00`) removed.
pub use crate::bits::rbsp;

/// Iterates over the NAL units of an Annex-B byte stream (without their start codes).
/// Leading bytes before the first start code are skipped; trailing zero bytes of a NAL unit
/// (`trailing_zero_8bits`) are dropped.
pub fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(data, 0).map(|(_, end)| end);
    std::iter::from_fn(move || {
        let start = pos?;
        let (unit_end, next) = match find_start_code(data, start) {
            Some((sc, end)) => (sc, Some(end)),
            None => (data.len(), None),
        };
        pos = next;
        let mut end = unit_end;
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        Some(&data[start..end])
    })
}

/// Finds the next `00 00 01` at or after `from`; returns (its start, the byte after it).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 0,
        ];
        let units: Vec<_> = split(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
        assert_eq!(split(&[1, 2, 3]).count(), 0);
        assert_eq!(split(&[]).count(), 0);
    }
}
