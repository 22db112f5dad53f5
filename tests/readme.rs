//! The README cannot drift from the code: every ```toml block in it loads
//! through the real loader (swarmd's config file, or `swarmctl reconfigure`'s
//! change file where the block is marked so), and every `swarmd` or
//! `swarmctl` command line in it parses with the real argument parser, so a
//! renamed flag or config key fails here rather than for a user.

use clap::CommandFactory;
use swarm_ctl::Cli;
use swarm_ctl::reconfigure::ChangeArgs;
use swarm_service::config::{Config, Flags};

const README: &str = include_str!("../README.md");

/// The marker, in an HTML comment right before a block, of a change file.
const CHANGE_FILE_MARKER: &str = "<!-- readme-test: reconfigure change file -->";

/// A fenced block: its language, first line number and text, and whether
/// the line before its fence marks it as a change file.
struct Block {
    lang: String,
    line: usize,
    text: String,
    change_file: bool,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = README.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let change_file = (1..=2).any(|k| i >= k && lines[i - k].trim() == CHANGE_FILE_MARKER);
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && !lines[j].starts_with("```") {
                j += 1;
            }
            out.push(Block {
                lang: lang.trim().to_owned(),
                line: start + 1,
                text: lines[start..j].join("\n"),
                change_file,
            });
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_toml_block_loads_through_the_real_loader() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, b) in blocks().into_iter().filter(|b| b.lang == "toml").enumerate() {
        let path = dir.path().join(format!("block{n}.toml"));
        std::fs::write(&path, &b.text).unwrap();
        let result = if b.change_file {
            ChangeArgs { from_file: Some(path), ..Default::default() }.resolve().map(|_| ()).map_err(|e| e.to_string())
        } else {
            Config::resolve(&Flags { config_file: Some(path), ..Default::default() })
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            failures.push(format!("README.md line {}: {e}", b.line));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "README config examples that do not load:\n{}", failures.join("\n"));
    assert!(checked >= 3, "expected the README's config, migration and change-file examples, found {checked}");
}

/// A command line found in the README, with where it came from.
struct Line {
    at: String,
    words: Vec<String>,
    /// A synopsis (`[--flag X]`, `…`) or a prose mention: its flags must
    /// exist, but it need not be complete.
    synopsis: bool,
}

/// `cargo run --release --bin swarmctl -- args` → `swarmctl args`.
fn program_words(words: &[String]) -> Option<Vec<String>> {
    let first = words.first()?.as_str();
    let name = first.rsplit('/').next().unwrap_or(first);
    if name == "swarmd" || name == "swarmctl" {
        let mut w = words.to_vec();
        w[0] = name.to_owned();
        return Some(w);
    }
    if first == "cargo" && words.get(1).map(String::as_str) == Some("run") {
        let bin = words.iter().position(|w| w == "--bin").and_then(|i| words.get(i + 1))?;
        let sep = words.iter().position(|w| w == "--");
        let mut w = vec![bin.clone()];
        if let Some(s) = sep {
            w.extend(words[s + 1..].iter().cloned());
        }
        return (bin == "swarmd" || bin == "swarmctl").then_some(w);
    }
    None
}

/// Splits a shell line into commands (at `|`, `&&`, `;`), dropping
/// comments and redirections.
fn commands(line: &str) -> Vec<Vec<String>> {
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let Some(words) = shlex::split(line) else { return Vec::new() };
    let mut out = vec![Vec::new()];
    let mut skip_next = false;
    for w in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        match w.as_str() {
            "|" | "&&" | ";" | "||" => out.push(Vec::new()),
            ">" | ">>" | "2>" | "<" => skip_next = true,
            _ => out.last_mut().unwrap().push(w),
        }
    }
    out
}

fn lines() -> Vec<Line> {
    let mut out = Vec::new();
    for b in blocks().into_iter().filter(|b| b.lang.is_empty() || b.lang == "sh") {
        // Join continuation lines: `\` at the end, or an indented synopsis line.
        // In a synopsis, an indented line starting with a word is a
        // subcommand of the block's program; one starting with `[` or `-`
        // continues the line above.
        let mut joined: Vec<(usize, String)> = Vec::new();
        let mut cont = false;
        let mut program: Option<String> = None;
        for (k, raw) in b.text.lines().enumerate() {
            let text = raw.trim_end_matches('\\').trim();
            let indented = raw.starts_with(' ') && !joined.is_empty();
            if cont || (indented && (text.starts_with('[') || text.starts_with('-'))) {
                let last = joined.last_mut().unwrap();
                last.1.push(' ');
                last.1.push_str(text);
            } else if indented && let Some(p) = &program {
                joined.push((b.line + k, format!("{p} {text}")));
            } else {
                program =
                    text.split_whitespace().next().filter(|w| *w == "swarmctl" || *w == "swarmd").map(str::to_owned);
                joined.push((b.line + k, text.to_owned()));
            }
            cont = raw.ends_with('\\');
        }
        for (n, text) in joined {
            // Bare blocks hold synopses; `sh` blocks hold commands to run.
            let synopsis = b.lang.is_empty() || text.contains('[') || text.contains('…') || text.contains('<');
            let cmds =
                if synopsis { vec![text.split_whitespace().map(str::to_owned).collect()] } else { commands(&text) };
            for c in cmds {
                if let Some(words) = program_words(&c) {
                    out.push(Line { at: format!("README.md line {n}"), words, synopsis });
                }
            }
        }
    }
    // Commands mentioned in prose, as `swarmctl …` code spans.
    for (n, l) in README.lines().enumerate() {
        for span in l.split('`').skip(1).step_by(2) {
            if span.starts_with("swarmctl ") || span.starts_with("swarmd ") {
                for c in commands(span) {
                    if let Some(words) = program_words(&c) {
                        out.push(Line { at: format!("README.md line {} (in prose)", n + 1), words, synopsis: true });
                    }
                }
            }
        }
    }
    out
}

/// For a synopsis: the subcommand path must exist and every `--flag` in it
/// must be a flag of that subcommand (or a global one).
fn check_synopsis(root: clap::Command, words: &[String]) -> Result<(), String> {
    let mut cmd = root;
    let mut globals: Vec<String> = Vec::new();
    let collect = |c: &clap::Command, g: &mut Vec<String>| {
        g.extend(c.get_arguments().filter(|a| a.is_global_set()).filter_map(|a| a.get_long().map(str::to_owned)));
    };
    collect(&cmd, &mut globals);
    for w in &words[1..] {
        if w.starts_with('-') || w.starts_with('[') || w.starts_with('<') {
            break;
        }
        if w.contains('|') {
            // Alternatives (`plan|apply|status`): each must exist; their
            // flags are described elsewhere.
            for alt in w.split('|') {
                if cmd.has_subcommands() && cmd.find_subcommand(alt).is_none() {
                    return Err(format!("no subcommand {alt:?}"));
                }
            }
            return Ok(());
        }
        match cmd.find_subcommand(w) {
            Some(sub) => {
                let sub = sub.clone();
                collect(&sub, &mut globals);
                cmd = sub;
            }
            None if cmd.has_subcommands() => return Err(format!("no subcommand {w:?}")),
            None => break,
        }
    }
    let known: Vec<String> = cmd.get_arguments().filter_map(|a| a.get_long().map(str::to_owned)).collect();
    for w in words {
        let flag = w.trim_start_matches('[').trim_end_matches([']', '…', ',']);
        if let Some(name) = flag.strip_prefix("--") {
            let name = name.split(['=', ' ']).next().unwrap_or(name);
            if !name.is_empty()
                && !known.iter().any(|k| k == name)
                && !globals.iter().any(|k| k == name)
                && name != "help"
                && name != "version"
            {
                return Err(format!("{} has no flag --{name}", cmd.get_name()));
            }
        }
    }
    Ok(())
}

#[test]
fn every_command_line_parses_with_the_real_parser() {
    let all = lines();
    let mut failures = Vec::new();
    let (mut full, mut synopses) = (0, 0);
    for l in &all {
        let root = if l.words[0] == "swarmd" { Flags::command() } else { Cli::command() };
        let result = if l.synopsis {
            synopses += 1;
            check_synopsis(root, &l.words)
        } else {
            full += 1;
            root.try_get_matches_from(&l.words).map(|_| ()).map_err(|e| e.render().to_string())
        };
        if let Err(e) = result {
            failures.push(format!("{}: `{}`: {e}", l.at, l.words.join(" ")));
        }
    }
    assert!(failures.is_empty(), "README command lines that do not parse:\n{}", failures.join("\n"));
    assert!(full >= 8 && synopses >= 4, "expected the README's commands, found {full} full and {synopses} synopses");
}
