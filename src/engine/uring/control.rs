//! Reading what the kernel wrote beside a received message: its control messages (the GRO
//! segment size, the receive queue's drop count) and its sender's address. Both are walked
//! without trusting the lengths in them.

// A received name field is a raw sockaddr.
#![allow(unsafe_code)]

use super::super::sys::{self, SO_RXQ_OVFL, UDP_GRO};
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;

/// What the control messages of one received message say.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Control {
    /// UDP_GRO: the message is a train of datagrams of this size.
    pub(super) segment: Option<usize>,
    /// SO_RXQ_OVFL: the socket's kernel receive-queue drops so far.
    pub(super) rxq_overflows: Option<u32>,
}

/// Walks `cmsghdr`s in received control bytes without trusting them: a length that is too small
/// or runs past the end stops the walk.
pub(super) fn parse_control(mut bytes: &[u8]) -> Control {
    let header = size_of::<libc::cmsghdr>();
    let align = size_of::<usize>();
    let mut control = Control::default();
    while bytes.len() >= header {
        let mut len_bytes = [0u8; size_of::<usize>()];
        len_bytes.copy_from_slice(&bytes[..size_of::<usize>()]);
        let cmsg_len = usize::from_ne_bytes(len_bytes);
        let word = |at: usize| {
            bytes
                .get(at..)
                .and_then(|b| b.first_chunk::<4>())
                .map_or(0, |b| i32::from_ne_bytes(*b))
        };
        let level = word(align);
        let kind = word(align.saturating_add(4));
        if cmsg_len < header || cmsg_len > bytes.len() {
            break;
        }
        let data = &bytes[header..cmsg_len];
        if level == libc::SOL_SOCKET && kind == SO_RXQ_OVFL && data.len() >= 4 {
            control.rxq_overflows = Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
        } else if level == libc::SOL_UDP && kind == UDP_GRO && data.len() >= 4 {
            let size = i32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
            control.segment = usize::try_from(size).ok().filter(|&s| s > 0);
        }
        let next = cmsg_len.next_multiple_of(align);
        if next >= bytes.len() {
            break;
        }
        bytes = &bytes[next..];
    }
    control
}

/// The sender from a received name field (a sockaddr_in or sockaddr_in6, zero-padded).
pub(super) fn address_from_name(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = name.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: at most size_of::<sockaddr_storage>() bytes are copied into it from a slice of
    // at least that length; the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    sys::from_sockaddr(&storage)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let header = size_of::<libc::cmsghdr>();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(header + data.len()).to_ne_bytes());
        bytes.extend_from_slice(&level.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(data);
        while bytes.len() % size_of::<usize>() != 0 {
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn control_messages_give_segment_and_overflows() {
        let mut bytes = cmsg(libc::SOL_SOCKET, SO_RXQ_OVFL, &7u32.to_ne_bytes());
        bytes.extend(cmsg(libc::SOL_UDP, UDP_GRO, &1200i32.to_ne_bytes()));
        assert_eq!(
            parse_control(&bytes),
            Control {
                segment: Some(1200),
                rxq_overflows: Some(7)
            }
        );
        assert_eq!(parse_control(&[]), Control::default());
    }

    #[test]
    fn hostile_control_bytes_stop_the_walk() {
        let good = cmsg(libc::SOL_UDP, UDP_GRO, &100i32.to_ne_bytes());
        for cut in 0..good.len() {
            // Truncated anywhere: no panic, and a cut header yields nothing.
            let _ = parse_control(&good[..cut]);
        }
        let mut huge = good.clone();
        huge[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(parse_control(&huge), Control::default());
        let mut tiny = good;
        tiny[..size_of::<usize>()].copy_from_slice(&1usize.to_ne_bytes());
        assert_eq!(parse_control(&tiny), Control::default());
    }

    #[test]
    fn names_decode_to_addresses() {
        for text in ["127.0.0.1:7700", "[::1]:9"] {
            let address: SocketAddr = text.parse().unwrap();
            let (storage, len) = sys::to_sockaddr(address);
            // SAFETY (test): reading the storage's first `len` bytes as raw bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&storage as *const libc::sockaddr_storage).cast::<u8>(),
                    len as usize,
                )
            };
            assert_eq!(address_from_name(bytes), Some(address));
        }
        assert_eq!(address_from_name(&[]), None);
    }
}
