//! Small CoAP helpers on top of `coap-lite`'s codec: uint option values,
//! Block1/Block2 values (RFC 7959), the request's path and query, and a
//! response packet matching a request.
//!
//! Pure: no I/O. Must never panic on a peer's bytes.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};

/// Content-Format of link format (RFC 6690).
pub const LINK_FORMAT: u16 = 40;
/// Largest block size we send, bytes (SZX 6).
pub const BLOCK_BYTES_MAX: usize = 1024;

/// A uint option value: big-endian, no leading zero bytes.
pub fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// Reads a uint option value (at most 4 bytes).
pub fn read_uint(b: &[u8]) -> Option<u32> {
    if b.len() > 4 {
        return None;
    }
    Some(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
}

/// A Block1/Block2 value: block number, more flag, size (16..=1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub num: u32,
    pub more: bool,
    pub size: usize,
}

impl Block {
    pub fn decode(b: &[u8]) -> Option<Block> {
        let v = read_uint(b)?;
        if b.len() > 3 {
            return None;
        }
        let szx = v & 7;
        if szx == 7 {
            return None;
        }
        Some(Block {
            num: v >> 4,
            more: v & 8 != 0,
            size: 16 << szx,
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        let szx = (self.size.max(16).trailing_zeros() - 4).min(6);
        uint((self.num << 4) | (u32::from(self.more) << 3) | szx)
    }
}

/// The first value of a uint option.
pub fn opt_uint(p: &Packet, o: CoapOption) -> Option<u32> {
    p.get_first_option(o).and_then(|v| read_uint(v))
}

/// The request's Uri-Path segments and Uri-Query arguments (UTF-8, or None).
pub fn path_and_query(p: &Packet) -> Option<(Vec<String>, Vec<String>)> {
    let read = |o| -> Option<Vec<String>> {
        p.get_option(o)
            .map(|l| l.iter().map(|v| String::from_utf8(v.clone()).ok()).collect())
            .unwrap_or(Some(Vec::new()))
    };
    Some((read(CoapOption::UriPath)?, read(CoapOption::UriQuery)?))
}

/// A response to `req`: piggybacked ACK for a CON, NON for a NON.
pub fn response(req: &Packet, code: ResponseType) -> Packet {
    let mut r = Packet::new();
    r.header.set_type(match req.header.get_type() {
        MessageType::Confirmable => MessageType::Acknowledgement,
        _ => MessageType::NonConfirmable,
    });
    r.header.message_id = req.header.message_id;
    r.header.code = MessageClass::Response(code);
    r.set_token(req.get_token().to_vec());
    r
}

/// Critical options we do not understand (odd numbers), for 4.02.
pub fn unknown_critical(p: &Packet) -> Option<u16> {
    p.options().find_map(|(n, _)| {
        let known = matches!(
            n,
            1 | 3 | 4 | 5 | 6 | 7 | 8 | 11 | 12 | 14 | 15 | 17 | 20 | 23 | 27 | 28 | 60
        );
        (!known && n % 2 == 1).then_some(*n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_uint() {
        let b = Block {
            num: 3,
            more: true,
            size: 64,
        };
        assert_eq!(Block::decode(&b.encode()), Some(b));
        assert_eq!(Block::decode(&[0x0f]), None, "SZX 7 is reserved");
        assert_eq!(uint(0), Vec::<u8>::new());
        assert_eq!(uint(256), vec![1, 0]);
        assert_eq!(read_uint(&[1, 0]), Some(256));
    }
}
