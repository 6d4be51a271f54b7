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

/// Critical options that may appear once (RFC 7252 §5.10, RFC 7959):
/// Uri-Host, If-None-Match, Uri-Port, Accept, Block2, Block1, Proxy-Uri,
/// Proxy-Scheme. Repeated, they are treated as unrecognized: 4.02.
const CRITICAL_ONCE: [u16; 8] = [3, 5, 7, 17, 23, 27, 35, 39];
/// Content-Format (elective, once).
const CONTENT_FORMAT: u16 = 12;
/// Accept.
const ACCEPT: u16 = 17;

/// What is wrong with a request's options, as the answer to give: an
/// unknown critical option or a critical one repeated (4.02), two
/// different Content-Formats (4.00), or an Accept other than link format
/// on a request whose answer is link format (`answers_links`, 4.06).
pub fn option_problem(p: &Packet, answers_links: bool) -> Option<(ResponseType, String)> {
    if let Some(n) = unknown_critical(p) {
        return Some((ResponseType::BadOption, format!("unsupported critical option {n}")));
    }
    for (n, values) in p.options() {
        if values.len() > 1 && CRITICAL_ONCE.contains(n) {
            return Some((
                ResponseType::BadOption,
                format!("option {n} given {} times", values.len()),
            ));
        }
        if *n == CONTENT_FORMAT && values.iter().any(|v| Some(v) != values.front()) {
            return Some((ResponseType::BadRequest, "two different Content-Formats".into()));
        }
        if *n == ACCEPT && answers_links && values.front().and_then(|v| read_uint(v)) != Some(u32::from(LINK_FORMAT)) {
            return Some((
                ResponseType::NotAcceptable,
                "this resource answers in link format (Accept: 40) only".into(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(opts: &[(u16, &[u8])]) -> Packet {
        let mut p = Packet::new();
        for (n, v) in opts {
            p.add_option(CoapOption::from(*n), v.to_vec());
        }
        p
    }

    #[test]
    fn unknown_repeated_and_contradictory_options() {
        assert_eq!(option_problem(&with(&[(11, b"rd"), (17, &[40])]), true), None);
        let code = |opts: &[(u16, &[u8])], links| option_problem(&with(opts), links).map(|(c, _)| c);
        assert_eq!(
            code(&[(9, b"")], false),
            Some(ResponseType::BadOption),
            "unknown critical"
        );
        assert_eq!(
            code(&[(27, &[0x0e]), (27, &[0x1e])], false),
            Some(ResponseType::BadOption)
        );
        assert_eq!(code(&[(12, &[40]), (12, &[50])], false), Some(ResponseType::BadRequest));
        assert_eq!(code(&[(12, &[40]), (12, &[40])], false), None, "the same value twice");
        assert_eq!(code(&[(17, &[50])], true), Some(ResponseType::NotAcceptable));
        assert_eq!(code(&[(17, &[50])], false), None, "diagnostics are not link format");
        assert_eq!(
            code(&[(14, &[60]), (14, &[5])], false),
            None,
            "an elective option repeated is ignored"
        );
    }

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
