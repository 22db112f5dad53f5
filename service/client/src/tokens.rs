//! Token files: one bearer token per line, `#` comments, blank lines
//! ignored. swarmd reads its admin and read-only files this way; swarmctl
//! its `--token-file` (the first token).

/// The tokens of a token file's text: its lines, trimmed, without blank
/// lines and `#` comments.
pub fn token_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_and_blank_lines_are_not_tokens() {
        let t: Vec<&str> = super::token_lines("# admin\n\n  abc  \ndef\n").collect();
        assert_eq!(t, ["abc", "def"]);
    }
}
