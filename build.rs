//! Writes the `o200k_base` vocabulary in the compact form `src/tokens.rs` embeds.
//!
//! tiktoken-rs carries the vocabulary as base64 text and builds three hash maps and a regex per
//! thread from it (~40 MB resident). The gateway only counts tokens, so at build time we take the
//! ordinary tokens out of tiktoken-rs, in rank order, as `[len: u8][bytes]` records (~1.6 MB),
//! and the pre-tokenizer pattern next to them; `src/tokens.rs` indexes the records on first use.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let bpe = tiktoken_rs::o200k_base()?;
    let mut blob = Vec::with_capacity(1 << 21);
    let mut rank = 0u32;
    // Ordinary ranks are dense from 0; the special tokens come after them.
    while let Ok(bytes) = bpe.decode_bytes(&[rank]) {
        if rank >= 199_999 {
            break;
        }
        let len = u8::try_from(bytes.len())?;
        blob.push(len);
        blob.extend_from_slice(&bytes);
        rank += 1;
    }
    if rank < 199_000 {
        return Err(format!("o200k_base: only {rank} ordinary tokens").into());
    }
    std::fs::File::create(out.join("o200k_base.bin"))?.write_all(&blob)?;
    // The pattern's one look-ahead, `\s+(?!\S)`, is what needs a backtracking engine; without it
    // the `regex` crate runs the pattern ~10x faster, and src/tokens.rs applies the look-ahead's
    // effect to the whitespace runs the `\s+` alternative that follows it matches.
    let lookahead = "|\\s+(?!\\S)|";
    let pattern = tiktoken_rs::O200K_BASE_PAT_STR;
    if !pattern.ends_with("|\\s+") || pattern.matches(lookahead).count() != 1 {
        return Err(format!("o200k_base: unexpected pattern {pattern}").into());
    }
    std::fs::write(out.join("o200k_base.pat"), pattern.replace(lookahead, "|"))?;
    Ok(())
}
