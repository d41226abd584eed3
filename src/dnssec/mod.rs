//! DNSSEC (issue #20): the zone keys, read from BIND-format key files at config load, and
//! what is signed with them.
//!
//! - [`keys`]: a key pair (`.private` with its `.key` beside it) -> a checked [`keys::Key`]
//!   that signs, and gives its DNSKEY RDATA, key tag and DS; `mirrordns keygen` writes new ones.

pub mod keys;
