//! The compressed loss list carried by a NAK (control type 3),
//! udt4-protocol.md §6.3.
//!
//! A word with the top bit clear is one lost sequence number. A word with the
//! top bit set starts a range: its low 31 bits are the first lost number and
//! the next word (top bit clear) is the last one, inclusive. UDT4 encodes a
//! run of one as a single word and longer runs as a pair
//! (`CRcvLossList::getLossArray`).

use std::fmt;

use super::{put_header, put_u32, DecodeError, SocketId, CONTROL_FLAG, HEADER_SIZE};
use crate::seq::SeqNumber;

/// The range-start flag, borrowed from the sequence number's top bit.
const RANGE_FLAG: u32 = 0x8000_0000;

/// The loss list of a NAK, kept as the raw big-endian body and decoded
/// lazily, so decoding a NAK costs nothing and allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LossRanges<'a> {
    /// The body: a non-empty whole number of 4-byte words.
    body: &'a [u8],
}

impl<'a> LossRanges<'a> {
    /// Wraps a NAK body as it appears on the wire.
    ///
    /// # Errors
    ///
    /// [`DecodeError::BadLength`] (type 3) if `body` is empty or not a whole
    /// number of 32-bit words. UDT4 never sends either.
    pub fn new(body: &'a [u8]) -> Result<Self, DecodeError> {
        if body.is_empty() || !body.len().is_multiple_of(4) {
            return Err(DecodeError::BadLength {
                type_code: 3,
                len: body.len(),
            });
        }
        Ok(LossRanges { body })
    }

    /// Iterates over the `(first, last)` ranges, both inclusive; a single
    /// lost number gives `first == last`.
    ///
    /// Reversed ranges (`first` after `last`) are yielded as they are: the
    /// connection decides what to do with them (UDT4 breaks the connection).
    /// A malformed list yields one `Err` item and then ends:
    /// [`DecodeError::DanglingRange`] when the last word starts a range,
    /// [`DecodeError::BadRangeEnd`] when a range end has the range bit set.
    pub fn iter(&self) -> LossRangeIter<'a> {
        LossRangeIter {
            words: self.body.chunks_exact(4),
            failed: false,
        }
    }

    /// Number of 32-bit words in the list (at least 1).
    pub fn word_count(&self) -> usize {
        self.body.len() / 4
    }

    /// Checks the whole list once and returns how many ranges it holds, so a
    /// caller can reject a malformed NAK before acting on any part of it.
    ///
    /// # Errors
    ///
    /// The first error [`LossRanges::iter`] would yield.
    pub fn validate(&self) -> Result<usize, DecodeError> {
        let mut count = 0;
        for item in self.iter() {
            item?;
            count += 1;
        }
        Ok(count)
    }

    /// The raw body, as on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }
}

impl fmt::Debug for LossRanges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &LossRanges<'a> {
    type Item = Result<(SeqNumber, SeqNumber), DecodeError>;
    type IntoIter = LossRangeIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the ranges of a [`LossRanges`]; see [`LossRanges::iter`].
#[derive(Clone, Debug)]
pub struct LossRangeIter<'a> {
    words: std::slice::ChunksExact<'a, u8>,
    /// Set after an error item: iteration ends there.
    failed: bool,
}

impl LossRangeIter<'_> {
    fn next_word(&mut self) -> Option<u32> {
        self.words
            .next()
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl Iterator for LossRangeIter<'_> {
    type Item = Result<(SeqNumber, SeqNumber), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let word = self.next_word()?;
        if word & RANGE_FLAG == 0 {
            let seq = SeqNumber::new(word);
            return Some(Ok((seq, seq)));
        }
        let first = SeqNumber::new(word);
        let result = match self.next_word() {
            None => Err(DecodeError::DanglingRange),
            Some(end) if end & RANGE_FLAG != 0 => Err(DecodeError::BadRangeEnd),
            Some(end) => Ok((first, SeqNumber::new(end))),
        };
        self.failed = result.is_err();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            return (0, Some(0));
        }
        let words = self.words.len();
        (words.div_ceil(2), Some(words))
    }
}

/// Writes a NAK carrying `ranges` to `out`, replacing its contents (capacity
/// reused), and returns how many ranges it wrote.
///
/// A range of one sequence number takes one word, a longer range a pair, as
/// UDT4 encodes them. Writing stops at the first range that would take the
/// body past `max_words` words (set it to the peer's payload size / 4), so
/// the rest can go in a later NAK. `(first, last)` pairs are written as
/// given; pass them in order and with `first` not after `last`. When 0 is
/// returned, `out` holds a NAK with an empty body: do not send it.
pub fn encode_nak(
    timestamp: u32,
    dest: SocketId,
    ranges: impl Iterator<Item = (SeqNumber, SeqNumber)>,
    max_words: usize,
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    out.reserve(HEADER_SIZE + 8);
    // Type 3, word 1 = 0, as UDT4 sendCtrl case 3.
    put_header(out, CONTROL_FLAG | (3 << 16), 0, timestamp, dest);
    let mut used = 0usize;
    let mut written = 0usize;
    for (first, last) in ranges {
        let single = first == last;
        let needed = if single { 1 } else { 2 };
        if used + needed > max_words {
            break;
        }
        if single {
            put_u32(out, first.value());
        } else {
            put_u32(out, first.value() | RANGE_FLAG);
            put_u32(out, last.value());
        }
        used += needed;
        written += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{decode, Control, Packet};
    use crate::rng::Rng;

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn collect(body: &[u8]) -> Vec<Result<(u32, u32), DecodeError>> {
        LossRanges::new(body)
            .unwrap()
            .iter()
            .map(|r| r.map(|(a, b)| (a.value(), b.value())))
            .collect()
    }

    #[test]
    fn singles_and_ranges() {
        let body = words(&[5, 0x8000_0007, 9, 0x7FFF_FFFF, 0x8000_0000, 0]);
        assert_eq!(
            collect(&body),
            vec![
                Ok((5, 5)),
                Ok((7, 9)),
                Ok((0x7FFF_FFFF, 0x7FFF_FFFF)),
                Ok((0, 0))
            ]
        );
        let ranges = LossRanges::new(&body).unwrap();
        assert_eq!(ranges.word_count(), 6);
        assert_eq!(ranges.validate(), Ok(4));
    }

    #[test]
    fn reversed_ranges_are_yielded_as_they_are() {
        let body = words(&[0x8000_0009, 7]);
        assert_eq!(collect(&body), vec![Ok((9, 7))]);
    }

    #[test]
    fn malformed_lists_end_with_one_error() {
        let dangling = words(&[1, 0x8000_0002]);
        assert_eq!(
            collect(&dangling),
            vec![Ok((1, 1)), Err(DecodeError::DanglingRange)]
        );
        let bad_end = words(&[0x8000_0002, 0x8000_0005, 6, 7]);
        assert_eq!(collect(&bad_end), vec![Err(DecodeError::BadRangeEnd)]);
        assert_eq!(
            LossRanges::new(&bad_end).unwrap().validate(),
            Err(DecodeError::BadRangeEnd)
        );
    }

    #[test]
    fn bad_body_lengths() {
        assert!(LossRanges::new(&[]).is_err());
        assert_eq!(
            LossRanges::new(&[0, 0, 0, 1, 0]),
            Err(DecodeError::BadLength {
                type_code: 3,
                len: 5
            })
        );
    }

    #[test]
    fn nak_across_the_wrap_matches_udt4() {
        // udt4-protocol.md §14 vector 6: ISN 0x7FFFFFFD, losing ISN+1 gives
        // `7FFFFFFE`; losing ISN+4..ISN+5 (1..2 after the wrap) gives
        // `80000001 00000002`.
        let dest = SocketId(0x0102_0304);
        let isn = SeqNumber::new(0x7FFF_FFFD);
        let mut out = Vec::new();
        let one = isn.add(1);
        assert_eq!(
            encode_nak(0, dest, [(one, one)].into_iter(), 100, &mut out),
            1
        );
        assert_eq!(out, words(&[0x8003_0000, 0, 0, 0x0102_0304, 0x7FFF_FFFE]));
        let n = encode_nak(
            0,
            dest,
            [(isn.add(4), isn.add(5))].into_iter(),
            100,
            &mut out,
        );
        assert_eq!(n, 1);
        assert_eq!(
            out,
            words(&[0x8003_0000, 0, 0, 0x0102_0304, 0x8000_0001, 2])
        );
        let Ok(Packet::Control(c)) = decode(&out) else {
            panic!("not a control packet")
        };
        let Control::Nak(r) = c.control else {
            panic!("not a NAK")
        };
        let got: Vec<_> = r.iter().collect();
        assert_eq!(got, vec![Ok((SeqNumber::new(1), SeqNumber::new(2)))]);
    }

    #[test]
    fn encode_stops_before_max_words() {
        let s = SeqNumber::new;
        let ranges = [(s(1), s(1)), (s(3), s(4)), (s(8), s(8)), (s(10), s(20))];
        let mut out = Vec::new();
        for (max, expect_ranges, expect_words) in [
            (0, 0, 0),
            (1, 1, 1),
            (2, 1, 1),
            (3, 2, 3),
            (4, 3, 4),
            (5, 3, 4),
            (6, 4, 6),
        ] {
            let n = encode_nak(7, SocketId(1), ranges.into_iter(), max, &mut out);
            assert_eq!(n, expect_ranges, "max_words={max}");
            assert_eq!(out.len(), HEADER_SIZE + 4 * expect_words, "max_words={max}");
        }
    }

    /// Encodes random ordered range lists (around the wrap) and checks the
    /// decode against the input, and the word count against a naive count.
    #[test]
    fn randomized_round_trip_against_model() {
        let seed = 0x5EED_0003;
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for case in 0..2_000 {
            let mut at = SeqNumber::new(SeqNumber::MAX - rng.below(64) as u32);
            let mut model = Vec::new();
            for _ in 0..rng.below(40) {
                at = at.add(1 + rng.below(5) as u32);
                let first = at;
                at = at.add(rng.below(3) as u32);
                model.push((first, at));
                at = at.next();
            }
            let max_words = rng.below(100) as usize;
            let n = encode_nak(0, SocketId(3), model.iter().copied(), max_words, &mut out);
            // Naive model of how many ranges fit.
            let mut used = 0;
            let mut fit = 0;
            for (a, b) in &model {
                let w = if a == b { 1 } else { 2 };
                if used + w > max_words {
                    break;
                }
                used += w;
                fit += 1;
            }
            assert_eq!(n, fit, "seed={seed:#x} case={case}");
            assert_eq!(
                out.len(),
                HEADER_SIZE + 4 * used,
                "seed={seed:#x} case={case}"
            );
            if n == 0 {
                continue;
            }
            let ranges = LossRanges::new(&out[HEADER_SIZE..]).unwrap();
            let got: Vec<_> = ranges.iter().map(Result::unwrap).collect();
            assert_eq!(got, model[..n], "seed={seed:#x} case={case}");
        }
    }
}
