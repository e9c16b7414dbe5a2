//! The arithmetic of segmentation offload, apart from any socket so it can
//! be tested alone: which queued datagrams may leave as one UDP GSO
//! super-datagram, and where a UDP GRO super-datagram splits back into the
//! datagrams that were sent.
//!
//! The kernel's rules (Linux `udp_send_skb`, `udp_gro_receive`): every
//! segment of a super-datagram has the segment size except the last,
//! which may be shorter; one super-datagram has at most
//! [`MAX_SEGMENTS`] segments and fits in one UDP datagram.

use std::net::SocketAddr;

/// Segments per GSO super-datagram. The kernel's limit is 64 on every
/// version with `UDP_SEGMENT` (later ones allow more).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// Payload bytes of one super-datagram: the largest UDP payload over IPv4
/// (IPv6 allows 20 bytes more; the smaller bound serves both).
pub(crate) const MAX_SUPER_BYTES: usize = 65_507;

/// One run of queued datagrams that leaves in one `msghdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Run {
    /// Index of its first datagram in the batch.
    pub(crate) first: usize,
    /// How many datagrams (1: sent plainly, without a segment size).
    pub(crate) count: usize,
    /// Their total length.
    pub(crate) bytes: usize,
    /// The segment size: the length of the first datagram.
    pub(crate) segment: usize,
}

/// The run that starts at `first`: the datagrams after it that go to the
/// same peer with the same length, at most [`MAX_SEGMENTS`] and
/// [`MAX_SUPER_BYTES`] in all; a shorter datagram joins as the last
/// segment and ends the run. Without `gso` (or for an empty datagram,
/// which GSO cannot express) every run is one datagram.
pub(crate) fn run_at(lens: &[usize], peers: &[SocketAddr], first: usize, gso: bool) -> Run {
    let n = lens.len().min(peers.len());
    let Some(&segment) = lens.get(first) else {
        return Run {
            first,
            ..Run::default()
        };
    };
    let mut run = Run {
        first,
        count: 1,
        bytes: segment,
        segment,
    };
    if !gso || segment == 0 {
        return run;
    }
    while first + run.count < n && run.count < MAX_SEGMENTS {
        let i = first + run.count;
        let len = lens[i];
        if peers[i] != peers[first] || len == 0 || len > segment {
            break;
        }
        if run.bytes + len > MAX_SUPER_BYTES {
            break;
        }
        run.count += 1;
        run.bytes += len;
        if len < segment {
            break;
        }
    }
    run
}

/// The `(offset, length)` of each datagram in a received buffer of `len`
/// bytes that GRO coalesced with segment size `segment` (0: not
/// coalesced, one datagram). The last may be shorter than `segment`.
pub(crate) fn split(len: usize, segment: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = if segment == 0 { len.max(1) } else { segment };
    (0..len.max(1))
        .step_by(step)
        .map(move |start| (start, step.min(len - start.min(len))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn equal_datagrams_to_one_peer_form_one_run() {
        let lens = [100; 5];
        let peers = [peer(1); 5];
        let r = run_at(&lens, &peers, 0, true);
        assert_eq!((r.count, r.bytes, r.segment), (5, 500, 100));
        assert_eq!(run_at(&lens, &peers, 0, false).count, 1);
    }

    #[test]
    fn a_short_datagram_ends_the_run_as_its_last_segment() {
        let lens = [100, 100, 40, 100];
        let peers = [peer(1); 4];
        let r = run_at(&lens, &peers, 0, true);
        assert_eq!((r.count, r.bytes), (3, 240));
        let next = run_at(&lens, &peers, 3, true);
        assert_eq!((next.first, next.count), (3, 1));
    }

    #[test]
    fn a_longer_datagram_or_another_peer_starts_a_new_run() {
        let lens = [100, 100, 200, 100];
        let peers = [peer(1), peer(1), peer(1), peer(2)];
        assert_eq!(run_at(&lens, &peers, 0, true).count, 2);
        assert_eq!(run_at(&lens, &peers, 2, true).count, 1);
        let lens = [100; 4];
        assert_eq!(run_at(&lens, &peers, 0, true).count, 3);
    }

    #[test]
    fn runs_respect_the_segment_and_byte_limits() {
        let lens = vec![10; MAX_SEGMENTS + 5];
        let peers = vec![peer(1); MAX_SEGMENTS + 5];
        assert_eq!(run_at(&lens, &peers, 0, true).count, MAX_SEGMENTS);
        let lens = [1472; 60];
        let peers = [peer(1); 60];
        let r = run_at(&lens, &peers, 0, true);
        assert_eq!(r.count, MAX_SUPER_BYTES / 1472);
        assert!(r.bytes <= MAX_SUPER_BYTES);
    }

    #[test]
    fn empty_datagrams_are_never_coalesced() {
        let lens = [0, 0];
        let peers = [peer(1); 2];
        assert_eq!(run_at(&lens, &peers, 0, true).count, 1);
        assert_eq!(run_at(&lens, &peers, 2, true).count, 0);
    }

    #[test]
    fn split_cuts_at_the_segment_size_with_a_short_tail() {
        let parts: Vec<_> = split(250, 100).collect();
        assert_eq!(parts, vec![(0, 100), (100, 100), (200, 50)]);
        let parts: Vec<_> = split(300, 100).collect();
        assert_eq!(parts, vec![(0, 100), (100, 100), (200, 100)]);
    }

    #[test]
    fn split_without_a_segment_size_is_one_datagram() {
        assert_eq!(split(70, 0).collect::<Vec<_>>(), vec![(0, 70)]);
        assert_eq!(split(0, 0).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(split(30, 100).collect::<Vec<_>>(), vec![(0, 30)]);
    }
}
