//! Encoding and decoding of every UDT4 packet, byte-compatible with UDT 4.11.
//!
//! Decoding is zero-copy: a [`Packet`] borrows the datagram it came from, so
//! [`decode`] never allocates, and it never panics on any input (hostile
//! datagrams are an expected case, not an exceptional one). Encoding writes
//! into a caller-owned `Vec<u8>` that is cleared first, so a buffer reused
//! across packets stops allocating once it has grown to the largest packet.
//!
//! Wire rules (udt4-protocol.md §1, §2): the 16-byte header is four
//! big-endian 32-bit words; a control packet's body is big-endian 32-bit
//! words; a data packet's payload is carried untouched.

use std::fmt;

use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};

mod handshake;
mod loss;

pub use handshake::{Handshake, PeerIp, ReqType};
pub use loss::{encode_nak, LossRangeIter, LossRanges};

/// Size of the UDT header that starts every packet: four 32-bit words.
pub const HEADER_SIZE: usize = 16;

/// The flag bit of header word 0: set on control packets, clear on data.
pub(crate) const CONTROL_FLAG: u32 = 0x8000_0000;

/// Control type codes (header word 0, bits 16–30), udt4-protocol.md §2.3.
mod type_code {
    pub(super) const HANDSHAKE: u16 = 0;
    pub(super) const KEEP_ALIVE: u16 = 1;
    pub(super) const ACK: u16 = 2;
    pub(super) const NAK: u16 = 3;
    pub(super) const CONGESTION_WARNING: u16 = 4;
    pub(super) const SHUTDOWN: u16 = 5;
    pub(super) const ACK2: u16 = 6;
    pub(super) const MSG_DROP_REQUEST: u16 = 7;
    pub(super) const ERROR_SIGNAL: u16 = 8;
    pub(super) const USER_DEFINED: u16 = 0x7FFF;
}

/// Body length of a light ACK: the ACK number alone (UDT4 `processCtrl`
/// case 2 decides "light" from `getLength() == 4`).
const LIGHT_ACK_BODY: usize = 4;
/// Body length of a medium ACK: ACK number, RTT, RTT variance, free buffer.
const MEDIUM_ACK_BODY: usize = 16;
/// Body length of a full ACK: the medium fields plus the two rate fields.
const FULL_ACK_BODY: usize = 24;
/// Body length of a message drop request: first and "last" sequence number.
const MSG_DROP_BODY: usize = 8;

/// Where a data packet sits inside its message (header word 1, bits 31–30).
///
/// UDT4 `CPacket::getMsgBoundary`: `10` first, `01` last, `11` the only
/// packet of its message, `00` a middle packet (udt4-protocol.md §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketPosition {
    /// Neither the first nor the last packet of its message (bits `00`).
    Middle,
    /// The last packet of a message of two or more packets (bits `01`).
    Last,
    /// The first packet of a message of two or more packets (bits `10`).
    First,
    /// A message that fits in one packet (bits `11`).
    Only,
}

impl PacketPosition {
    /// Decodes the two boundary bits (the low two bits of `bits` are used).
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 0b11 {
            0b00 => PacketPosition::Middle,
            0b01 => PacketPosition::Last,
            0b10 => PacketPosition::First,
            _ => PacketPosition::Only,
        }
    }

    /// The two boundary bits of this position, in the low bits of the result.
    pub const fn bits(self) -> u32 {
        match self {
            PacketPosition::Middle => 0b00,
            PacketPosition::Last => 0b01,
            PacketPosition::First => 0b10,
            PacketPosition::Only => 0b11,
        }
    }

    /// True when this packet starts a message (`First` or `Only`).
    pub const fn is_first(self) -> bool {
        matches!(self, PacketPosition::First | PacketPosition::Only)
    }

    /// True when this packet ends a message (`Last` or `Only`).
    pub const fn is_last(self) -> bool {
        matches!(self, PacketPosition::Last | PacketPosition::Only)
    }
}

/// The header of a data packet (udt4-protocol.md §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// The packet's 31-bit sequence number.
    pub seq: SeqNumber,
    /// Where the packet sits inside its message.
    pub position: PacketPosition,
    /// Whether the message must be delivered in order (word 1, bit 29).
    pub in_order: bool,
    /// The 29-bit message number.
    pub msg: MsgNumber,
    /// Microseconds since the sender opened its socket, truncated to 32 bits.
    pub timestamp: u32,
    /// The receiving socket's ID.
    pub dest: SocketId,
}

impl DataHeader {
    /// Header word 1: boundary bits, in-order bit and message number.
    const fn word1(&self) -> u32 {
        (self.position.bits() << 30) | ((self.in_order as u32) << 29) | self.msg.value()
    }
}

/// One decoded UDT packet, borrowing the datagram it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A data packet and its payload, untouched.
    Data {
        /// The data header.
        header: DataHeader,
        /// The application bytes carried after the header.
        payload: &'a [u8],
    },
    /// A control packet.
    Control(ControlPacket<'a>),
}

impl Packet<'_> {
    /// The destination socket ID from header word 3.
    pub fn dest(&self) -> SocketId {
        match self {
            Packet::Data { header, .. } => header.dest,
            Packet::Control(c) => c.dest,
        }
    }

    /// The timestamp from header word 2.
    pub fn timestamp(&self) -> u32 {
        match self {
            Packet::Data { header, .. } => header.timestamp,
            Packet::Control(c) => c.timestamp,
        }
    }

    /// Writes this packet to `out` as one datagram, replacing its contents.
    ///
    /// `out` is cleared first and its capacity reused, so encoding into a
    /// long-lived buffer does not allocate once the buffer is large enough.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Data { header, payload } => encode_data(header, payload, out),
            Packet::Control(c) => c.encode(out),
        }
    }
}

/// A control packet: header fields plus the typed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket<'a> {
    /// Header word 2. UDT4 always sends 0 here (udt4-protocol.md §2.2).
    pub timestamp: u32,
    /// The receiving socket's ID; 0 for connection requests.
    pub dest: SocketId,
    /// The control type and its fields.
    pub control: Control<'a>,
}

impl ControlPacket<'_> {
    /// Writes this control packet to `out` as one datagram, replacing its
    /// contents (capacity reused, as [`Packet::encode`]).
    ///
    /// Types that carry no information (keep-alive, congestion warning,
    /// shutdown, ACK2, error signal, unknown types) get one zero pad word and
    /// are 20 bytes long, exactly as UDT4 sends them (udt4-protocol.md §1).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let (code, ext, info) = self.control.header_fields();
        let word0 = CONTROL_FLAG | (u32::from(code & 0x7FFF) << 16) | u32::from(ext);
        out.reserve(HEADER_SIZE + self.control.body_len());
        put_header(out, word0, info, self.timestamp, self.dest);
        match &self.control {
            Control::Handshake(hs) => hs.write_body(out),
            Control::LightAck { ack } => put_u32(out, ack.value()),
            Control::Ack(ack) => {
                put_u32(out, ack.ack.value());
                put_u32(out, ack.rtt_us);
                put_u32(out, ack.rtt_var_us);
                put_u32(out, ack.available_buffer);
                if let Some(rates) = ack.rates {
                    put_u32(out, rates.recv_rate);
                    put_u32(out, rates.link_capacity);
                }
            }
            Control::Nak(ranges) => out.extend_from_slice(ranges.as_bytes()),
            Control::MsgDropRequest { first, last, .. } => {
                put_u32(out, first.value());
                put_u32(out, last.value());
            }
            Control::UserDefined { body, .. } => out.extend_from_slice(body),
            Control::KeepAlive
            | Control::CongestionWarning
            | Control::Shutdown
            | Control::Ack2(_)
            | Control::ErrorSignal { .. }
            | Control::Unknown { .. } => {
                // UDT4 CPacket::pack: a second iovec is always needed, so these
                // carry one zero pad word (`__pad`).
                put_u32(out, 0);
            }
        }
    }
}

/// The body of a control packet, by type (udt4-protocol.md §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control<'a> {
    /// Type 0: connection set-up. Decoding needs a body of at least 48 bytes
    /// and ignores any extra (a listener additionally insists on exactly 48).
    Handshake(Handshake),
    /// Type 1: keep-alive.
    KeepAlive,
    /// Type 2 with a 4-byte body: acknowledges everything before `ack`,
    /// without ACK sequence number or estimates; the sender answers no ACK2.
    LightAck {
        /// The first sequence number not yet received.
        ack: SeqNumber,
    },
    /// Type 2 with a body of 16 bytes or more: a medium or full ACK.
    Ack(Ack),
    /// Type 3: the compressed list of lost sequence numbers.
    Nak(LossRanges<'a>),
    /// Type 4: congestion (delay) warning. UDT4 4.11 never sends it.
    CongestionWarning,
    /// Type 5: the peer is closing.
    Shutdown,
    /// Type 6: acknowledges the ACK with this ACK sequence number (word 1).
    Ack2(AckSeqNumber),
    /// Type 7: the sender gave up on (part of) a message.
    MsgDropRequest {
        /// The message's 29-bit number (word 1, flag bits masked).
        msg: MsgNumber,
        /// The first dropped sequence number.
        first: SeqNumber,
        /// The "last" dropped sequence number. UDT4 sends one past the
        /// message's final packet (udt4-protocol.md §11).
        last: SeqNumber,
    },
    /// Type 8: error signal; `code` 4000 is UDT4's file-write failure.
    ErrorSignal {
        /// The error code from word 1.
        code: u32,
    },
    /// Type 0x7FFF: a message for a congestion controller that knows it.
    UserDefined {
        /// The extended type, header word 0 bits 0–15.
        ext_type: u16,
        /// Header word 1.
        info: u32,
        /// The body exactly as on the wire (UDT4 peers read it as
        /// big-endian 32-bit words).
        body: &'a [u8],
    },
    /// Any other type. UDT4 ignores these silently; so should the receiver.
    Unknown {
        /// The 15-bit type code.
        type_code: u16,
        /// Header word 1.
        info: u32,
    },
}

impl Control<'_> {
    /// (type code, extended type, word 1) of this control packet's header.
    fn header_fields(&self) -> (u16, u16, u32) {
        match self {
            Control::Handshake(_) => (type_code::HANDSHAKE, 0, 0),
            Control::KeepAlive => (type_code::KEEP_ALIVE, 0, 0),
            // A light ACK carries no ACK sequence number (UDT4 sendCtrl case 2).
            Control::LightAck { .. } => (type_code::ACK, 0, 0),
            Control::Ack(ack) => (type_code::ACK, 0, ack.ack_seq.value()),
            Control::Nak(_) => (type_code::NAK, 0, 0),
            Control::CongestionWarning => (type_code::CONGESTION_WARNING, 0, 0),
            Control::Shutdown => (type_code::SHUTDOWN, 0, 0),
            Control::Ack2(seq) => (type_code::ACK2, 0, seq.value()),
            Control::MsgDropRequest { msg, .. } => (type_code::MSG_DROP_REQUEST, 0, msg.value()),
            Control::ErrorSignal { code } => (type_code::ERROR_SIGNAL, 0, *code),
            Control::UserDefined { ext_type, info, .. } => {
                (type_code::USER_DEFINED, *ext_type, *info)
            }
            Control::Unknown { type_code, info } => (*type_code, 0, *info),
        }
    }

    /// Length in bytes of the encoded body.
    fn body_len(&self) -> usize {
        match self {
            Control::Handshake(_) => Handshake::BODY_SIZE,
            Control::LightAck { .. } => LIGHT_ACK_BODY,
            Control::Ack(Ack { rates: None, .. }) => MEDIUM_ACK_BODY,
            Control::Ack(Ack { rates: Some(_), .. }) => FULL_ACK_BODY,
            Control::Nak(ranges) => ranges.as_bytes().len(),
            Control::MsgDropRequest { .. } => MSG_DROP_BODY,
            Control::UserDefined { body, .. } => body.len(),
            _ => 4,
        }
    }
}

/// A medium or full ACK (type 2, udt4-protocol.md §2.3, §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The ACK sequence number (word 1), echoed by the ACK2.
    pub ack_seq: AckSeqNumber,
    /// The first sequence number not yet received: everything before it
    /// arrived.
    pub ack: SeqNumber,
    /// The receiver's smoothed RTT in microseconds.
    pub rtt_us: u32,
    /// The receiver's RTT variance in microseconds.
    pub rtt_var_us: u32,
    /// Free receive buffer in packets (UDT4 sends at least 2).
    pub available_buffer: u32,
    /// The rate fields of a full ACK; `None` for a "medium" ACK (32 bytes).
    pub rates: Option<AckRates>,
}

/// The two estimates a full ACK adds (udt4-protocol.md §8.2, §8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AckRates {
    /// Packet arrival speed, packets per second.
    pub recv_rate: u32,
    /// Estimated link capacity, packets per second.
    pub link_capacity: u32,
}

/// Why a datagram is not a valid UDT packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than the 16-byte header.
    TooShort,
    /// A control packet whose body length does not fit its type.
    BadLength {
        /// The control type code.
        type_code: u16,
        /// The body length in bytes (datagram length minus the header).
        len: usize,
    },
    /// A NAK ends with a range start that has no end word.
    DanglingRange,
    /// A NAK range start is followed by another word with the range bit set.
    BadRangeEnd,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort => write!(f, "datagram shorter than the 16-byte UDT header"),
            DecodeError::BadLength { type_code, len } => write!(
                f,
                "control packet of type {type_code:#x} has a {len}-byte body, invalid for its type"
            ),
            DecodeError::DanglingRange => write!(f, "NAK loss list ends inside a range"),
            DecodeError::BadRangeEnd => {
                write!(f, "NAK loss range end has the range bit set")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one datagram. Never panics and never allocates, on any input.
///
/// The payload and the bodies of NAK and user-defined packets borrow from
/// `datagram`.
///
/// # Errors
///
/// - [`DecodeError::TooShort`] if the datagram is shorter than the header.
/// - [`DecodeError::BadLength`] if a control body is too short for its type:
///   handshake < 48 bytes; ACK neither 4 nor ≥ 16 bytes; NAK empty or not a
///   whole number of words; message drop request < 8 bytes.
///
/// Unknown control types are not errors: they decode to [`Control::Unknown`].
/// A malformed NAK list is reported lazily by [`LossRanges::iter`].
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let Some((header, body)) = datagram.split_first_chunk::<HEADER_SIZE>() else {
        return Err(DecodeError::TooShort);
    };
    let word0 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let word1 = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let timestamp = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let dest = SocketId(u32::from_be_bytes([
        header[12], header[13], header[14], header[15],
    ]));

    if word0 & CONTROL_FLAG == 0 {
        let header = DataHeader {
            seq: SeqNumber::new(word0),
            position: PacketPosition::from_bits(word1 >> 30),
            in_order: word1 & (1 << 29) != 0,
            msg: MsgNumber::new(word1),
            timestamp,
            dest,
        };
        return Ok(Packet::Data {
            header,
            payload: body,
        });
    }

    let code = ((word0 >> 16) & 0x7FFF) as u16;
    let bad_length = DecodeError::BadLength {
        type_code: code,
        len: body.len(),
    };
    let control = match code {
        type_code::HANDSHAKE => Control::Handshake(Handshake::decode(body)?),
        // Pad words (UDT4 sends one) are ignored; an empty body is accepted too.
        type_code::KEEP_ALIVE => Control::KeepAlive,
        type_code::ACK => decode_ack(word1, body).ok_or(bad_length)?,
        type_code::NAK => Control::Nak(LossRanges::new(body)?),
        type_code::CONGESTION_WARNING => Control::CongestionWarning,
        type_code::SHUTDOWN => Control::Shutdown,
        type_code::ACK2 => Control::Ack2(AckSeqNumber::new(word1)),
        type_code::MSG_DROP_REQUEST => {
            let [first, last] = words::<2>(body).ok_or(bad_length)?;
            Control::MsgDropRequest {
                msg: MsgNumber::new(word1),
                first: SeqNumber::new(first),
                last: SeqNumber::new(last),
            }
        }
        type_code::ERROR_SIGNAL => Control::ErrorSignal { code: word1 },
        type_code::USER_DEFINED => Control::UserDefined {
            ext_type: (word0 & 0xFFFF) as u16,
            info: word1,
            body,
        },
        other => Control::Unknown {
            type_code: other,
            info: word1,
        },
    };
    Ok(Packet::Control(ControlPacket {
        timestamp,
        dest,
        control,
    }))
}

/// Decodes an ACK body; `None` when its length fits no ACK form.
fn decode_ack(word1: u32, body: &[u8]) -> Option<Control<'static>> {
    // UDT4 processCtrl case 2: light iff the body is exactly 4 bytes; the
    // rate fields are read when the body is longer than 16 bytes. We require
    // the full 24 bytes for them instead of reading past the end.
    if body.len() == LIGHT_ACK_BODY {
        let [ack] = words::<1>(body)?;
        return Some(Control::LightAck {
            ack: SeqNumber::new(ack),
        });
    }
    let [ack, rtt_us, rtt_var_us, available_buffer] = words::<4>(body)?;
    let rates = words::<6>(body).map(|w| AckRates {
        recv_rate: w[4],
        link_capacity: w[5],
    });
    Some(Control::Ack(Ack {
        ack_seq: AckSeqNumber::new(word1),
        ack: SeqNumber::new(ack),
        rtt_us,
        rtt_var_us,
        available_buffer,
        rates,
    }))
}

/// Writes a data packet to `out`, replacing its contents (capacity reused).
///
/// The payload is copied as it is (UDT4 does not byte-swap data payloads).
pub fn encode_data(header: &DataHeader, payload: &[u8], out: &mut Vec<u8>) {
    // Cleared before reserving: reserving on the previous contents would
    // grow a reused buffer that already has room.
    out.clear();
    out.reserve(HEADER_SIZE + payload.len());
    encode_data_header(header, out);
    out.extend_from_slice(payload);
}

/// Writes only the 16-byte header of a data packet to `out`, replacing its
/// contents: the payload follows it on the wire from wherever it lies (a
/// driver gathering header and payload in one send, without a copy).
pub fn encode_data_header(header: &DataHeader, out: &mut Vec<u8>) {
    out.clear();
    // Word 0 bit 31 clear marks a data packet; SeqNumber is 31 bits already.
    put_header(
        out,
        header.seq.value(),
        header.word1(),
        header.timestamp,
        header.dest,
    );
}

/// The destination socket ID (header word 3) of a datagram, for routing
/// without a full decode; `None` if it is shorter than the header.
pub fn peek_dest(datagram: &[u8]) -> Option<SocketId> {
    let (header, _) = datagram.split_first_chunk::<HEADER_SIZE>()?;
    Some(SocketId(u32::from_be_bytes([
        header[12], header[13], header[14], header[15],
    ])))
}

/// Marks a shutdown's header word 1 (UDT4 leaves it 0 and never reads
/// it): "the sender's data ends before this sequence number".
const SHUTDOWN_END_FLAG: u32 = 0x8000_0000;

/// Writes `end`, the sequence number after the last data packet the
/// sender ever wrote, into the encoded shutdown in `datagram` (header
/// word 1). With it the receiver can tell a complete stream from a
/// truncated one (issue 10 item 2). UDT4 ignores the word. Does nothing
/// to a datagram shorter than a header.
pub fn set_shutdown_end(datagram: &mut [u8], end: SeqNumber) {
    if let Some(word) = datagram.get_mut(4..8) {
        word.copy_from_slice(&(SHUTDOWN_END_FLAG | end.value()).to_be_bytes());
    }
}

/// The end sequence number a shutdown carries (see [`set_shutdown_end`]),
/// or `None` for a shutdown without one (UDT4's) or a short datagram.
pub fn shutdown_end(datagram: &[u8]) -> Option<SeqNumber> {
    let word = u32::from_be_bytes(datagram.get(4..8)?.try_into().ok()?);
    (word & SHUTDOWN_END_FLAG != 0).then(|| SeqNumber::new(word & !SHUTDOWN_END_FLAG))
}

/// True when the datagram is the first packet of a packet pair (a data
/// packet whose sequence number is 16n, §6.1): a sender that batches its
/// output keeps it and the next packet (16n + 1) in one batch, so they
/// leave back to back.
pub fn is_probe_head(datagram: &[u8]) -> bool {
    match datagram.first_chunk::<4>() {
        Some(word) if !is_control(datagram) => u32::from_be_bytes(*word) & 0xF == 0,
        _ => false,
    }
}

/// True when the datagram's flag bit marks a control packet. An empty
/// datagram is not a control packet.
pub fn is_control(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0x80 != 0)
}

/// Appends the four header words.
pub(crate) fn put_header(
    out: &mut Vec<u8>,
    word0: u32,
    word1: u32,
    timestamp: u32,
    dest: SocketId,
) {
    put_u32(out, word0);
    put_u32(out, word1);
    put_u32(out, timestamp);
    put_u32(out, dest.0);
}

/// Appends one big-endian word.
fn put_u32(out: &mut Vec<u8>, word: u32) {
    out.extend_from_slice(&word.to_be_bytes());
}

/// The first `N` big-endian words of `body`; `None` if it is shorter.
fn words<const N: usize>(body: &[u8]) -> Option<[u32; N]> {
    if body.len() < N * 4 {
        return None;
    }
    let mut out = [0u32; N];
    for (w, chunk) in out.iter_mut().zip(body.chunks_exact(4)) {
        *w = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
