//! Arbitrary bytes into every path a packet can take: the answer function over UDP and TCP
//! (with rate limiting and cookies live, from a non-loopback source), and the zone transfer
//! path with TSIG checking. Nothing may panic, and every answer must be a well-formed reply.
//! The hot path must also answer exactly what the full path answers (over TCP, where rate
//! limiting cannot make two calls differ).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mirrordns::dns::answer::handle_full;
use mirrordns::dns::{Ctx, Guard, Stats, Transport, handle, transfer};
use mirrordns::load::Loaded;
use mirrordns::routing::RoutingTable;

struct World {
    table: RoutingTable,
    stats: Stats,
    guard: Guard,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let zone = root.join("zones/example.com.zone");
        let shipped = std::fs::read_to_string(root.join("config/mirrordns.toml")).unwrap();
        // The shipped config, plus transfers open to everyone with a TSIG key, so that the
        // fuzzer reaches the TSIG parser and checker too, and the zone signed, so that
        // queries with DO reach the RRSIG and NSEC paths (and signed transfers).
        let dir = tempfile::tempdir().unwrap();
        let origin = mirrordns::zone::Name::from_text("example.com").unwrap();
        let key = mirrordns::dnssec::keys::generate(&origin, 13, true, dir.path()).unwrap();
        let config = shipped.replace("../zones/example.com.zone", &zone.display().to_string())
            + "\n[transfer]\nallow = [\"0.0.0.0/0\", \"::/0\"]\n[transfer.tsig]\nname = \"k\"\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n"
            + &format!("[dnssec]\nkeys = [{:?}]\n", key.display().to_string());
        let path = dir.path().join("mirrordns.toml");
        std::fs::write(&path, config).unwrap();
        let loaded = Loaded::from_file(&path).unwrap();
        World {
            table: loaded.table(1),
            stats: Stats::default(),
            guard: Guard::default(),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let src: IpAddr = "198.51.100.7".parse().unwrap();
    let mut out = Vec::new();
    let ctx = |stats, transport| Ctx {
        table: &w.table,
        stats,
        guard: &w.guard,
        transport,
    };
    for transport in [Transport::Udp, Transport::Tcp] {
        if handle(&ctx(&w.stats, transport), data, src, &mut out) {
            assert!(out.len() >= 12, "an answer has at least a header");
            assert_eq!(out[..2], data[..2], "the answer carries the query's ID");
            assert!(out[2] & 0x80 != 0, "QR is set");
            if transport == Transport::Udp {
                assert!(out.len() <= 4096);
            }
        }
    }
    let mut full = Vec::new();
    let scratch = Stats::default();
    let tcp = ctx(&scratch, Transport::Tcp);
    let answered = handle(&tcp, data, src, &mut out);
    let reference = handle_full(&tcp, data, src, &mut full);
    assert_eq!(answered, reference, "hot and full path disagree on answering");
    if answered && out != full {
        // A server cookie holds the time in seconds, which may have ticked between the two
        // calls: a real difference shows again.
        handle(&tcp, data, src, &mut out);
        handle_full(&tcp, data, src, &mut full);
        assert_eq!(out, full, "hot and full path answer differently");
    }
    if let Some(msgs) = transfer::serve(&w.table, data, src, &w.stats) {
        assert!(!msgs.is_empty());
        for m in msgs {
            assert!(m.len() >= 12 && m.len() <= 65535);
        }
    }
});
