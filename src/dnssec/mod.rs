//! DNSSEC (issue #20): the zone keys, read from BIND-format key files at config load, and
//! what is signed with them.
//!
//! - [`keys`]: a key pair (`.private` with its `.key` beside it) -> a checked [`keys::Key`]
//!   that signs, and gives its DNSKEY RDATA, key tag and DS; `mirrordns keygen` writes new ones.
//! - [`sign`]: one RRSIG over one RRset (canonical form from hickory-proto).
//! - [`nsec`]: NSEC type bitmaps and finding the record that matches or covers a name.
//! - [`serial`]: the SOA serial of a signed zone, moved whenever its content changes.
//! - [`signer`]: keys and periods with the signature cache keyed by RRset content, through
//!   which a table build makes every signature.
//! - [`signed`]: the signatures of one routing table (zone data, geo answers, the NSEC chain,
//!   the SOA with its serial), as answers read them.
//!
//! Every signature is made when a routing table is built or when signatures come due, never
//! while answering: a geo answer is one of a finite set of RRsets, all known when the table
//! is built. Answers copy RRSIGs and NSEC records from [`signed::Signed`].

pub mod keys;
pub mod nsec;
pub mod serial;
pub mod sign;
pub mod signed;
pub mod signer;
