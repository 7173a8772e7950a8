//! `${VAR}` / `${VAR:-default}` substitution in string scalars, done on the parsed tree so that an
//! environment value can never inject YAML structure.
//!
//! - `${VAR}`: the value of VAR (an empty value is kept); unset is an error naming VAR.
//! - `${VAR:-default}`: the value of VAR, or `default` when VAR is unset or empty (as in the
//!   shell). `default` runs to the first `}` and is taken literally (no nesting).
//! - `$${` is a literal `${`. Any other `$` is literal.
//! - Names are `[A-Za-z_][A-Za-z0-9_]*`. Mapping keys are not interpolated.

use super::yaml::{Kind, Node, Style, join};
use super::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Unset(String),
    BadName(String),
    Unterminated,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands one string. `Ok(None)`: nothing to expand.
fn expand(s: &str, env: Env) -> Result<Option<String>, Vec<Problem>> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let Some(end) = r.find('}') else {
                problems.push(Problem::Unterminated);
                rest = "";
                break;
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_name(name) {
                problems.push(Problem::BadName(name.to_owned()));
                continue;
            }
            match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => problems.push(Problem::Unset(name.to_owned())),
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(Some(out))
    } else {
        Err(problems)
    }
}

/// Interpolates every string scalar under `node`; returns every problem found.
pub(crate) fn interpolate(node: &mut Node, env: Env) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    walk(node, "", env, &mut errors);
    errors
}

fn walk(node: &mut Node, path: &str, env: Env, errors: &mut Vec<ConfigError>) {
    let line = node.line;
    match &mut node.kind {
        Kind::Scalar { text, style } => match expand(text, env) {
            Ok(None) => {}
            Ok(Some(new)) => {
                *text = new;
                if *style == Style::Plain {
                    *style = Style::Interpolated;
                }
            }
            Err(problems) => {
                for p in problems {
                    let (message, hint) = match p {
                        Problem::Unset(var) => (
                            format!("environment variable \"{var}\" is not set"),
                            format!("set {var}, or give a default: ${{{var}:-default}}"),
                        ),
                        Problem::BadName(name) => (
                            format!("invalid variable name \"{name}\" in ${{...}}"),
                            "names are letters, digits and _; write $${ for a literal ${"
                                .to_owned(),
                        ),
                        Problem::Unterminated => (
                            "unterminated ${ (no closing })".to_owned(),
                            "close it with }, or write $${ for a literal ${".to_owned(),
                        ),
                    };
                    errors.push(ConfigError {
                        path: path.to_owned(),
                        line: Some(line),
                        message,
                        hint: Some(hint),
                    });
                }
            }
        },
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                walk(&mut e.value, &join(path, &e.key), env, errors);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "YAMLISH" => Some("{a: [1, 2]}\nb: c".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> Result<Option<String>, Vec<Problem>> {
        expand(s, &env)
    }

    #[test]
    fn expansion() {
        assert_eq!(ex("plain"), Ok(None));
        assert_eq!(ex("cost $5"), Ok(None));
        assert_eq!(ex("${A}"), Ok(Some("alpha".into())));
        assert_eq!(ex("x-${A}-${A}-y"), Ok(Some("x-alpha-alpha-y".into())));
        assert_eq!(ex("${A:-d}"), Ok(Some("alpha".into())));
        assert_eq!(ex("${NOPE:-d}"), Ok(Some("d".into())));
        assert_eq!(ex("${NOPE:-}"), Ok(Some(String::new())));
        assert_eq!(ex("${NOPE:-a:-b c}"), Ok(Some("a:-b c".into())));
        assert_eq!(ex("${EMPTY}"), Ok(Some(String::new())));
        assert_eq!(ex("${EMPTY:-d}"), Ok(Some("d".into())));
        assert_eq!(ex("$${A}"), Ok(Some("${A}".into())));
        assert_eq!(ex("$$${A}"), Ok(Some("$${A}".into())));
        assert_eq!(ex("a$${b}${A}$"), Ok(Some("a${b}alpha$".into())));
        assert_eq!(ex("${YAMLISH}"), Ok(Some("{a: [1, 2]}\nb: c".into())));
        assert_eq!(ex("${NOPE}"), Err(vec![Problem::Unset("NOPE".into())]));
        assert_eq!(
            ex("${NOPE}${NOPE2}"),
            Err(vec![
                Problem::Unset("NOPE".into()),
                Problem::Unset("NOPE2".into())
            ])
        );
        assert_eq!(ex("${A"), Err(vec![Problem::Unterminated]));
        assert_eq!(ex("${}"), Err(vec![Problem::BadName(String::new())]));
        assert_eq!(ex("${a b}"), Err(vec![Problem::BadName("a b".into())]));
        assert_eq!(ex("${1A}"), Err(vec![Problem::BadName("1A".into())]));
    }

    #[test]
    fn tree_errors_name_var_path_and_line() {
        let mut root =
            parse("a:\n  b: x\n  c:\n    - ok\n    - \"${MISSING}\"\nk${NOPE}: 1\n").unwrap();
        let errs = interpolate(&mut root, &env);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "a.c[1]");
        assert_eq!(errs[0].line, Some(5));
        assert_eq!(
            errs[0].message,
            "environment variable \"MISSING\" is not set"
        );
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("set MISSING, or give a default: ${MISSING:-default}")
        );
    }

    #[test]
    fn plain_becomes_interpolated_quoted_stays_quoted() {
        let mut root = parse("a: ${A}\nb: '${A}'\nc: $${A}\n").unwrap();
        assert!(interpolate(&mut root, &env).is_empty());
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        let styles: Vec<_> = entries
            .iter()
            .map(|e| match &e.value.kind {
                Kind::Scalar { text, style } => (text.as_str(), *style),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            styles,
            vec![
                ("alpha", Style::Interpolated),
                ("alpha", Style::Quoted),
                ("${A}", Style::Interpolated)
            ]
        );
    }
}
