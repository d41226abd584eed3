//! The ways an input file breaks, made from its good content: empty, truncated, half-written
//! (the right size, zeros after the first half), binary garbage, huge.

/// Deterministic bytes that are not UTF-8 and hold NULs: what a disk error or a wrong `cp`
/// leaves.
pub fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    let block: Vec<u8> = (0..len.min(64 << 10))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    block.iter().copied().cycle().take(len).collect()
}

/// The first `num/den` of `good`, moved back so that the cut is inside a line.
pub fn cut_mid_line(good: &[u8], num: usize, den: usize) -> Vec<u8> {
    let mut p = good.len() * num / den;
    while p > 1 && (good[p - 1] == b'\n' || good[p] == b'\n') {
        p -= 1;
    }
    good[..p].to_vec()
}

/// Broken contents of one file, each with what is wrong with it.
pub type Variants = Vec<(&'static str, Vec<u8>)>;

/// The ways a file breaks, made from its good content; `huge` is the kind's own.
pub fn broken(good: &[u8], huge: Vec<u8>) -> Variants {
    let mut half = cut_mid_line(good, 1, 2);
    half.resize(good.len(), 0);
    vec![
        ("empty", Vec::new()),
        ("truncated", cut_mid_line(good, 2, 3)),
        ("half-written", half),
        ("binary garbage", garbage(4096)),
        ("huge", huge),
    ]
}

/// Text lines repeated to about `mb` megabytes.
pub fn lines(first: &[u8], line: &str, mb: usize) -> Vec<u8> {
    let mut v = first.to_vec();
    v.extend_from_slice(line.repeat((mb << 20) / line.len() + 1).as_bytes());
    v
}
